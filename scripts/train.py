"""Train a model: ``python scripts/train.py [experiment=<name>] [group=option ...] [key=value ...]``.

Examples::

    python scripts/train.py experiment=w32_256x192_msra                  # a seed-table row (8 GPUs: trainer=ddp)
    python scripts/train.py experiment=demo                              # tiny HRNet on synthetic data, CPU
    python scripts/train.py -m experiment=w32_256x192_msra seed=0,1,2    # several seeds (a multirun)
    python scripts/train.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt   # resume a killed run
    python scripts/train.py experiment=w32_256x192_msra ckpt_path=auto   # resume the same command's last.ckpt

Same as the ``wbpose-train`` command. Returns the value of ``optimized_metric`` (for Hydra sweepers) and writes
``metrics.json`` to the run folder.
"""

from wbpose.app.cli import train_main

if __name__ == "__main__":
    train_main()

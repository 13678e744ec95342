"""Train a model: ``python scripts/train.py [experiment=<name>] [group=option ...] [key=value ...]``.

Examples::

    python scripts/train.py experiment=w32_256x192_msra                  # a seed-table row (8 GPUs: trainer=ddp)
    python scripts/train.py experiment=demo                              # tiny HRNet on synthetic data, CPU
    python scripts/train.py -m experiment=w32_256x192_msra seed=0,1,2    # several seeds (a multirun)
    python scripts/train.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt   # resume a killed run

Returns the value of ``optimized_metric`` (for Hydra sweepers) and writes ``metrics.json`` to the run folder.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from wbpose.app.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: run :func:`wbpose.app.train.train` and return the optimised metric."""
    from wbpose.app.train import train

    value, _ = train(cfg)
    return value


if __name__ == "__main__":
    main()

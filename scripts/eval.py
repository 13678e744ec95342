"""Evaluate a checkpoint: ``python scripts/eval.py ckpt_path=<file.ckpt> [bbox_source=det|gt] [...]``.

Prints the per-part AP/AR table and writes ``metrics.json``, ``results_keypoints.json`` (MMPose format) and the
config used (``eval_config.yaml``) into the run folder. A checkpoint from ``scripts/train.py`` carries its config,
so nothing else is needed; command-line group overrides (``input=...``, ``module.flip_test=false``) apply on top
of it. A released MMPose file is recognised by name (``wbpose.checkpoints.recipes``); see ``wbpose.app.evaluate``
for other weights-only files.
Same as the ``wbpose-eval`` command.
"""

from wbpose.app.cli import eval_main

if __name__ == "__main__":
    eval_main()

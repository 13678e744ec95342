"""The demo (``make demo``): train the tiny HRNet on synthetic whole-body people on the CPU and score it.

Steps: generate the synthetic COCO-WholeBody data into ``data/synthetic`` when absent, evaluate the untrained
model, train it (``experiment=demo``: 2 CPU cores, a few minutes), evaluate it with detector boxes, print the
per-part AP/AR table before and after, and write ``outputs/demo/predictions.png``. The wandb run (offline, in
``outputs/demo/wandb``) holds the metrics and the logged prediction images.

Extra arguments are Hydra overrides, e.g. ``python scripts/demo.py trainer.max_epochs=5 logger=csv``.
"""

from __future__ import annotations

import sys

from wbpose.app.config import compose_config, project_root
from wbpose.app.demo import run_demo

DEFAULT_OVERRIDES = ["experiment=demo", "logger=[csv,wandb]", "callbacks=tqdm"]


def main(argv: list[str]) -> None:
    """Compose ``experiment=demo`` (plus ``argv`` overrides) into ``outputs/demo`` and run the demo."""
    cfg = compose_config("train", [*DEFAULT_OVERRIDES, *argv], output_dir=project_root() / "outputs" / "demo")
    run_demo(cfg)


if __name__ == "__main__":
    main(sys.argv[1:])

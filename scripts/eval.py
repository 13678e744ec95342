"""Evaluate a checkpoint: ``python scripts/eval.py ckpt_path=<file.ckpt> [bbox_source=det|gt] [...]``.

Prints the per-part AP/AR table and writes ``metrics.json``, ``results_keypoints.json`` (MMPose format) and the
config used (``eval_config.yaml``) into the run folder. A checkpoint from ``scripts/train.py`` carries its config,
so nothing else is needed; command-line group overrides (``input=...``, ``module.flip_test=false``) apply on top
of it. A released MMPose file is recognised by name (``wbpose.checkpoints.recipes``); see ``wbpose.app.evaluate``
for other weights-only files.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from wbpose.app.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: run :func:`wbpose.app.evaluate.evaluate` with this command's overrides."""
    from wbpose.app.evaluate import evaluate

    metrics, _ = evaluate(cfg, overrides=list(HydraConfig.get().overrides.task))
    return metrics.get("test/wholebody_ap")


if __name__ == "__main__":
    main()

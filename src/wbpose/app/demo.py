"""The end-to-end demo behind ``make demo``: synthetic data -> untrained score -> train the tiny HRNet on the CPU
-> score again -> a PNG of predictions on validation images.

Usage: ``wbpose-demo [key=value ...]`` (``make demo``, ``python scripts/demo.py``); the arguments are Hydra
overrides of ``conf/train.yaml`` on top of :data:`DEMO_OVERRIDES`, e.g. ``trainer.max_epochs=5 seed=1``.

Everything goes through the same code as real runs (``wbpose.app.train.train``, the ``conf/`` tree with
``experiment=demo``); this module only adds the "before" evaluation, the drawing of whole images, and the report.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from wbpose.app.config import compose_config, project_root
from wbpose.app.startup import clear_previous_run
from wbpose.app.train import train
from wbpose.build import build_codec, build_datamodule, build_module
from wbpose.engine.module import TopdownPoseModule
from wbpose.metrics.tables import metrics_table, write_metrics_json

log = logging.getLogger(__name__)

__all__ = ["DEMO_OVERRIDES", "draw_val_predictions", "evaluate_untrained", "main", "run_demo"]

#: What ``wbpose-demo`` composes before the command line's overrides: the demo experiment, csv and offline wandb
#: logs, a plain progress bar.
DEMO_OVERRIDES = ("experiment=demo", "logger=[csv,wandb]", "callbacks=tqdm")

DEMO_USAGE = """usage: wbpose-demo [key=value ...]

Train the tiny HRNet on synthetic data (generated on first use) and print the per-part AP/AR before and after;
writes outputs/demo/ (metrics_before.json, metrics.json, predictions.png, checkpoints, csv and offline wandb logs).
The arguments are Hydra overrides of conf/train.yaml with experiment=demo, e.g. trainer.max_epochs=5 seed=1."""


def _quiet_trainer(cfg: DictConfig) -> pl.Trainer:
    return pl.Trainer(
        accelerator=cfg.trainer.get("accelerator", "cpu"),
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=cfg.paths.output_dir,
    )


def evaluate_untrained(cfg: DictConfig) -> dict[str, float]:
    """Validate the model exactly as training will start it (same seed, same build order)."""
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    codec = build_codec(cfg)
    datamodule = build_datamodule(cfg, codec)
    module = build_module(cfg, codec=codec, ann_file=datamodule.val_ann_file)
    module.num_vis_images = 0
    results = _quiet_trainer(cfg).validate(module, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in results[0].items()}


def _person_predictions(
    module: TopdownPoseModule, datamodule: Any, cfg: DictConfig, min_score: float = 0.2
) -> dict[int, dict[str, np.ndarray]]:
    """Run the module on the val loader and keep, per image, the people the metric scores above ``min_score``.

    The people are chosen by :func:`wbpose.metrics.oks.select_people` (the metric's own deduplication, rescoring
    and OKS-NMS, with the module's metric thresholds when it has a metric); ``min_score`` is a display threshold
    on the instance score only.

    Returns:
        ``{image_id: {"keypoints": (n, 133, 2), "scores": (n, 133) keypoint scores, "instance_scores": (n,)}}``.
    """
    from wbpose.metrics.oks import select_people

    outputs = _quiet_trainer(cfg).predict(module, dataloaders=datamodule.val_dataloader())
    keys = ("keypoints", "scores", "image_id", "bbox_score", "instance_id")
    cat = {k: torch.cat([o[k] for o in outputs]).numpy() for k in keys if k in outputs[0]}
    areas = torch.cat([o["scale_wh"].prod(-1) for o in outputs]).numpy()
    metric = getattr(module, "val_metric", None)
    keep, instance_scores = select_people(
        cat["image_id"],
        cat["keypoints"],
        cat["scores"],
        cat["bbox_score"],
        areas,
        instance_ids=cat.get("instance_id"),
        keypoint_score_thr=getattr(metric, "keypoint_score_thr", 0.2),
        nms_thr=getattr(metric, "nms_thr", 0.9),
    )
    shown = instance_scores > min_score
    keep, instance_scores = keep[shown], instance_scores[shown]
    # keep is grouped by image id: split it into per-image runs
    image_ids, starts = np.unique(cat["image_id"][keep], return_index=True)
    return {
        int(image_id): {
            "keypoints": cat["keypoints"][rows],
            "scores": cat["scores"][rows],
            "instance_scores": scores,
        }
        for image_id, rows, scores in zip(image_ids, np.split(keep, starts[1:]), np.split(instance_scores, starts[1:]))
    }


def draw_val_predictions(
    module: TopdownPoseModule,
    datamodule: Any,
    cfg: DictConfig,
    path: Path,
    num_images: int = 8,
    ncols: int = 4,
    min_score: float = 0.2,
) -> Path:
    """Draw the predicted people on the first ``num_images`` val images (detector boxes) into a PNG grid.

    The people are those the metric keeps (see :func:`_person_predictions`) with an instance score above
    ``min_score`` (a display threshold of the demo only; the metric itself has none).
    """
    from wbpose.visualize import draw_pose, make_grid, save_png

    module.eval()
    per_image = _person_predictions(module, datamodule, cfg, min_score=min_score)
    dataset = datamodule.val_dataset
    first_index: dict[int, int] = {}
    for idx, image_id in enumerate(dataset.instances.image_ids):
        first_index.setdefault(int(image_id), idx)
    drawn = []
    for image_id in sorted(first_index)[:num_images]:
        image = cv2.cvtColor(cv2.imread(dataset.image_path(first_index[image_id])), cv2.COLOR_BGR2RGB)
        # dim the picture: the synthetic people are drawn in the same part colours as the predictions
        image = (image.astype(np.float32) * 0.45 + 40).astype(np.uint8)
        people = per_image.get(image_id)
        if people is not None:
            image = draw_pose(image, people["keypoints"], people["scores"], score_thr=0.3)
        drawn.append(image)
    return save_png(path, make_grid(drawn, ncols=ncols))


def run_demo(cfg: DictConfig) -> dict[str, Any]:
    """Run the demo on a composed ``experiment=demo`` config and print the before/after table.

    Writes ``metrics_before.json``, ``metrics.json`` (after) and ``predictions.png`` into ``cfg.paths.output_dir``.

    Returns:
        ``{"before", "after", "wall_s", "train_s", "png"}``.
    """
    out = Path(cfg.paths.output_dir)
    start = time.monotonic()
    # the demo's folder is fixed: the previous demo's run (checkpoints, logs, run key) is replaced, not refused
    clear_previous_run(out)
    before = evaluate_untrained(cfg)  # also generates the synthetic data (DataModule.prepare_data) when absent
    write_metrics_json(out / "metrics_before.json", before)
    t_train = time.monotonic()
    _, objects = train(cfg)
    train_s = time.monotonic() - t_train
    after = objects["metrics"]
    png = draw_val_predictions(objects["module"], objects["datamodule"], cfg, out / "predictions.png")
    wall_s = time.monotonic() - start
    table = metrics_table({"untrained": before, f"trained ({cfg.trainer.max_epochs} epochs)": after}, "Tiny HRNet")
    print(f"\nSynthetic val split, detector boxes, {cfg.codec._target_.rsplit('.', 1)[-1]} decoding:\n{table}")
    print(f"\ntrain+val {train_s:.0f}s, whole demo {wall_s:.0f}s; predictions: {png}; run folder: {out}")
    return {"before": before, "after": after, "wall_s": wall_s, "train_s": train_s, "png": png}


def main(argv: list[str] | None = None) -> int:
    """``wbpose-demo [overrides]``: the front page's main job (synthetic data, train, evaluate, picture) in
    ``outputs/demo``; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(DEMO_USAGE)
        return 0
    run_demo(compose_config("train", [*DEMO_OVERRIDES, *args], output_dir=project_root() / "outputs" / "demo"))
    return 0

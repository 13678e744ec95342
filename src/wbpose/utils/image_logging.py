"""Prediction images for the experiment loggers: crops with their predicted skeletons, tiled in a grid.

Drawing itself lives in ``wbpose.inference.visualize``; this module only turns a batch into a grid and hands
it to whichever loggers are attached (wandb ``log_image``, tensorboard ``add_image``, or a PNG next to a CSV log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["draw_crop_predictions", "log_image_to_loggers"]


def draw_crop_predictions(
    images: torch.Tensor, keypoints_crop: torch.Tensor, scores: torch.Tensor, score_thr: float = 0.3, ncols: int = 4
) -> np.ndarray:
    """Draw each crop's predicted skeleton and tile the crops.

    Args:
        images: normalised crops as the model sees them.
        keypoints_crop: predictions in crop pixels.
        scores: keypoint scores.
        score_thr: keypoints at or below this are not drawn.
        ncols: grid columns.

    Returns:
        An RGB uint8 grid.

    Shape:
        images: (N, 3, H, W); keypoints_crop: (N, K, 2); scores: (N, K)
    """
    from wbpose.inference.visualize import denormalize, draw_pose, make_grid

    drawn = [
        draw_pose(denormalize(img.numpy()), kpt.numpy()[None], sc.numpy()[None], score_thr=score_thr)
        for img, kpt, sc in zip(images, keypoints_crop, scores)
    ]
    return make_grid(drawn, ncols=ncols)


def log_image_to_loggers(loggers: Iterable[Any], key: str, image: np.ndarray, step: int, epoch: int) -> None:
    """Send an RGB uint8 image to every attached logger that can store one.

    wandb gets ``log_image``, tensorboard ``add_image`` (HWC); a CSV logger gets a PNG in its log folder
    (``<log_dir>/images/<key>_epoch<NNN>.png``). Other loggers are skipped.
    """
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    for logger in loggers:
        try:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[image], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, image, step, dataformats="HWC")
            elif isinstance(logger, CSVLogger):
                from wbpose.inference.visualize import save_png

                name = key.replace("/", "_")
                save_png(Path(logger.log_dir) / "images" / f"{name}_epoch{epoch:03d}.png", image)
        except Exception as err:  # noqa: BLE001 - an image is never worth stopping a training run for
            log.warning("could not log %s to %s: %s", key, type(logger).__name__, err)

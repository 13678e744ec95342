"""Pictures for the experiment loggers: hand an RGB image to whichever loggers are attached (wandb ``log_image``,
tensorboard ``add_image``, or a PNG next to a CSV log). Drawing lives in :mod:`wbpose.visualize`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from wbpose.visualize import save_png

log = logging.getLogger(__name__)

__all__ = ["log_image_to_loggers"]


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
                name = key.replace("/", "_")
                save_png(Path(logger.log_dir) / "images" / f"{name}_epoch{epoch:03d}.png", image)
        except Exception as err:  # noqa: BLE001 - an image is never worth stopping a training run for
            log.warning("could not log %s to %s: %s", key, type(logger).__name__, err)

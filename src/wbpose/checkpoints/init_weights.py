"""Starting weights for training: an ImageNet HRNet backbone or the backbone of another pose model.

- ``model.pretrained``: MMPose's ImageNet checkpoint (``pretrain_models/hrnet_w32-36af842e.pth`` /
  ``hrnet_w48-8ef0771d.pth``).
- ``model.init.pretrained``: a pose checkpoint (MMPose ``.pth`` or one of our Lightning ``.ckpt``) whose
  ``backbone.*`` weights start training while the head keeps its init. This is the DARK+ recipe: the
  backbone of the 17-keypoint COCO model ``hrnet_w48_coco_384x288_dark-741844ba_20200812.pth``, whose 17-channel
  final layer cannot fit the 133-channel head and is not loaded (as MMPose's backbone ``load_checkpoint``).

Both go through ``wbpose.checkpoints.mmpose.load_imagenet_backbone`` (strict on the backbone: a file of another
architecture fails with a report naming both). Neither file can be downloaded here; pass a local path, e.g.
``model.init.pretrained=/ckpts/hrnet_w48_coco_384x288_dark-741844ba_20200812.pth``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from wbpose.checkpoints.mmpose import load_imagenet_backbone

log = logging.getLogger(__name__)

__all__ = ["load_init_weights"]


def _existing(path: Any, key: str) -> Path:
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{key}={path} does not exist; pass a local checkpoint path or {key}=null")
    return p


def load_init_weights(model: nn.Module, model_cfg: Any) -> None:
    """Apply ``model_cfg.pretrained`` (ImageNet backbone) then ``model_cfg.init.pretrained`` (pose backbone)."""
    backbone: nn.Module = model.backbone  # type: ignore[assignment]
    imagenet = model_cfg.get("pretrained")
    if imagenet:
        load_imagenet_backbone(_existing(imagenet, "model.pretrained"), backbone)
        log.info("backbone initialised from ImageNet checkpoint %s", imagenet)
    init = model_cfg.get("init") or {}
    pose = init.get("pretrained")
    if pose:
        load_imagenet_backbone(_existing(pose, "model.init.pretrained"), backbone)
        log.info("backbone initialised from pose checkpoint %s (head left at its init)", pose)

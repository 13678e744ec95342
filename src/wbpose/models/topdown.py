"""Top-down pose model: backbone + heatmap head, images in, heatmaps out.

The attribute names ``backbone`` and ``head`` give state_dict keys ``backbone.*`` and ``head.final_layer.*``,
which are MMPose 1.x's names (0.x's ``keypoint_head.*`` is renamed by ``wbpose.checkpoints.mmpose``).
Flip testing and decoding belong to the codec (``wbpose.codecs``); the loss to ``wbpose.losses``.
HRNet paper: https://arxiv.org/abs/1902.09212.
"""

from __future__ import annotations

import torch
from torch import nn

from wbpose.models.heatmap_head import HeatmapHead
from wbpose.models.hrnet import HRNet, check_images

__all__ = ["TopdownPoseModel", "build_pose_model"]


class TopdownPoseModel(nn.Module):
    """Backbone followed by a heatmap head.

    Args:
        backbone: a module mapping (B, 3, H, W) images to one (B, C, H/4, W/4) feature map.
        head: a module mapping that feature map to (B, K, H/4, W/4) heatmaps.

    Shape:
        images: (B, 3, H, W) -> heatmaps (B, K, H / 4, W / 4)
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Predict heatmaps.

        Shape:
            images: (B, 3, H, W) -> (B, K, H / 4, W / 4)
        """
        # Validate here too, so a custom backbone still gets the clear error; the check costs microseconds.
        check_images(images)
        return self.head(self.backbone(images))


def build_pose_model(arch: str, num_keypoints: int = 133) -> TopdownPoseModel:
    """Build ``TopdownPoseModel(HRNet(arch), HeatmapHead(out_channels, num_keypoints))`` with MMPose's init.

    Args:
        arch: "w32", "w48" or "tiny" (see ``wbpose.models.hrnet.ARCHS``).
        num_keypoints: heatmap channels (133 for COCO-WholeBody).

    Returns:
        The model; build it under ``torch.device("meta")`` to count parameters without allocating.
    """
    backbone = HRNet(arch)
    return TopdownPoseModel(backbone, HeatmapHead(backbone.out_channels, num_keypoints))

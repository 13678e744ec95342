"""Heatmap head: a single 1x1 convolution from backbone features to one heatmap per keypoint.

As in "Simple Baselines for Human Pose Estimation and Tracking" (Xiao et al., ECCV 2018,
https://arxiv.org/abs/1804.06208) without deconvolutions, which is what HRNet uses: MMPose 0.x
``TopdownHeatmapSimpleHead(num_deconv_layers=0, final_conv_kernel=1)`` and 1.x
``HeatmapHead(deconv_out_channels=None)`` both reduce to one ``Conv2d(C, K, 1)`` named ``final_layer``
(docs/conventions.md#hrnet-and-head). The head only maps tensors to heatmaps; targets, loss and decoding live
elsewhere.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HeatmapHead"]


class HeatmapHead(nn.Module):
    """1x1 conv head; ``final_layer`` matches MMPose's key name so checkpoints load without renaming.

    Args:
        in_channels: channels of the backbone feature map.
        num_keypoints: number of output heatmaps (133 for COCO-WholeBody).

    Shape:
        features: (B, in_channels, h, w) -> heatmaps (B, num_keypoints, h, w)
    """

    def __init__(self, in_channels: int, num_keypoints: int = 133) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_keypoints", num_keypoints)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_channels = in_channels
        self.num_keypoints = num_keypoints
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, kernel_size=1)
        self.init_weights()

    def init_weights(self) -> None:
        """MMPose init: weight Normal(0, 0.001), bias 0."""
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map features to heatmaps.

        Shape:
            features: (B, in_channels, h, w) -> (B, num_keypoints, h, w)
        """
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(f"expected features of shape (B, {self.in_channels}, h, w), got {tuple(features.shape)}")
        return self.final_layer(features)

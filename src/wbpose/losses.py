"""Heatmap regression loss for top-down pose estimation.

The mean squared error between predicted and target heatmaps, weighted per keypoint, as introduced for
heatmap pose networks by Tompson et al. ("Joint Training of a Convolutional Network and a Graphical Model",
https://arxiv.org/abs/1406.2984) and used by HRNet (https://arxiv.org/abs/1902.09212).

MMPose 0.x ``JointsMSELoss(use_target_weight=True)`` and 1.x ``KeypointMSELoss(use_target_weight=True)`` both
compute ``mean over (B, K, h, w) of w_k * (pred - target)^2`` with **no 0.5 factor** and ``loss_weight=1``
(docs/conventions.md#loss). Note the weight multiplies the squared error (1.x); 0.x multiplied pred and target
by ``w`` before squaring, which is the same for the 0/1 weights the codecs produce but differs for fractional
weights.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KeypointMSELoss"]


class KeypointMSELoss(nn.Module):
    """Per-keypoint weighted MSE over heatmaps.

    Args:
        loss_weight: global multiplier (1.0 in every HRNet whole-body config).

    Shape:
        pred: (B, K, h, w), target: (B, K, h, w), weights: (B, K) -> scalar
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Compute ``loss_weight * mean(weights[..., None, None] * (pred - target) ** 2)``.

        Args:
            pred: predicted heatmaps.
            target: target heatmaps.
            weights: per-keypoint weights (visibility); None means all ones.

        Returns:
            The scalar loss, computed in at least float32 (bf16/fp16 predictions under autocast are upcast,
            since the squared errors of near-converged heatmaps are too small for 8 mantissa bits).

        Shape:
            pred: (B, K, h, w), target: (B, K, h, w), weights: (B, K) -> ()
        """
        for name, value in (("pred", pred), ("target", target), ("weights", weights)):
            if not isinstance(value, torch.Tensor) and not (name == "weights" and value is None):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if pred.ndim != 4:
            raise ValueError(f"expected pred of shape (B, K, h, w), got {tuple(pred.shape)}")
        if target.shape != pred.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match pred shape {tuple(pred.shape)} (B, K, h, w)"
            )
        dtype = torch.promote_types(pred.dtype, torch.float32)
        sq_err = (pred.to(dtype) - target.to(dtype)).square()
        if weights is not None:
            if weights.shape != pred.shape[:2]:
                raise ValueError(
                    f"expected weights of shape (B, K) = {tuple(pred.shape[:2])}, got {tuple(weights.shape)}"
                )
            sq_err = sq_err * weights.to(dtype)[:, :, None, None]
        return sq_err.mean() * self.loss_weight

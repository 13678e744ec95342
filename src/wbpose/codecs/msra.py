"""Standard (MSRA) heatmap codec: integer-centred Gaussian targets; argmax + quarter-pixel decoding.

From Xiao et al., "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018
(https://arxiv.org/abs/1804.06208), as used by HRNet (Sun et al., CVPR 2019) and MMPose's ``MSRAHeatmap``
(``unbiased=False``). Rules: docs/conventions.md#msra-encoding and docs/conventions.md#msra-decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from wbpose.codecs.base import BaseHeatmapCodec, HeatmapTarget
from wbpose.codecs.gaussian import msra_heatmaps, msra_profiles

BORDER_RULES = ("1.x", "0.x")


class MSRAHeatmap(BaseHeatmapCodec):
    """Standard heatmap codec.

    Decoding moves the integer argmax a quarter pixel towards the higher neighbour, per axis. Where the
    neighbours may be read follows MMPose 1.x by default (``border_rule="1.x"``, ``refine_keypoints``):
    the x step needs ``1 < x < w-1 and 0 < y < h``, the y step ``1 < y < h-1 and 0 < x < w``, each on its own.
    ``border_rule="0.x"`` (``keypoints_from_heatmaps``) takes both steps only if ``1 < x < w-1 and 1 < y < h-1``.
    The two differ only for maxima on the first/last rows and columns.

    Args:
        image_hw: network input (height, width), e.g. ``(256, 192)``.
        heatmap_hw: heatmap (height, width), e.g. ``(64, 48)``.
        sigma: Gaussian standard deviation in heatmap pixels.
        border_rule: ``"1.x"`` (default) or ``"0.x"``.
    """

    def __init__(
        self, image_hw: Sequence[int], heatmap_hw: Sequence[int], sigma: float, border_rule: str = "1.x"
    ) -> None:
        super().__init__(image_hw, heatmap_hw, sigma)
        if border_rule not in BORDER_RULES:
            raise ValueError(f"border_rule must be one of {BORDER_RULES}, got {border_rule!r}")
        self.border_rule = border_rule

    def _extra_repr(self) -> str:
        return f", border_rule={self.border_rule!r}"

    def encode(self, keypoints_xy: np.ndarray, visible: np.ndarray) -> HeatmapTarget:
        """Render the standard target of one instance (docs/conventions.md#msra-encoding).

        Args:
            keypoints_xy: keypoints in crop pixels.
            visible: 0/1 visibility.

        Returns:
            Heatmaps with a peak-1 Gaussian in a 3-sigma square at ``trunc(kp / stride + 0.5)``; weight =
            visibility, 0 where the square misses the map.

        Shape:
            keypoints_xy: (K, 2), visible: (K,) -> heatmaps (K, h, w), weights (K,)
        """
        kp_hm, vis = self._check_keypoints(keypoints_xy, visible)
        heatmaps, weights = msra_heatmaps(kp_hm, vis, self.heatmap_wh, self.sigma)
        return HeatmapTarget(heatmaps=heatmaps, weights=weights)

    def encode_profiles(
        self, keypoints_xy: np.ndarray, visible: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The target of :meth:`encode` as the two profiles whose outer products are its heatmaps
        (``wbpose.codecs.gaussian.render_profiles``; rendered anywhere in float32, the same maps bit for bit).

        Shape:
            keypoints_xy: (K, 2), visible: (K,) -> gx (K, w), gy (K, h), weights (K,), all float32
        """
        kp_hm, vis = self._check_keypoints(keypoints_xy, visible)
        return msra_profiles(kp_hm, vis, self.heatmap_wh, self.sigma)

    @torch.no_grad()
    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax + quarter-pixel step, batched on the heatmaps' device (docs/conventions.md#msra-decoding).

        Args:
            heatmaps: predicted heatmaps, any floating dtype.

        Returns:
            ``(keypoints_xy, scores)``: float32 crop pixels and the heatmap maximum. Maxima <= 0 give
            ``(-stride, -stride)`` (see :mod:`wbpose.codecs.base`).

        Shape:
            heatmaps: (B, K, h, w) -> keypoints_xy (B, K, 2), scores (B, K)
        """
        hm = self._check_heatmaps(heatmaps)
        index, value = self._argmax(hm)
        offset = self._quarter_offset(hm, index)
        return self._finish(index, value, offset, heatmaps.shape)

    def _quarter_offset(self, hm: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``0.25 * sign(right - left, down - up)`` where the border rule allows it.

        Shape:
            hm: (N, h*w), index: (N,) -> (N, 2)
        """
        h, w = self.heatmap_hw
        x = index % w
        y = torch.div(index, w, rounding_mode="floor")
        if self.border_rule == "1.x":
            use_x = (x > 1) & (x < w - 1) & (y > 0)
            use_y = (y > 1) & (y < h - 1) & (x > 0)
        else:
            use_x = use_y = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
        # Neighbour indices are clamped into the row/map so the gather is always legal; the masks discard them.
        neighbours = torch.stack(
            [
                y * w + (x + 1).clamp(max=w - 1),
                y * w + (x - 1).clamp(min=0),
                (y + 1).clamp(max=h - 1) * w + x,
                (y - 1).clamp(min=0) * w + x,
            ],
            dim=1,
        )
        v = hm.gather(1, neighbours)
        diff = torch.stack([v[:, 0] - v[:, 1], v[:, 2] - v[:, 3]], dim=1)
        use = torch.stack([use_x, use_y], dim=1)
        return torch.where(use, torch.sign(diff) * 0.25, torch.zeros_like(diff))

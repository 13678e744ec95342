"""DARK heatmap codec: unbiased Gaussian targets; argmax + distribution-aware (Taylor) decoding.

From Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose Estimation", CVPR 2020
(https://arxiv.org/abs/1910.06278); MMPose's ``MSRAHeatmap(unbiased=True)`` / 0.x ``post_process='unbiased'``.
Rules: docs/conventions.md#dark-encoding and docs/conventions.md#dark-decoding.

This module is the codec; the batched decoding kernel (the 13 blurred values around each argmax, the Taylor
step, and why they equal the reference's whole-map blur) lives in :mod:`wbpose.codecs.dark_refine`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from wbpose.codecs import base
from wbpose.codecs.base import BaseHeatmapCodec, HeatmapTarget
from wbpose.codecs.dark_refine import (
    TAYLOR_TAPS,
    TapTables,
    cpu_workers,
    opencv_gaussian_kernel,
    tap_tables,
    taps_numpy,
    taps_torch,
    taylor_offset,
)
from wbpose.codecs.gaussian import unbiased_heatmaps, unbiased_profiles

__all__ = ["LOG_EPS", "TAYLOR_TAPS", "DarkHeatmap", "opencv_gaussian_kernel"]

#: The clamp before the logarithm (MMPose ``np.maximum(hm, 1e-10)``).
LOG_EPS = 1e-10


class DarkHeatmap(BaseHeatmapCodec):
    """DARK codec: unbiased encoding and distribution-aware decoding.

    Args:
        image_hw: network input (height, width), e.g. ``(384, 288)``.
        heatmap_hw: heatmap (height, width), e.g. ``(96, 72)``.
        sigma: Gaussian standard deviation in heatmap pixels.
        blur_kernel: odd size of the modulation blur (11 as in MMPose 1.x and the v0.7.0 DARK+ config; 17 in
            the v0.29 384x288 configs).
    """

    def __init__(self, image_hw: Sequence[int], heatmap_hw: Sequence[int], sigma: float, blur_kernel: int = 11) -> None:
        super().__init__(image_hw, heatmap_hw, sigma)
        if int(blur_kernel) != blur_kernel or blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd integer, got {blur_kernel!r}")
        self.blur_kernel = int(blur_kernel)
        self._kernel = opencv_gaussian_kernel(self.blur_kernel)
        self._tables: dict[torch.device, TapTables] = {}

    def _extra_repr(self) -> str:
        return f", blur_kernel={self.blur_kernel}"

    def encode(self, keypoints_xy: np.ndarray, visible: np.ndarray) -> HeatmapTarget:
        """Render the unbiased target of one instance (docs/conventions.md#dark-encoding).

        Args:
            keypoints_xy: keypoints in crop pixels.
            visible: 0/1 visibility.

        Returns:
            Heatmaps with a Gaussian at ``kp / stride`` over the whole map; weight = visibility, 0 where the
            float window ``[mu - 3s, mu + 3s + 1)`` misses the map.

        Shape:
            keypoints_xy: (K, 2), visible: (K,) -> heatmaps (K, h, w), weights (K,)
        """
        kp_hm, vis = self._check_keypoints(keypoints_xy, visible)
        heatmaps, weights = unbiased_heatmaps(kp_hm, vis, self.heatmap_wh, self.sigma)
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
        return unbiased_profiles(kp_hm, vis, self.heatmap_wh, self.sigma)

    @torch.no_grad()
    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax and score on the raw maps, then the DARK Taylor step, batched on the heatmaps' device.

        Equal to the reference per-keypoint algorithm (docs/conventions.md#dark-decoding); the step is taken
        where ``1 < x < w-2 and 1 < y < h-2`` and the Hessian is invertible. Maps containing +-inf that would
        make the step undefined keep the integer argmax.

        Args:
            heatmaps: predicted heatmaps, any floating dtype.

        Returns:
            ``(keypoints_xy, scores)``: float32 crop pixels and the unblurred heatmap maximum. Maxima <= 0 give
            ``(-stride, -stride)`` (see :mod:`wbpose.codecs.base`).

        Shape:
            heatmaps: (B, K, h, w) -> keypoints_xy (B, K, 2), scores (B, K)
        """
        hm = self._check_heatmaps(heatmaps)
        h, w = self.heatmap_hw
        tables = self._tap_tables(hm.device)
        if base.numpy_path(hm):
            index, value, sel, taps = taps_numpy(hm.numpy(), tables, h, w, cpu_workers(hm.shape[0]))
        else:
            index, value = self._argmax(hm)
            sel, taps = taps_torch(hm, index, value, tables, h, w)
        offset = torch.zeros(hm.shape[0], 2, dtype=torch.float64, device=hm.device)
        if sel.numel():
            offset[sel] = taylor_offset(self._log(taps, hm, sel, value[sel])).to(torch.float64)
        return self._finish(index, value, offset, heatmaps.shape)

    def _tap_tables(self, device: torch.device) -> TapTables:
        """Window starts, classes and tap kernels on ``device``, built once per device."""
        if device not in self._tables:
            wide = torch.float64 if device.type != "mps" else torch.float32
            self._tables[device] = tap_tables(self._kernel, *self.heatmap_hw, device, wide)
        return self._tables[device]

    def _log(self, taps: torch.Tensor, hm: torch.Tensor, maps: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``log(max(c * taps, eps))`` with ``c`` the rescale factor, computed only where it matters.

        Shape:
            taps: (M, 13), hm: (N, h*w), maps (indices into hm), value: (M,) -> (M, 13)
        """
        # c >= 1 and all taps >= eps: the clamp is inactive for c*b and b alike, so log(c) cancels (dark_refine doc).
        needs_scale = taps.amin(dim=1) < LOG_EPS
        if bool(needs_scale.any()):
            sub = needs_scale.nonzero()[:, 0]
            scale = value[sub].to(taps.dtype) / self._full_blur_max(hm, maps[sub]).to(taps.dtype)
            taps = taps.clone()
            taps[sub] = taps[sub] * scale[:, None]
        return torch.log(torch.clamp_min(taps, LOG_EPS))

    def _full_blur_max(self, hm: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Maximum of each selected map after the zero-padded Gaussian blur over the whole map.

        Only the rescale factor needs it, to ~1e-7 relative, so it runs in float32. On CPU all maps are stacked
        into one tall image with k//2 zero rows between them and blurred by one ``cv2.sepFilter2D`` call with a
        zero border: the zero rows and the border are exactly the reference's zero padding.

        Shape:
            hm: (N, h*w), maps: (M,) indices -> (M,)
        """
        h, w = self.heatmap_hw
        k, r = self.blur_kernel, self.blur_kernel // 2
        kernel = self._kernel.astype(np.float32)
        if base.numpy_path(hm):
            stack = np.zeros((maps.shape[0] * (h + r) + r, w), dtype=np.float32)
            stack[r:].reshape(-1, h + r, w)[:, :h] = hm.numpy()[maps.numpy()].reshape(-1, h, w)
            blurred = cv2.sepFilter2D(stack, -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
            return torch.from_numpy(blurred[r:].reshape(-1, (h + r) * w)[:, : h * w].max(axis=1))
        g = torch.from_numpy(kernel).to(hm.device)
        out = F.conv2d(hm[maps].reshape(-1, 1, h, w), g.view(1, 1, 1, k), padding=(0, r))
        out = F.conv2d(out, g.view(1, 1, k, 1), padding=(r, 0))
        return out.flatten(1).amax(dim=1)

"""Shared parts of the heatmap codecs: the target container, the codec protocol, geometry and argmax.

A codec is the sole owner of the crop <-> heatmap geometry (MMPose 1.x ``MSRAHeatmap``): ``encode`` renders
Gaussian targets from crop-pixel keypoints in numpy (data workers), ``decode`` turns a batch of predicted
heatmaps into crop-pixel keypoints in torch, on the heatmaps' device. The rules: docs/conventions.md#msra-encoding,
#msra-decoding, #dark-encoding, #dark-decoding and #heatmap-to-image.

Conventions:
    - Sizes: ``image_hw`` / ``heatmap_hw`` are (height, width) as in the configs; ``input_wh`` / ``heatmap_wh``
      are (width, height) as in MMPose.
    - Crop pixel = heatmap pixel * stride, with no half-pixel offset (MMPose, ``use_udp=False``).
    - A keypoint whose heatmap maximum is <= 0 is returned at heatmap location (-1, -1), i.e. crop pixel
      ``(-stride, -stride)``, with its (non-positive) maximum as score. This is MMPose 1.x
      (``get_heatmap_maximum`` sets -1, then the decoder multiplies by the scale factor); such keypoints
      never pass the 0.2 score threshold of the metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@dataclass
class HeatmapTarget:
    """Training target of one instance.

    Attributes:
        heatmaps: Gaussian target per keypoint, float32.
        weights: per-keypoint loss weight (visible and on the map), float32.

    Shape:
        heatmaps: (K, h, w); weights: (K,)
    """

    heatmaps: np.ndarray
    weights: np.ndarray


@runtime_checkable
class HeatmapCodec(Protocol):
    """What the dataset, the LightningModule and the predictor rely on."""

    @property
    def input_wh(self) -> tuple[int, int]: ...

    @property
    def heatmap_wh(self) -> tuple[int, int]: ...

    @property
    def sigma(self) -> float: ...

    @property
    def stride(self) -> float: ...

    def encode(self, keypoints_xy: np.ndarray, visible: np.ndarray) -> HeatmapTarget: ...

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def numpy_path(tensor: torch.Tensor) -> bool:
    """Whether a hot step on ``tensor`` runs through numpy (zero-copy views of CPU tensors).

    On CPU, numpy's SIMD argmax is much faster than torch's max-with-index reduction (scalar on CPU), and its
    fancy indexing copies the DARK windows faster (figures: docs/benchmarks.md, ``benchmarks/codecs.py``).
    (Matrix products stay in torch: OpenBLAS's spinning threads collapse on a busy machine.) Tests switch it off
    to run the torch path, which CUDA uses, on CPU.
    """
    return tensor.device.type == "cpu"


def check_not_nan(maxima: torch.Tensor) -> None:
    """Raise if a heatmap maximum is NaN: a NaN anywhere in a map is that map's max (and argmax) for numpy and torch."""
    if bool(torch.isnan(maxima).any()):
        raise ValueError("heatmaps contain NaN")


def _size_hw(value: Sequence[int], name: str) -> tuple[int, int]:
    """Validate a (height, width) pair of positive integers."""
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (height, width) pair of integers, got {value!r}") from None
    if h <= 0 or w <= 0 or (h, w) != tuple(float(v) for v in value):
        raise ValueError(f"{name} must be a (height, width) pair of positive integers, got {value!r}")
    return h, w


class BaseHeatmapCodec:
    """Geometry, input checks and the batched argmax shared by :class:`MSRAHeatmap` and :class:`DarkHeatmap`.

    Args:
        image_hw: network input (height, width), e.g. ``(256, 192)``.
        heatmap_hw: heatmap (height, width), e.g. ``(64, 48)``.
        sigma: Gaussian standard deviation in heatmap pixels (2 for 256x192, 3 for 384x288).
    """

    def __init__(self, image_hw: Sequence[int], heatmap_hw: Sequence[int], sigma: float) -> None:
        self._image_hw = _size_hw(image_hw, "image_hw")
        self._heatmap_hw = _size_hw(heatmap_hw, "heatmap_hw")
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        self._sigma = float(sigma)
        stride_y = self._image_hw[0] / self._heatmap_hw[0]
        stride_x = self._image_hw[1] / self._heatmap_hw[1]
        # One scalar stride keeps the geometry in one number; every MMPose recipe is isotropic (4, 4).
        if abs(stride_x - stride_y) > 1e-9:
            raise ValueError(
                f"image_hw {self._image_hw} and heatmap_hw {self._heatmap_hw} give different strides "
                f"(x {stride_x}, y {stride_y}); only isotropic strides are supported"
            )
        self._stride = stride_x

    @property
    def image_hw(self) -> tuple[int, int]:
        return self._image_hw

    @property
    def heatmap_hw(self) -> tuple[int, int]:
        return self._heatmap_hw

    @property
    def input_wh(self) -> tuple[int, int]:
        """Network input (width, height), MMPose's ``input_size``."""
        return self._image_hw[1], self._image_hw[0]

    @property
    def heatmap_wh(self) -> tuple[int, int]:
        """Heatmap (width, height), MMPose's ``heatmap_size``."""
        return self._heatmap_hw[1], self._heatmap_hw[0]

    @property
    def sigma(self) -> float:
        return self._sigma

    @property
    def stride(self) -> float:
        """Crop pixels per heatmap pixel (4 for every recipe here)."""
        return self._stride

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_hw={list(self._image_hw)}, heatmap_hw={list(self._heatmap_hw)}, "
            f"sigma={self._sigma:g}{self._extra_repr()})"
        )

    def _extra_repr(self) -> str:
        return ""

    # ------------------------------------------------------------------ encoding helpers
    def _check_keypoints(self, keypoints_xy: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validate ``encode`` inputs; return heatmap-pixel keypoints (float64) and visibility (float64).

        Shape:
            keypoints_xy: (K, 2), visible: (K,) -> (K, 2), (K,)
        """
        kp = np.asarray(keypoints_xy, dtype=np.float64)
        vis = np.asarray(visible, dtype=np.float64)
        if kp.ndim != 2 or kp.shape[1] != 2:
            raise ValueError(f"expected keypoints_xy of shape (K, 2), got {kp.shape}")
        if vis.shape != (kp.shape[0],):
            raise ValueError(
                f"expected visible of shape (K,) = ({kp.shape[0]},) to match keypoints_xy, got {vis.shape}"
            )
        if np.isnan(vis).any():
            raise ValueError("visible contains NaN")
        # Invisible keypoints may hold anything (often 0, sometimes NaN after a transform); visible ones must not.
        if not np.isfinite(kp[vis >= 0.5]).all():
            raise ValueError("keypoints_xy has non-finite coordinates for visible keypoints")
        return kp / self._stride, vis

    # ------------------------------------------------------------------ decoding helpers
    def _check_heatmaps(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """Validate ``decode`` input; return it as contiguous float32 of shape (B*K, h*w).

        Shape:
            heatmaps: (B, K, h, w) -> (B*K, h*w)
        """
        h, w = self._heatmap_hw
        expected = f"expected heatmaps of shape (B, K, h, w) with h,w = {h},{w}"
        if not isinstance(heatmaps, torch.Tensor):
            raise TypeError(f"{expected} as a torch.Tensor, got {type(heatmaps).__name__}")
        if heatmaps.ndim != 4 or tuple(heatmaps.shape[2:]) != (h, w):
            raise ValueError(f"{expected}, got {tuple(heatmaps.shape)}")
        if not heatmaps.is_floating_point():
            raise ValueError(f"{expected} and a floating dtype, got {heatmaps.dtype}")
        return heatmaps.detach().to(torch.float32).reshape(-1, h * w).contiguous()

    @staticmethod
    def _argmax(hm_flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-occurrence argmax and maximum of each row (``np.argmax`` semantics, as MMPose).

        Raises ValueError if a map contains NaN (a NaN is the maximum for both numpy and torch).

        Shape:
            hm_flat: (N, h*w) -> index (N,) int64, value (N,) float32
        """
        if numpy_path(hm_flat):
            # The argmax pass reads every heatmap value once and dominates decoding time.
            index = torch.from_numpy(np.argmax(hm_flat.numpy(), axis=1))
        else:
            index = hm_flat.argmax(dim=1)
        value = hm_flat.gather(1, index[:, None])[:, 0]
        check_not_nan(value)
        return index, value

    def _finish(
        self, index: torch.Tensor, value: torch.Tensor, offset_xy: torch.Tensor, shape: torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer argmax + sub-pixel offset -> crop pixels; maxima <= 0 go to heatmap location (-1, -1).

        Shape:
            index, value: (N,), offset_xy: (N, 2) -> keypoints_xy (B, K, 2), scores (B, K)
        """
        w = self._heatmap_hw[1]
        xy = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], dim=1).to(torch.float64)
        xy = torch.where((value > 0)[:, None], xy + offset_xy.to(torch.float64), torch.full_like(xy, -1.0))
        keypoints = (xy * self._stride).to(torch.float32).reshape(shape[0], shape[1], 2)
        return keypoints, value.reshape(shape[0], shape[1])

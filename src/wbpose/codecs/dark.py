"""DARK heatmap codec: unbiased Gaussian targets; argmax + distribution-aware (Taylor) decoding.

From Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose Estimation", CVPR 2020
(https://arxiv.org/abs/1910.06278); MMPose's ``MSRAHeatmap(unbiased=True)`` / 0.x ``post_process='unbiased'``.
Facts: SPEC 4.2 (encoding) and 4.4 (decoding).

The reference decoder blurs every whole map with ``cv2.GaussianBlur`` (one call per keypoint), rescales it so its
maximum equals the unblurred maximum, takes ``log(max(hm, 1e-10))`` and takes one Newton step at the argmax.
Only 13 blurred values around the argmax enter that step, so this module computes just those, for all maps at once:

* the blur is linear, so the 5x5 blurred neighbourhood is ``Wy^T @ window @ Wx``, where ``window`` is the
  (k+4)^2 patch of the raw map around the argmax and ``Wx``/``Wy`` hold the 1-D OpenCV kernel; windows are
  clamped inside the map and the weights drop the taps that would fall outside, which is exactly the zero
  padding of the reference (see ``_axis_windows``);
* the rescale factor ``c = max(hm) / max(blur(hm))`` is >= 1 (the kernel is non-negative and sums to <= 1 under
  zero padding), so when all 13 blurred values are >= 1e-10 neither the clamp nor ``c`` matters:
  ``log(c * b) = log(c) + log(b)`` and every Taylor term is a difference in which ``log(c)`` cancels. The other
  maps (blurred neighbourhood reaching zero or negative values: flat or noise-only maps) do depend on ``c``
  (by ~0.1 px typically), so for them alone the whole map is blurred to get ``max(blur(hm))`` exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from wbpose.codecs import base
from wbpose.codecs.base import BaseHeatmapCodec, HeatmapTarget
from wbpose.codecs.gaussian import unbiased_heatmaps

#: The clamp before the logarithm (MMPose ``np.maximum(hm, 1e-10)``).
LOG_EPS = 1e-10

# OpenCV uses these fixed kernels for sizes <= 9 when sigma <= 0 (``getGaussianKernel``'s small_gaussian_tab).
_OPENCV_SMALL_KERNELS = {
    1: [1.0],
    3: [0.25, 0.5, 0.25],
    5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
    7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
    9: [0.015625, 0.05078125, 0.1171875, 0.19921875, 0.234375, 0.19921875, 0.1171875, 0.05078125, 0.015625],
}


def opencv_gaussian_kernel(size: int) -> np.ndarray:
    """The 1-D kernel of ``cv2.GaussianBlur(img, (size, size), 0)``, i.e. ``cv2.getGaussianKernel(size, 0)``.

    Sigma is OpenCV's default ``0.3 * ((size - 1) * 0.5 - 1) + 0.8`` (2.0 for 11, 2.9 for 17).

    Shape:
        -> (size,) float64, summing to 1
    """
    if size in _OPENCV_SMALL_KERNELS:
        return np.asarray(_OPENCV_SMALL_KERNELS[size], dtype=np.float64)
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    t = np.arange(size, dtype=np.float64) - (size - 1) * 0.5
    g = np.exp(-(t**2) / (2.0 * sigma**2))
    return g / g.sum()


class _AxisWindows(NamedTuple):
    """Blur windows along one axis, indexed by the argmax coordinate ``p`` (see :func:`_axis_windows`)."""

    start: torch.Tensor  # (size,) int64: first map sample of the window
    weights: torch.Tensor  # (size, P, 5): window samples -> blurred values at p-2 .. p+2
    clamped: torch.Tensor  # (size,) bool: the window was pushed inside the map, so its weights are shifted
    shared: torch.Tensor | None  # (P, 5): the weights of every unclamped p (None if the map is too small)


def _axis_windows(kernel: np.ndarray, size: int, device: torch.device, dtype: torch.dtype) -> _AxisWindows:
    """Window start and weights per argmax coordinate ``p`` along an axis of ``size`` samples.

    The window holds map samples ``start .. start+P-1`` with ``P = min(k + 4, size)``; it covers every in-map
    sample within ``r = k // 2`` of ``p-2 .. p+2`` and never leaves the map. Weight ``[q, o]`` is the kernel tap
    linking sample ``start + q`` to output ``p - 2 + o`` (0 beyond the kernel), so samples outside the map are
    simply absent: the zero-padded blur of the reference. Unclamped windows all share one weight matrix.
    """
    k = kernel.shape[0]
    r = k // 2
    p_len = min(k + 4, size)
    p = np.arange(size)
    start = np.clip(p - 2 - r, 0, size - p_len)
    tap = (start[:, None, None] + np.arange(p_len)[None, :, None]) - (p[:, None, None] + np.arange(-2, 3)) + r
    weights = np.where((tap >= 0) & (tap < k), kernel[np.clip(tap, 0, k - 1)], 0.0)
    clamped = start != p - 2 - r
    free = np.flatnonzero(~clamped)
    as_tensor = lambda a: torch.from_numpy(a).to(device, dtype)  # noqa: E731
    return _AxisWindows(
        start=torch.from_numpy(start).to(device),
        weights=as_tensor(weights),
        clamped=torch.from_numpy(clamped).to(device),
        shared=as_tensor(weights[free[0]]) if free.size else None,
    )


def _blur_axis(a: torch.Tensor, p: torch.Tensor, windows: _AxisWindows) -> torch.Tensor:
    """Blur the last axis of each window: ``a[m] @ windows.weights[p[m]]``.

    All windows go through one tall matrix product with the shared weights (cheap); the windows pushed inside
    the map (start != p - 2 - r: argmax within k//2 + 2 of an edge) are then redone with their own weights.

    Shape:
        a: (M, R, P), p: (M,) -> (M, R, 5)
    """
    m, rows, p_len = a.shape
    if windows.shared is None:  # maps smaller than the window: every window is clamped
        return a @ windows.weights[p]
    out = (a.reshape(m * rows, p_len) @ windows.shared).reshape(m, rows, 5)
    fix = windows.clamped[p].nonzero()[:, 0]
    if fix.numel():
        out[fix] = a[fix] @ windows.weights[p[fix]]
    return out


def _refinable(value, x, y, h: int, w: int):
    """Maps that get the Taylor step: positive maximum 2 pixels inside the border (numpy or torch arrays)."""
    return (value > 0) & (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)


#: Maps per block of the CPU argmax + window copy: ~3 MB of 64x48 maps, so each window copy reads a map the
#: argmax has just pulled into cache (~10-15% less time than two passes over the whole batch).
_CPU_BLOCK = 256


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """A pool per (process, size) for the CPU decode; keyed by pid: a forked child cannot use its parent's threads."""
    key = (os.getpid(), workers)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wbpose-dark")
    return _POOLS[key]


def _run_chunks(fn: Callable[[int, int], None], n: int, workers: int, chunk: int) -> None:
    """Call ``fn(lo, hi)`` over ``[0, n)`` in chunks, on ``workers`` threads (numpy releases the GIL inside)."""
    bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    if workers <= 1 or len(bounds) <= 1:
        for lo, hi in bounds:
            fn(lo, hi)
        return
    for future in [_thread_pool(workers).submit(fn, lo, hi) for lo, hi in bounds]:
        future.result()


def _window_view(
    hm: np.ndarray, windows: tuple[_AxisWindows, _AxisWindows], w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Window starts per argmax row/column and a no-copy view of the (ph, pw) window at every flat element.

    Shape:
        hm: (N, h*w) -> start_y (h,), start_x (w,), all_windows (N*h*w - ..., ph, pw), ph, pw
    """
    start_y, start_x = (axis.start.numpy() for axis in windows)
    ph, pw = (axis.weights.shape[1] for axis in windows)
    flat, step = hm.reshape(-1), hm.itemsize
    shape = (flat.size - (ph - 1) * w - pw + 1, ph, pw)
    all_windows = np.lib.stride_tricks.as_strided(flat, shape, (step, w * step, step), writeable=False)
    return start_y, start_x, all_windows, ph, pw


def _cpu_workers(n: int) -> int:
    """Threads for the CPU decode: torch's intra-op setting, when the batch is large enough to split."""
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1)) if n >= 2 * _CPU_BLOCK else 1


def _locate_numpy_threaded(
    hm: np.ndarray, windows: tuple[_AxisWindows, _AxisWindows], h: int, w: int, workers: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_locate_numpy` split over threads: argmax of all blocks in parallel, then the window copies.

    Two passes instead of the fused block loop (each map is read twice), but both run on every core.
    """
    start_y, start_x, all_windows, ph, pw = _window_view(hm, windows, w)
    n, hw = hm.shape
    index, value = np.empty(n, np.int64), np.empty(n, hm.dtype)

    def find(lo: int, hi: int) -> None:
        idx = hm[lo:hi].argmax(axis=1)
        index[lo:hi] = idx
        value[lo:hi] = np.take_along_axis(hm[lo:hi], idx[:, None], axis=1)[:, 0]

    _run_chunks(find, n, workers, _CPU_BLOCK)
    y, x = np.divmod(index, w)
    sel = np.flatnonzero(_refinable(value, x, y, h, w))
    first = sel * hw + start_y[y[sel]] * w + start_x[x[sel]]
    patch = np.empty((sel.size, ph, pw), dtype=np.float64)

    def copy(lo: int, hi: int) -> None:
        patch[lo:hi] = all_windows[first[lo:hi]]

    _run_chunks(copy, sel.size, workers, _CPU_BLOCK)
    return tuple(torch.from_numpy(a) for a in (index, value, sel, patch))


def _locate_numpy(
    hm: np.ndarray, windows: tuple[_AxisWindows, _AxisWindows], h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPU: argmax and score of every map, and the float64 blur window of every refinable map, block by block.

    The flat batch is viewed (without copying) as the (ph, pw) windows starting at every element, so one fancy
    index per block copies the windows, casting to float64 on the way.

    Shape:
        hm: (N, h*w) -> index (N,), value (N,), sel (M,) indices of refinable maps, patch (M, ph, pw)
    """
    start_y, start_x, all_windows, ph, pw = _window_view(hm, windows, w)
    n, hw = hm.shape
    index, value, sel = np.empty(n, np.int64), np.empty(n, hm.dtype), np.empty(n, np.int64)
    patch = np.empty((n, ph, pw), dtype=np.float64)  # only the first m rows get written (and paged in)
    m = 0
    for lo in range(0, n, _CPU_BLOCK):
        block = hm[lo : lo + _CPU_BLOCK]
        idx = block.argmax(axis=1)
        val = block[np.arange(idx.size), idx]
        index[lo : lo + idx.size], value[lo : lo + idx.size] = idx, val
        y, x = np.divmod(idx, w)
        s = np.flatnonzero(_refinable(val, x, y, h, w))
        patch[m : m + s.size] = all_windows[(lo + s) * hw + start_y[y[s]] * w + start_x[x[s]]]
        sel[m : m + s.size] = lo + s
        m += s.size
    return tuple(torch.from_numpy(a) for a in (index, value, sel[:m], patch[:m]))


def _gather_windows(
    hm: torch.Tensor, maps: torch.Tensor, start_y: torch.Tensor, start_x: torch.Tensor, ph: int, pw: int, w: int
) -> torch.Tensor:
    """Torch version of the window copy in :func:`_locate_numpy` (CUDA), one indexed copy for all maps.

    Shape:
        hm: (N, h*w), maps, start_y, start_x: (M,) -> (M, ph, pw)
    """
    first = maps * hm.shape[1] + start_y * w + start_x
    rows = first[:, None] + torch.arange(ph, device=hm.device) * w
    flat = hm.reshape(-1)
    return flat.as_strided((flat.numel() - pw + 1, pw), (1, 1))[rows]


def _blur_windows(
    patch: torch.Tensor, x: torch.Tensor, y: torch.Tensor, windows: tuple[_AxisWindows, _AxisWindows]
) -> torch.Tensor:
    """Zero-padded Gaussian blur of each map, evaluated only on the 5x5 block around its argmax (x, y).

    Both passes run in float64: the Newton step can amplify float32 rounding of the blur beyond 1e-4 px on
    flat or noisy maps.

    Shape:
        patch: (M, ph, pw) windows from :func:`_locate_numpy`, x, y: (M,) -> (M, 5, 5) indexed [dy + 2, dx + 2]
    """
    win_y, win_x = windows
    rows_blurred = _blur_axis(patch, x, win_x)
    columns = rows_blurred.transpose(1, 2).contiguous()
    return _blur_axis(columns, y, win_y).transpose(1, 2)


def _taylor_offset(log_hm: torch.Tensor) -> torch.Tensor:
    """Newton step ``-H^-1 g`` from central differences on the 5x5 log neighbourhood (SPEC 4.4 step 4).

    Zero where the Hessian determinant is 0, and where the step is not finite (only for maps holding inf).

    Shape:
        log_hm: (N, 5, 5), indexed [dy + 2, dx + 2] -> (N, 2) as (x, y)
    """
    h = log_hm
    dx = 0.5 * (h[:, 2, 3] - h[:, 2, 1])
    dy = 0.5 * (h[:, 3, 2] - h[:, 1, 2])
    dxx = 0.25 * (h[:, 2, 4] - 2 * h[:, 2, 2] + h[:, 2, 0])
    dyy = 0.25 * (h[:, 4, 2] - 2 * h[:, 2, 2] + h[:, 0, 2])
    dxy = 0.25 * (h[:, 3, 3] - h[:, 1, 3] - h[:, 3, 1] + h[:, 1, 1])
    det = dxx * dyy - dxy * dxy
    safe = torch.where(det != 0, det, torch.ones_like(det))
    # inv([[a, b], [b, d]]) = [[d, -b], [-b, a]] / det
    offset = -torch.stack([dyy * dx - dxy * dy, dxx * dy - dxy * dx], dim=1) / safe[:, None]
    keep = (det != 0)[:, None] & torch.isfinite(offset)
    return torch.where(keep, offset, torch.zeros_like(offset))


#: The 13 neighbourhood entries the Taylor step reads, as a (5, 5) mask indexed [dy + 2, dx + 2].
_TAYLOR_TAPS = np.zeros((5, 5), dtype=bool)
_TAYLOR_TAPS[2, :] = _TAYLOR_TAPS[:, 2] = True
_TAYLOR_TAPS[1:4:2, 1:4:2] = True


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
        self._windows: dict[torch.device, tuple[_AxisWindows, _AxisWindows]] = {}

    def _extra_repr(self) -> str:
        return f", blur_kernel={self.blur_kernel}"

    def encode(self, keypoints_xy: np.ndarray, visible: np.ndarray) -> HeatmapTarget:
        """Render the unbiased target of one instance (SPEC 4.2).

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

    @torch.no_grad()
    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax and score on the raw maps, then the DARK Taylor step, batched on the heatmaps' device.

        Equal to the reference per-keypoint algorithm of SPEC 4.4 (blur, rescale, log, Taylor); the step is taken
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
        index, value, sel, patch = self._locate(hm)
        offset = torch.zeros(hm.shape[0], 2, dtype=torch.float64, device=hm.device)
        if sel.numel():
            w = self.heatmap_hw[1]
            x, y = index[sel] % w, torch.div(index[sel], w, rounding_mode="floor")
            blurred = _blur_windows(patch, x, y, self._window_tables(hm.device))
            offset[sel] = _taylor_offset(self._log(blurred, hm, sel, value[sel])).to(torch.float64)
        return self._finish(index, value, offset, heatmaps.shape)

    def _window_tables(self, device: torch.device) -> tuple[_AxisWindows, _AxisWindows]:
        """(y, x) blur windows on ``device``, built once per device."""
        if device not in self._windows:
            wide = torch.float64 if device.type != "mps" else torch.float32
            h, w = self.heatmap_hw
            self._windows[device] = (
                _axis_windows(self._kernel, h, device, wide),
                _axis_windows(self._kernel, w, device, wide),
            )
        return self._windows[device]

    def _locate(self, hm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Argmax and score of every map; indices and float64 blur windows of the maps the step applies to.

        Shape:
            hm: (N, h*w) -> index (N,), value (N,), sel (M,), patch (M, ph, pw)
        """
        h, w = self.heatmap_hw
        windows = self._window_tables(hm.device)
        if base.numpy_path(hm):
            workers = _cpu_workers(hm.shape[0])
            if workers > 1:
                index, value, sel, patch = _locate_numpy_threaded(hm.numpy(), windows, h, w, workers)
            else:
                index, value, sel, patch = _locate_numpy(hm.numpy(), windows, h, w)
            base.check_not_nan(value)
            return index, value, sel, patch
        index, value = self._argmax(hm)
        x, y = index % w, torch.div(index, w, rounding_mode="floor")
        sel = _refinable(value, x, y, h, w).nonzero()[:, 0]
        (win_y, win_x), xs, ys = windows, x[sel], y[sel]
        ph, pw = win_y.weights.shape[1], win_x.weights.shape[1]
        patch = _gather_windows(hm, sel, win_y.start[ys], win_x.start[xs], ph, pw, w)
        return index, value, sel, patch.to(win_x.weights.dtype)

    def _log(self, blurred: torch.Tensor, hm: torch.Tensor, maps: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``log(max(c * blurred, eps))`` with ``c`` the rescale factor, computed only where it matters.

        Shape:
            blurred: (M, 5, 5), hm: (N, h*w), maps (indices into hm), value: (M,) -> (M, 5, 5)
        """
        taps = torch.from_numpy(_TAYLOR_TAPS).to(blurred.device)
        # c >= 1 and all taps >= eps: the clamp is inactive for c*b and b alike, so log(c) cancels (module doc).
        needs_scale = blurred[:, taps].amin(dim=1) < LOG_EPS
        if bool(needs_scale.any()):
            sub = needs_scale.nonzero()[:, 0]
            scale = value[sub].to(blurred.dtype) / self._full_blur_max(hm, maps[sub]).to(blurred.dtype)
            blurred = blurred.clone()
            blurred[sub] = blurred[sub] * scale[:, None, None]
        return torch.log(torch.clamp_min(blurred, LOG_EPS))

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

"""DARK decoding kernel: the 13 blurred values around each argmax and the Taylor (Newton) step, for all maps at once.

The machinery under :class:`wbpose.codecs.dark.DarkHeatmap` (as MMPose 1.x keeps ``refine_keypoints_dark`` in
``mmpose/codecs/utils/refinement.py``). Rules: docs/conventions.md#dark-decoding.

The reference decoder blurs every whole map with ``cv2.GaussianBlur`` (one call per keypoint), rescales it so its
maximum equals the unblurred maximum, takes ``log(max(hm, 1e-10))`` and takes one Newton step at the argmax.
Only 13 blurred values around the argmax enter that step (:data:`TAYLOR_TAPS`), so this module computes just
those, for all maps at once:

* the blur is linear, so each of the 13 values is a fixed weighted sum over the (k+4)^2 window of the raw map
  around the argmax: one matrix product ``window (M, (k+4)^2) @ kernel ((k+4)^2, 13)``, in float64 because
  float32 rounding, amplified by the Newton step on flat or noisy maps, exceeds 1e-4 px. Windows are
  clamped inside the map and the weights drop the taps that would fall outside, which is exactly the zero
  padding of the reference (see ``_axis_windows``). All windows away from the edges share one kernel; the
  others fall into a few classes (how far the window was pushed inward), each with its own kernel, so the
  windows are sorted by class and every class is one product;
* the rescale factor ``c = max(hm) / max(blur(hm))`` is >= 1 (the kernel is non-negative and sums to <= 1 under
  zero padding), so when all 13 blurred values are >= 1e-10 neither the clamp nor ``c`` matters:
  ``log(c * b) = log(c) + log(b)`` and every Taylor term is a difference in which ``log(c)`` cancels. The other
  maps (blurred neighbourhood reaching zero or negative values: flat or noise-only maps) do depend on ``c``
  (by ~0.1 px typically), so for them alone the whole map is blurred to get ``max(blur(hm))`` exactly
  (``DarkHeatmap._log`` and ``DarkHeatmap._full_blur_max``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple, TypeVar

import numpy as np
import torch

from wbpose.codecs import base

T = TypeVar("T")

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


#: The 13 blurred values the Taylor step reads, as (dy, dx) offsets from the argmax, in the order
#: :func:`taylor_offset` indexes them.
TAYLOR_TAPS = (
    (0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (0, 2), (0, -2), (2, 0), (-2, 0), (1, 1), (-1, 1), (1, -1), (-1, -1)
)  # fmt: skip


class _AxisWindows(NamedTuple):
    """Blur windows along one axis, indexed by the argmax coordinate ``p`` (see :func:`_axis_windows`)."""

    start: np.ndarray  # (size,) int64: first map sample of the window
    kind: np.ndarray  # (size,) int64: weight class of p, i.e. of p - start (every window away from the edges: one)
    weights: np.ndarray  # (classes, P, 5) float64: window sample -> blurred value at p-2 .. p+2
    interior: int  # the class of windows not pushed inward (p - start = k//2 + 2), -1 if the map is too small


def _axis_windows(kernel: np.ndarray, size: int) -> _AxisWindows:
    """Window start, weight class and weights per argmax coordinate ``p`` along an axis of ``size`` samples.

    The window holds map samples ``start .. start+P-1`` with ``P = min(k + 4, size)``; it covers every in-map
    sample within ``r = k // 2`` of ``p-2 .. p+2`` and never leaves the map. Weight ``[q, o]`` is the kernel tap
    linking sample ``start + q`` to output ``p - 2 + o`` (0 beyond the kernel), so samples outside the map are
    simply absent: the zero-padded blur of the reference. The weights depend on ``p - start`` only.
    """
    k = kernel.shape[0]
    r = k // 2
    p_len = min(k + 4, size)
    p = np.arange(size)
    start = np.clip(p - 2 - r, 0, size - p_len)
    lag, kind = np.unique(p - start, return_inverse=True)
    tap = np.arange(p_len)[None, :, None] - lag[:, None, None] - np.arange(-2, 3)[None, None, :] + r
    weights = np.where((tap >= 0) & (tap < k), kernel[np.clip(tap, 0, k - 1)], 0.0)
    interior = np.flatnonzero(lag == r + 2)
    return _AxisWindows(
        start=start, kind=kind.reshape(-1), weights=weights, interior=int(interior[0]) if interior.size else -1
    )


class TapTables(NamedTuple):
    """Everything the decode needs to turn raw windows into the 13 blurred values, on one device."""

    start: torch.Tensor  # (h*w,) int64: per flat argmax index, the flat offset of its window's first sample
    kind: torch.Tensor  # (h*w,) int64: per flat argmax index, its window class
    kernels: torch.Tensor  # (classes, ph * pw, 13): raw window -> the 13 blurred values
    interior: int  # the class of windows away from every edge (most of them), -1 if there is none
    ph: int
    pw: int


def tap_tables(kernel: np.ndarray, h: int, w: int, device: torch.device, dtype: torch.dtype) -> TapTables:
    """Per window class, the kernel mapping the flattened (ph, pw) raw window to :data:`TAYLOR_TAPS` blurred values.

    ``kernels[c][i * pw + j, t] = wy[i, dy_t + 2] * wx[j, dx_t + 2]``: the separable blur evaluated at tap t.
    """
    axis_y, axis_x = _axis_windows(kernel, h), _axis_windows(kernel, w)
    oy, ox = (np.array([tap[a] + 2 for tap in TAYLOR_TAPS]) for a in (0, 1))
    wy, wx = axis_y.weights[:, :, oy], axis_x.weights[:, :, ox]  # (classes, P, 13)
    ph, pw = wy.shape[1], wx.shape[1]
    kernels = (wy[:, None, :, None, :] * wx[None, :, None, :, :]).reshape(-1, ph * pw, len(TAYLOR_TAPS))
    n_kind_x = axis_x.weights.shape[0]
    interior = axis_y.interior * n_kind_x + axis_x.interior if min(axis_y.interior, axis_x.interior) >= 0 else -1
    start = axis_y.start[:, None] * w + axis_x.start[None, :]
    kind = axis_y.kind[:, None] * n_kind_x + axis_x.kind[None, :]
    return TapTables(
        start=torch.from_numpy(start.reshape(-1)).to(device),
        kind=torch.from_numpy(kind.reshape(-1)).to(device),
        kernels=torch.from_numpy(kernels).to(device, dtype),
        interior=interior,
        ph=ph,
        pw=pw,
    )


def _refinable(value, x, y, h: int, w: int):
    """Maps that get the Taylor step: positive maximum 2 pixels inside the border (numpy or torch arrays)."""
    return (value > 0) & (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)


#: Maps per block of the CPU decode (~3 MB of 64x48 maps): the window copy reads maps the argmax has just
#: pulled into cache.
_CPU_BLOCK = 256

_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """A pool per (process, size) for the CPU decode; keyed by pid: a forked child cannot use its parent's threads."""
    key = (os.getpid(), workers)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wbpose-dark")
    return _POOLS[key]


def _run_tasks(tasks: list[Callable[[], T]], workers: int) -> list[T]:
    """Results of ``tasks``, run on ``workers`` threads (numpy releases the GIL inside), or inline for one worker."""
    if workers <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    return [future.result() for future in [_thread_pool(workers).submit(task) for task in tasks]]


def cpu_workers(n: int) -> int:
    """Threads for the CPU decode: torch's intra-op setting, when the batch is large enough to split."""
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1)) if n >= 2 * _CPU_BLOCK else 1


def _runs(kind: np.ndarray) -> list[tuple[int, int, int]]:
    """``(class, lo, hi)`` for each run of equal values in a sorted class vector."""
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(kind)) + 1, [kind.size]])
    return [(int(kind[lo]), int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]


#: Multiply-adds per BLAS call in :func:`_small_matmul`: below OpenBLAS's threshold for using its own threads
#: (65536 * 4), so the decode's threads never start more threads than there are cores.
_BLAS_CALL_MACS = 200_000


def _small_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as a stack of row blocks, one single-threaded BLAS call each (numpy loops over them in C).

    Shape:
        a: (n, k), b: (k, t) -> (n, t)
    """
    rows = max(1, _BLAS_CALL_MACS // (b.shape[0] * b.shape[1]))
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    full = a.shape[0] - a.shape[0] % rows
    if full:
        np.matmul(a[:full].reshape(-1, rows, a.shape[1]), b, out=out[:full].reshape(-1, rows, b.shape[1]))
    if full < a.shape[0]:
        np.matmul(a[full:], b, out=out[full:])
    return out


class _Block(NamedTuple):
    """One block of maps after :func:`taps_numpy`'s first pass."""

    index: np.ndarray  # (n,) argmax of every map
    value: np.ndarray  # (n,) its value
    inner: np.ndarray  # (a,) refinable maps whose window is the interior class
    inner_taps: np.ndarray  # (a, 13) their blurred values
    edge: np.ndarray  # (b,) the other refinable maps (window pushed inward at an edge)
    edge_kind: np.ndarray  # (b,) their window class
    edge_windows: np.ndarray  # (b, ph * pw) their raw windows, float32


def taps_numpy(
    hm: np.ndarray, tables: TapTables, h: int, w: int, workers: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPU: argmax and score of every map, then the 13 blurred values of every refinable map.

    Block by block (``_CPU_BLOCK`` maps, a few MB, on ``workers`` threads): the argmax, then, while the block is
    still in cache, one fancy index copies the window of each refinable map out of a no-copy view of the batch as
    (ph, pw) windows at every element; the interior windows (most) are cast to float64 and multiplied by the
    interior kernel at once. The edge windows are kept and, sorted by class, multiplied by their own kernels.

    Shape:
        hm: (N, h*w) -> index (N,), value (N,), sel (M,) indices of refinable maps, taps (M, 13) float64
    """
    n, hw = hm.shape
    ph, pw = tables.ph, tables.pw
    kernels = tables.kernels.numpy()
    start, kind_of = tables.start.numpy(), tables.kind.numpy()
    flat, step = hm.reshape(-1), hm.itemsize
    shape = (flat.size - (ph - 1) * w - pw + 1, ph, pw)
    all_windows = np.lib.stride_tricks.as_strided(flat, shape, (step, w * step, step), writeable=False)

    def first_pass(lo: int, hi: int) -> _Block:
        maps = hm[lo:hi]
        index = maps.argmax(axis=1)
        value = np.take_along_axis(maps, index[:, None], axis=1)[:, 0]
        y, x = np.divmod(index, w)
        sel = np.flatnonzero(_refinable(value, x, y, h, w))
        peak = index[sel]
        kind = kind_of[peak]
        windows = all_windows[(lo + sel) * hw + start[peak]].reshape(sel.size, ph * pw)
        inner = kind == tables.interior  # all False when there is no interior class (then kernels[-1] gets no rows)
        edge = ~inner
        inner_taps = _small_matmul(windows[inner].astype(kernels.dtype), kernels[tables.interior])
        return _Block(index, value, lo + sel[inner], inner_taps, lo + sel[edge], kind[edge], windows[edge])

    blocks = _run_tasks([partial(first_pass, lo, lo + _CPU_BLOCK) for lo in range(0, n, _CPU_BLOCK)], workers)
    index, value, inner, inner_taps, edge, edge_kind, edge_windows = (np.concatenate(a) for a in zip(*blocks))
    base.check_not_nan(torch.from_numpy(value))
    order = np.argsort(edge_kind, kind="stable")
    edge, edge_kind = edge[order], edge_kind[order]

    def edge_taps(kind: int, lo: int, hi: int) -> np.ndarray:
        return _small_matmul(edge_windows[order[lo:hi]].astype(kernels.dtype), kernels[kind])

    tasks = [partial(edge_taps, *run) for run in _runs(edge_kind)]
    taps = np.concatenate([inner_taps, *_run_tasks(tasks, workers)])
    sel = np.concatenate([inner, edge])
    return tuple(torch.from_numpy(a) for a in (index, value, sel, taps))


def taps_torch(
    hm: torch.Tensor, index: torch.Tensor, value: torch.Tensor, tables: TapTables, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch version of the window stage of :func:`taps_numpy` (CUDA): one indexed copy, one product per class.

    Shape:
        hm: (N, h*w), index, value: (N,) -> sel (M,), taps (M, 13)
    """
    x, y = index % w, torch.div(index, w, rounding_mode="floor")
    sel = _refinable(value, x, y, h, w).nonzero()[:, 0]
    kind, order = torch.sort(tables.kind[index[sel]], stable=True)  # every window class becomes one contiguous block
    sel = sel[order]
    first = sel * hm.shape[1] + tables.start[index[sel]]
    rows = first[:, None] + torch.arange(tables.ph, device=hm.device) * w
    flat = hm.reshape(-1)
    windows = flat.as_strided((flat.numel() - tables.pw + 1, tables.pw), (1, 1))[rows]
    windows = windows.reshape(sel.numel(), -1).to(tables.kernels.dtype)
    taps = torch.empty((sel.numel(), len(TAYLOR_TAPS)), dtype=tables.kernels.dtype, device=hm.device)
    for c, lo, hi in _runs(kind.cpu().numpy()):
        torch.mm(windows[lo:hi], tables.kernels[c], out=taps[lo:hi])
    return sel, taps


def taylor_offset(log_taps: torch.Tensor) -> torch.Tensor:
    """Newton step ``-H^-1 g`` from central differences of the log-blurred map (docs/conventions.md#dark-decoding).

    Zero where the Hessian determinant is 0, and where the step is not finite (only for maps holding inf).

    Shape:
        log_taps: (N, 13) in :data:`TAYLOR_TAPS` order -> (N, 2) as (x, y)
    """
    t = log_taps.unbind(dim=1)
    dx = 0.5 * (t[1] - t[2])
    dy = 0.5 * (t[3] - t[4])
    dxx = 0.25 * (t[5] - 2 * t[0] + t[6])
    dyy = 0.25 * (t[7] - 2 * t[0] + t[8])
    dxy = 0.25 * (t[9] - t[10] - t[11] + t[12])
    det = dxx * dyy - dxy * dxy
    safe = torch.where(det != 0, det, torch.ones_like(det))
    # inv([[a, b], [b, d]]) = [[d, -b], [-b, a]] / det
    offset = -torch.stack([dyy * dx - dxy * dy, dxx * dy - dxy * dx], dim=1) / safe[:, None]
    keep = (det != 0)[:, None] & torch.isfinite(offset)
    return torch.where(keep, offset, torch.zeros_like(offset))

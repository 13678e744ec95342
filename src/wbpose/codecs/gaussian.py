"""Gaussian heatmap targets, standard (MSRA) and unbiased (DARK), rendered for all keypoints at once.

Standard targets follow Xiao et al., "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018
(https://arxiv.org/abs/1804.06208); unbiased targets follow Zhang et al., "Distribution-Aware Coordinate
Representation for Human Pose Estimation" (DARK), CVPR 2020 (https://arxiv.org/abs/1910.06278).
The rules are MMPose 1.x ``generate_gaussian_heatmaps`` / ``generate_unbiased_gaussian_heatmaps``
(docs/conventions.md#msra-encoding and docs/conventions.md#dark-encoding).

Vectorisation: an isotropic Gaussian factorises, ``exp(-(dx^2 + dy^2) / 2s^2) = gx * gy``, and so does the
MSRA square window (a column range times a row range). Each keypoint's heatmap is therefore the outer product
of a (w,) column profile and a (h,) row profile; one broadcast multiply renders all K maps, with no loop.
Keypoints never share a channel in top-down targets, so MMPose's ``np.maximum`` over instances is not needed.

The profiles themselves (:func:`msra_profiles`, :func:`unbiased_profiles`: float32, the x profile already zeroed
for keypoints not rendered) are what a loader worker can send instead of the maps (``K * (w + h)`` floats instead
of ``K * w * h``, 27x fewer at 64x48); :func:`render_profiles` and a float32 outer product on any device give the
same maps bit for bit (a product of two float32 numbers is rounded once, whoever computes it).
"""

from __future__ import annotations

import numpy as np


def _masked_profiles(profile_x: np.ndarray, profile_y: np.ndarray, render: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 profiles whose outer products are the maps: ``gx`` zeroed for keypoints not rendered.

    Shape:
        profile_x: (K, w), profile_y: (K, h), render: (K,) bool -> gx (K, w), gy (K, h) float32
    """
    gx = np.where(render[:, None], profile_x, 0.0).astype(np.float32)
    return gx, profile_y.astype(np.float32)


def render_profiles(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Outer products ``gy[k, :, None] * gx[k, None, :]`` of float32 profiles (keypoints not rendered: zero maps).

    Shape:
        gx: (K, w), gy: (K, h) -> (K, h, w) float32
    """
    # einsum writes the outer products straight into the output (bit-identical to the broadcast multiply,
    # and faster, as it skips the broadcast machinery; figures: benchmarks/codecs.py).
    return np.einsum("ki,kj->kij", gy, gx)


def _out_of_bounds(low_xy: np.ndarray, high_xy: np.ndarray, heatmap_wh: tuple[int, int]) -> np.ndarray:
    """MMPose's bounds rule: the window ``[low, high)`` misses the map (``ul >= size or br < 0``).

    Shape:
        low_xy, high_xy: (K, 2) -> (K,) bool
    """
    size = np.asarray(heatmap_wh, dtype=np.float64)
    return (low_xy >= size).any(axis=1) | (high_xy < 0).any(axis=1)


def _weights(visible: np.ndarray, render: np.ndarray, out_of_bounds: np.ndarray) -> np.ndarray:
    """Target weight = visibility, zeroed for visible keypoints whose window misses the map.

    Shape:
        visible, render, out_of_bounds: (K,) -> (K,) float32
    """
    return np.where(render & out_of_bounds, 0.0, visible).astype(np.float32)


def msra_heatmaps(
    keypoints_hm: np.ndarray, visible: np.ndarray, heatmap_wh: tuple[int, int], sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Standard targets (:func:`msra_profiles` rendered): ``(heatmaps (K, h, w), weights (K,))`` float32."""
    gx, gy, weights = msra_profiles(keypoints_hm, visible, heatmap_wh, sigma)
    return render_profiles(gx, gy), weights


def unbiased_heatmaps(
    keypoints_hm: np.ndarray, visible: np.ndarray, heatmap_wh: tuple[int, int], sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """DARK targets (:func:`unbiased_profiles` rendered): ``(heatmaps (K, h, w), weights (K,))`` float32."""
    gx, gy, weights = unbiased_profiles(keypoints_hm, visible, heatmap_wh, sigma)
    return render_profiles(gx, gy), weights


def msra_profiles(
    keypoints_hm: np.ndarray, visible: np.ndarray, heatmap_wh: tuple[int, int], sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard targets: a Gaussian at the rounded keypoint, truncated to a 3-sigma square, peak 1.

    ``mu = trunc(kp + 0.5)`` (C-style truncation, as ``astype(int64)``), window ``[mu - 3s, mu + 3s + 1)``
    cropped to the map. For the integer ``3 * sigma`` of every recipe this is MMPose's patch exactly; for a
    fractional ``3 * sigma`` the Gaussian stays centred on ``mu`` (MMPose's patch centre can drift by a pixel).

    Args:
        keypoints_hm: keypoints in heatmap pixels (crop pixels / stride).
        visible: visibility; keypoints with ``visible < 0.5`` get an all-zero map (MMPose skips them).
        heatmap_wh: heatmap (width, height).
        sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
        ``(gx, gy, weights)``: the profiles whose outer products are the heatmaps (:func:`render_profiles`).

    Shape:
        keypoints_hm: (K, 2), visible: (K,) -> gx (K, w), gy (K, h), weights (K,), all float32
    """
    w, h = heatmap_wh
    radius = 3.0 * sigma
    render = visible >= 0.5
    # Invisible keypoints may carry garbage coordinates; park them at 0 so the integer casts stay defined.
    kp = np.where(render[:, None], keypoints_hm, 0.0)
    mu = np.trunc(kp + 0.5)
    low = np.trunc(mu - radius)
    high = np.trunc(mu + radius + 1)
    oob = _out_of_bounds(low, high, heatmap_wh)
    render = render & ~oob

    def profile(size: int, axis: int) -> np.ndarray:
        grid = np.arange(size, dtype=np.float64)[None, :]
        inside = (grid >= low[:, axis : axis + 1]) & (grid < high[:, axis : axis + 1])
        return np.where(inside, np.exp(-((grid - mu[:, axis : axis + 1]) ** 2) / (2.0 * sigma**2)), 0.0)

    gx, gy = _masked_profiles(profile(w, 0), profile(h, 1), render)
    return gx, gy, _weights(visible, visible >= 0.5, oob)


def unbiased_profiles(
    keypoints_hm: np.ndarray, visible: np.ndarray, heatmap_wh: tuple[int, int], sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DARK targets: a Gaussian at the exact sub-pixel keypoint over the whole map (no truncation), peak <= 1.

    The weight uses the same window rule as :func:`msra_heatmaps` with float bounds ``[mu - 3s, mu + 3s + 1)``.

    Args:
        keypoints_hm: keypoints in heatmap pixels (crop pixels / stride).
        visible: visibility; keypoints with ``visible < 0.5`` get an all-zero map.
        heatmap_wh: heatmap (width, height).
        sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
        ``(gx, gy, weights)``: the profiles whose outer products are the heatmaps (:func:`render_profiles`).

    Shape:
        keypoints_hm: (K, 2), visible: (K,) -> gx (K, w), gy (K, h), weights (K,), all float32
    """
    w, h = heatmap_wh
    radius = 3.0 * sigma
    render = visible >= 0.5
    mu = np.where(render[:, None], keypoints_hm, 0.0)
    oob = _out_of_bounds(mu - radius, mu + radius + 1, heatmap_wh)
    render = render & ~oob

    def profile(size: int, axis: int) -> np.ndarray:
        grid = np.arange(size, dtype=np.float64)[None, :]
        return np.exp(-((grid - mu[:, axis : axis + 1]) ** 2) / (2.0 * sigma**2))

    gx, gy = _masked_profiles(profile(w, 0), profile(h, 1), render)
    return gx, gy, _weights(visible, visible >= 0.5, oob)

"""Drawing helpers: 133-point whole-body skeletons coloured per part, heatmap overlays, image grids, training tiles.

Everything works on RGB ``uint8`` arrays of shape (H, W, 3) and uses OpenCV for rasterising; nothing here
imports matplotlib, so it runs in data workers and headless CI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from wbpose.data.transforms import TopdownSample, denormalize_image
from wbpose.keypoints import NUM_KEYPOINTS, PART_COLORS, PART_SLICES, SKELETON, keypoint_colors

_KPT_COLORS = keypoint_colors()


def _link_color(i: int, j: int) -> tuple[int, int, int]:
    # A link takes the colour of the part of its far end, so foot links are orange and hand links green/pink.
    for name, sl in PART_SLICES.items():
        if sl.start <= max(i, j) < sl.stop:
            return PART_COLORS[name]
    return PART_COLORS["body"]


_LINKS = np.asarray(SKELETON, dtype=np.int64)
_LINK_COLORS = [_link_color(int(i), int(j)) for i, j in _LINKS]


def _color_runs() -> list[tuple[int, int, tuple[int, int, int]]]:
    """``(lo, hi, colour)`` of each run of consecutive skeleton links with one colour (four runs: body, foot, hands).

    One ``cv2.polylines`` call draws a run: each link is a two-point polyline, which OpenCV rasterises exactly as
    ``cv2.line`` (the same thick-line routine with both end caps), in the same order, so the pixels are those of
    one ``cv2.line`` call per link.
    """
    runs: list[tuple[int, int, tuple[int, int, int]]] = []
    for i, color in enumerate(_LINK_COLORS):
        if runs and runs[-1][2] == color:
            runs[-1] = (runs[-1][0], i + 1, color)
        else:
            runs.append((i, i + 1, color))
    return runs


_LINK_RUNS = _color_runs()
_KPT_COLOR_TUPLES = [tuple(int(c) for c in color) for color in _KPT_COLORS]
#: Pixel coordinates are clipped to this before drawing (OpenCV takes 32-bit points; such points are off-image).
_COORD_LIMIT = 2**30


def draw_pose(
    image_rgb: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray | None = None,
    score_thr: float = 0.3,
    radius: int | None = None,
    thickness: int | None = None,
    boxes_xywh: np.ndarray | None = None,
    *,
    bgr: bool = False,
    in_place: bool = False,
) -> np.ndarray:
    """Draw whole-body skeletons on a copy of an image (or on the image itself with ``in_place``).

    Each person's links are drawn in skeleton order, then its keypoints, people in order, boxes first.

    Args:
        image_rgb: the image, RGB uint8 (BGR with ``bgr``).
        keypoints: keypoints in image pixels, one row of 133 per person.
        scores: per-keypoint scores or visibilities; points at or below ``score_thr`` are not drawn.
        score_thr: drawing threshold.
        radius: point radius in pixels (default: scaled with the image size).
        thickness: link thickness in pixels (default: scaled with the image size).
        boxes_xywh: optional boxes drawn in white.
        bgr: the image is BGR (as OpenCV reads and writes video): the part colours are given in that order, so the
            written file looks the same as an RGB drawing converted to BGR.
        in_place: draw into ``image_rgb`` itself (C-contiguous uint8) instead of a copy.

    Returns:
        The drawn image (RGB uint8, BGR with ``bgr``).

    Shape:
        image_rgb: (H, W, 3); keypoints: (N, 133, 2) or (133, 2); scores: (N, 133) or (133,)
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image_rgb.shape}")
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.ndim == 2:
        kpts = kpts[None]
    if kpts.ndim != 3 or kpts.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"expected keypoints of shape (N, {NUM_KEYPOINTS}, 2), got {np.shape(keypoints)}")
    sc = np.ones(kpts.shape[:2]) if scores is None else np.asarray(scores, dtype=np.float64).reshape(kpts.shape[:2])
    if in_place:
        if image_rgb.dtype != np.uint8 or not image_rgb.flags.c_contiguous or not image_rgb.flags.writeable:
            raise ValueError("in_place drawing needs a writeable, C-contiguous uint8 image")
        out = image_rgb
    else:
        out = np.ascontiguousarray(image_rgb.copy())
    size = max(out.shape[:2])
    r = radius if radius is not None else max(1, round(size / 320))
    t = thickness if thickness is not None else max(1, round(size / 400))
    if boxes_xywh is not None:
        for x, y, w, h in np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4):
            cv2.rectangle(out, (round(x), round(y)), (round(x + w), round(y + h)), (255, 255, 255), t)
    ok = (sc > score_thr) & np.isfinite(kpts).all(-1)
    pts = np.round(np.clip(np.where(ok[..., None], kpts, 0.0), -_COORD_LIMIT, _COORD_LIMIT)).astype(np.int32)
    kpt_colors = [c[::-1] for c in _KPT_COLOR_TUPLES] if bgr else _KPT_COLOR_TUPLES
    link_ok = ok[:, _LINKS[:, 0]] & ok[:, _LINKS[:, 1]]
    for n in range(kpts.shape[0]):  # people in order; one polylines call per colour run, one circle per point
        segments = pts[n][_LINKS]  # (links, 2, 2): each link a two-point polyline
        for lo, hi, color in _LINK_RUNS:
            valid = link_ok[n, lo:hi]
            if valid.any():
                cv2.polylines(out, segments[lo:hi][valid], False, color[::-1] if bgr else color, t, cv2.LINE_AA)
        index = np.flatnonzero(ok[n])
        for k, center in zip(index.tolist(), pts[n][index].tolist()):
            cv2.circle(out, center, r, kpt_colors[k], -1, cv2.LINE_AA)
    return out


def heatmap_overlay(
    image_rgb: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.5, per_pixel: bool = False
) -> np.ndarray:
    """Blend the per-pixel maximum over keypoint heatmaps onto an image as a JET colour map.

    Args:
        image_rgb: the image, RGB uint8.
        heatmaps: keypoint heatmaps (any size; resized to the image).
        alpha: weight of the colour map.
        per_pixel: weight the colour map by ``alpha * heatmap`` at each pixel, so the image stays untouched where
            the heatmaps are zero (default: the same ``alpha`` everywhere).

    Shape:
        image_rgb: (H, W, 3); heatmaps: (K, h, w) -> (H, W, 3)
    """
    hm = np.asarray(heatmaps, dtype=np.float32)
    if hm.ndim != 3:
        raise ValueError(f"expected heatmaps of shape (K, h, w), got {hm.shape}")
    m = np.clip(hm.max(axis=0), 0.0, 1.0)
    m = cv2.resize(m, (image_rgb.shape[1], image_rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    color = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    if per_pixel:
        a = (alpha * m)[..., None]
        return (image_rgb * (1 - a) + color * a).astype(np.uint8)
    return cv2.addWeighted(image_rgb, 1.0 - alpha, np.ascontiguousarray(color), alpha, 0.0)


def make_grid(images: Sequence[np.ndarray], ncols: int | None = 4, pad: int = 2, background: int = 0) -> np.ndarray:
    """Tile RGB images (resized to the first one's size) into a grid with padding.

    Args:
        images: the tiles, RGB uint8.
        ncols: columns (at most the number of images); ``None``: a square-ish grid, ``ceil(sqrt(N))`` columns.
        pad: padding in pixels between and around the tiles.
        background: grey level of the padding.

    Shape:
        images: N x (H, W, 3) -> (rows * (H + pad) + pad, ncols * (W + pad) + pad, 3)
    """
    if len(images) == 0:
        raise ValueError("make_grid needs at least one image")
    h, w = images[0].shape[:2]
    if ncols is None:
        ncols = math.ceil(math.sqrt(len(images)))
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), background, dtype=np.uint8)
    for idx, img in enumerate(images):
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        r, c = divmod(idx, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid


def draw_caption(image_rgb: np.ndarray, text: str, origin: tuple[int, int] = (3, 12), font_scale: float = 0.38) -> None:
    """Write white text with a black outline onto an RGB image, in place (readable on any background)."""
    for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(image_rgb, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, thickness, cv2.LINE_AA)


def sample_caption(sample: TopdownSample) -> str:
    """``img <image id> id <instance id>``, then `` F`` when flipped and `` r<degrees>`` when rotated."""
    caption = f"img {sample.image_id} id {sample.instance_id}{' F' if sample.flipped else ''}"
    return caption + (f" r{sample.rotation_deg:+.0f}" if sample.rotation_deg else "")


def draw_training_sample(sample: TopdownSample, scale: int = 1, heatmap_alpha: float = 0.65) -> np.ndarray:
    """One training sample as the model sees it, as an RGB tile: crop, target heatmaps, keypoints and caption.

    The crop (``sample.image_chw``, denormalised) gets the max-over-keypoints target heatmap blended in (weighted
    per pixel, so the crop shows through away from the keypoints), is upscaled by ``scale`` (nearest neighbour),
    and the keypoints with a non-zero target weight are drawn with :func:`draw_pose` (part colours, skeleton);
    the caption is :func:`sample_caption`. Heatmaps, keypoints and weights are optional (drawn when present).

    Args:
        sample: a transformed sample (after ``Normalize``; ``GenerateTarget`` for the heatmaps and weights).
        scale: integer upscaling factor of the tile.
        heatmap_alpha: peak weight of the heatmap colour map.

    Returns:
        The tile, RGB uint8 of shape (scale * h, scale * w, 3).
    """
    if sample.image_chw is None:
        raise ValueError("draw_training_sample needs a normalised sample (image_chw is None)")
    rgb = denormalize_image(sample.image_chw)
    if sample.heatmaps is not None:
        rgb = heatmap_overlay(rgb, sample.heatmaps, alpha=heatmap_alpha, per_pixel=True)
    tile = np.ascontiguousarray(cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
    if sample.keypoints_xy is not None and sample.weights is not None:
        tile = draw_pose(tile, sample.keypoints_xy * scale, sample.weights, score_thr=0.0, radius=2, thickness=1)
    draw_caption(tile, sample_caption(sample))
    return tile


def draw_training_samples(samples: Sequence[TopdownSample], scale: int = 1) -> np.ndarray:
    """:func:`draw_training_sample` of each sample, tiled square-ish on a dark grey background."""
    return make_grid([draw_training_sample(s, scale) for s in samples], ncols=None, pad=4, background=40)


def save_png(path: str | Path, image_rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG (creating parent folders) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image_rgb[..., ::-1])):
        raise OSError(f"could not write PNG to {path}")
    return path


def draw_crop_predictions(
    images: np.ndarray | torch.Tensor,
    keypoints_crop: np.ndarray | torch.Tensor,
    scores: np.ndarray | torch.Tensor,
    score_thr: float = 0.3,
    ncols: int = 4,
) -> np.ndarray:
    """Draw each normalised crop with its predicted skeleton and tile the crops (training-time image logging).

    Args:
        images: normalised crops as the model sees them.
        keypoints_crop: predictions in crop pixels.
        scores: keypoint scores.
        score_thr: keypoints at or below this are not drawn.
        ncols: grid columns.

    Returns:
        An RGB uint8 grid.

    Shape:
        images: (N, 3, H, W); keypoints_crop: (N, K, 2); scores: (N, K)
    """
    kpts, kscores = _numpy(keypoints_crop), _numpy(scores)
    drawn = [
        draw_pose(denormalize_image(img), kpts[i][None], kscores[i][None], score_thr=score_thr)
        for i, img in enumerate(images)
    ]
    return make_grid(drawn, ncols=ncols)


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

"""Plain references: slow, obviously correct implementations that the vectorised code is checked against.

Each one follows its section of docs/conventions.md literally, one keypoint, one instance or one pair at a time:

- codecs: :func:`ref_encode` (#msra-encoding, #dark-encoding), :func:`ref_decode` (#msra-decoding,
  #dark-decoding), :func:`ref_flip_heatmaps` (#flip-test);
- geometry: :func:`ref_warp_matrix` and :func:`mmpose_crop` (#box-to-centre-and-scale);
- annotations: :func:`ref_kept_instances` (#annotations);
- metric: :func:`ref_rescore` (#rescoring), :func:`ref_oks` and :func:`ref_oks_nms` (#oks-nms).

The benchmarks time wbpose against MMPose-structured baselines, kept here too: :func:`mmpose_style_encode`,
:func:`mmpose_style_decode` (MMPose 1.x's per-keypoint / per-instance structure, float32 as MMPose runs it) and
:func:`mmpose_oks` (one numpy OKS per pair, for :func:`ref_oks_nms`). The tests check them against the plain
references above, so a benchmark's "identical results" check rests on them too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from wbpose.codecs import DarkHeatmap
from wbpose.keypoints import PART_FIELDS, SIGMAS, sigmas_array


# ----------------------------------------------------------------------------------------------------- codecs
def ref_encode(
    kp_xy: np.ndarray, visible: np.ndarray, heatmap_wh: tuple[int, int], stride: float, sigma: float, unbiased: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Encoding literally: one keypoint at a time, a 2-D exp over the window (MSRA) or the whole map (DARK).

    Returns:
        heatmaps (K, h, w) and weights (K,), float64.
    """
    w, h = heatmap_wh
    k = len(kp_xy)
    heatmaps = np.zeros((k, h, w))
    weights = np.asarray(visible, dtype=np.float64).copy()
    radius = 3 * sigma
    for i in range(k):
        if visible[i] < 0.5:
            continue
        mu = kp_xy[i] / stride if unbiased else np.trunc(kp_xy[i] / stride + 0.5)
        ul, br = mu - radius, mu + radius + 1
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            weights[i] = 0
            continue
        for y in range(h):
            for x in range(w):
                inside = unbiased or (ul[0] <= x < br[0] and ul[1] <= y < br[1])
                if inside:
                    heatmaps[i, y, x] = np.exp(-((x - mu[0]) ** 2 + (y - mu[1]) ** 2) / (2 * sigma**2))
    return heatmaps, weights


def ref_decode_msra(hm: np.ndarray, stride: float, border_rule: str = "1.x") -> tuple[np.ndarray, np.ndarray]:
    """MSRA decoding: argmax, -1 if max <= 0, quarter step with the 1.x (separate) or 0.x (joint) border rule.

    Returns:
        keypoints (K, 2) in crop pixels and scores (K,).
    """
    n, h, w = hm.shape
    out, scores = np.zeros((n, 2)), np.zeros(n)
    for i in range(n):
        idx = int(np.argmax(hm[i]))
        y, x = divmod(idx, w)
        scores[i] = hm[i, y, x]
        if scores[i] <= 0:
            out[i] = -1 * stride
            continue
        px, py = float(x), float(y)
        if border_rule == "1.x":
            if 1 < x < w - 1 and 0 < y < h:
                px += np.sign(hm[i, y, x + 1] - hm[i, y, x - 1]) * 0.25
            if 1 < y < h - 1 and 0 < x < w:
                py += np.sign(hm[i, y + 1, x] - hm[i, y - 1, x]) * 0.25
        elif 1 < x < w - 1 and 1 < y < h - 1:
            px += np.sign(hm[i, y, x + 1] - hm[i, y, x - 1]) * 0.25
            py += np.sign(hm[i, y + 1, x] - hm[i, y - 1, x]) * 0.25
        out[i] = np.array([px, py]) * stride
    return out, scores


def ref_decode_dark(hm: np.ndarray, stride: float, kernel: int) -> tuple[np.ndarray, np.ndarray]:
    """DARK decoding: argmax/score unblurred; zero-pad + cv2.GaussianBlur + crop, rescale, log, Taylor with inv().

    Returns:
        keypoints (K, 2) in crop pixels and scores (K,).
    """
    n, h, w = hm.shape
    out, scores = np.zeros((n, 2)), np.zeros(n)
    border = (kernel - 1) // 2
    for i in range(n):
        idx = int(np.argmax(hm[i]))
        y, x = divmod(idx, w)
        scores[i] = hm[i, y, x]
        if scores[i] <= 0:
            out[i] = -1 * stride
            continue
        coord = np.array([x, y], dtype=np.float64)
        if 1 < x < w - 2 and 1 < y < h - 2:
            padded = np.zeros((h + 2 * border, w + 2 * border))
            padded[border : border + h, border : border + w] = hm[i]
            blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border : border + h, border : border + w]
            blurred = blurred * (hm[i].max() / blurred.max())
            g = np.log(np.maximum(blurred, 1e-10))
            dx = 0.5 * (g[y, x + 1] - g[y, x - 1])
            dy = 0.5 * (g[y + 1, x] - g[y - 1, x])
            dxx = 0.25 * (g[y, x + 2] - 2 * g[y, x] + g[y, x - 2])
            dyy = 0.25 * (g[y + 2, x] - 2 * g[y, x] + g[y - 2, x])
            dxy = 0.25 * (g[y + 1, x + 1] - g[y - 1, x + 1] - g[y + 1, x - 1] + g[y - 1, x - 1])
            if dxx * dyy - dxy**2 != 0:
                coord += -np.linalg.inv(np.array([[dxx, dxy], [dxy, dyy]])) @ np.array([dx, dy])
        out[i] = coord * stride
    return out, scores


def ref_decode(codec: Any, hm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ref_decode_dark` or :func:`ref_decode_msra` with ``codec``'s settings; ``hm`` is (K, h, w)."""
    if isinstance(codec, DarkHeatmap):
        return ref_decode_dark(hm, codec.stride, codec.blur_kernel)
    return ref_decode_msra(hm, codec.stride, codec.border_rule)


def ref_flip_heatmaps(hm: np.ndarray, flip_indices: Sequence[int], shift: bool = True) -> np.ndarray:
    """Flip test mapping of (B, K, h, w) maps: channel swap, width mirror, then columns moved one to the right
    (column 0 keeps its value)."""
    out = hm[:, list(flip_indices), :, ::-1].copy()
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out


def mmpose_style_encode(
    kp_xy: np.ndarray, visible: np.ndarray, codec: Any, unbiased: bool
) -> tuple[np.ndarray, np.ndarray]:
    """MMPose 1.x's ``generate_*gaussian_heatmaps``: one keypoint at a time, a window patch (standard) or a
    whole-map exp (unbiased), float32."""
    w, h = codec.heatmap_wh
    sigma, radius = codec.sigma, int(3 * codec.sigma)
    heatmaps = np.zeros((len(kp_xy), h, w), dtype=np.float32)
    weights = visible.astype(np.float32).copy()
    kp = (kp_xy / codec.stride).astype(np.float32)
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)[:, None]
    size = 2 * radius + 1
    gx = np.arange(size, dtype=np.float32)
    patch = np.exp(-((gx - radius) ** 2 + (gx[:, None] - radius) ** 2) / (2 * sigma**2))
    for k in range(len(kp)):
        if visible[k] < 0.5:
            continue
        mu = kp[k] if unbiased else (kp[k] + 0.5).astype(np.int64)
        left, top = mu - radius
        right, bottom = mu + radius + 1
        if left >= w or top >= h or right < 0 or bottom < 0:
            weights[k] = 0
            continue
        if unbiased:
            g = np.exp(-((xs - mu[0]) ** 2 + (ys - mu[1]) ** 2) / (2 * sigma**2))
            np.maximum(g, heatmaps[k], out=heatmaps[k])
        else:
            x1, y1, x2, y2 = max(0, left), max(0, top), min(w, right), min(h, bottom)
            heatmaps[k, y1:y2, x1:x2] = patch[y1 - top : y2 - top, x1 - left : x2 - left]
    return heatmaps, weights


def mmpose_style_decode(heatmaps: np.ndarray, codec: Any) -> np.ndarray:
    """MMPose 1.x's decode of one instance (K, h, w): vectorised argmax, then a per-keypoint loop (quarter step with
    the 1.x border rule, or a blur of every whole map + log + Taylor step). Returns keypoints (K, 2) in crop pixels.
    """
    k_num, h, w = heatmaps.shape
    flat = heatmaps.reshape(k_num, -1)
    idx = np.argmax(flat, axis=1)
    vals = np.take_along_axis(flat, idx[:, None], 1)[:, 0]
    locs = np.stack([idx % w, idx // w], axis=1).astype(heatmaps.dtype)
    locs[vals <= 0] = -1
    if isinstance(codec, DarkHeatmap):
        kernel = codec.blur_kernel
        border = (kernel - 1) // 2
        hm = heatmaps.copy()
        for k in range(k_num):
            origin_max = hm[k].max()
            padded = np.zeros((h + 2 * border, w + 2 * border), dtype=hm.dtype)
            padded[border:-border, border:-border] = hm[k]
            hm[k] = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
            hm[k] *= origin_max / hm[k].max()
        np.log(np.maximum(hm, 1e-10), hm)
        for k in range(k_num):
            x, y = locs[k].astype(int)
            if 1 < x < w - 2 and 1 < y < h - 2:
                g = hm[k]
                dx, dy = 0.5 * (g[y, x + 1] - g[y, x - 1]), 0.5 * (g[y + 1, x] - g[y - 1, x])
                dxx = 0.25 * (g[y, x + 2] - 2 * g[y, x] + g[y, x - 2])
                dyy = 0.25 * (g[y + 2, x] - 2 * g[y, x] + g[y - 2, x])
                dxy = 0.25 * (g[y + 1, x + 1] - g[y - 1, x + 1] - g[y + 1, x - 1] + g[y - 1, x - 1])
                if dxx * dyy - dxy**2 != 0:
                    locs[k] += -np.linalg.inv(np.array([[dxx, dxy], [dxy, dyy]])) @ np.array([dx, dy])
    else:
        for k in range(k_num):
            x, y = locs[k].astype(int)
            dx = heatmaps[k, y, x + 1] - heatmaps[k, y, x - 1] if 1 < x < w - 1 and 0 < y < h else 0.0
            dy = heatmaps[k, y + 1, x] - heatmaps[k, y - 1, x] if 1 < y < h - 1 and 0 < x < w else 0.0
            locs[k] += np.sign([dx, dy]) * 0.25
    return locs * codec.stride


# --------------------------------------------------------------------------------------------------- geometry
def ref_warp_matrix(center: np.ndarray, scale_w: float, rot_deg: float, out_wh: tuple[int, int]) -> np.ndarray:
    """MMPose's three-point ``get_warp_matrix``: the centre, a rotated 'up' vector, and its perpendicular."""
    r = np.deg2rad(rot_deg)
    v = np.array([0.0, -0.5 * scale_w])
    src_dir = np.array([v[0] * np.cos(r) - v[1] * np.sin(r), v[0] * np.sin(r) + v[1] * np.cos(r)])
    dst_c = np.array([out_wh[0] * 0.5, out_wh[1] * 0.5])
    dst_dir = np.array([0.0, -0.5 * out_wh[0]])

    def third(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.stack([center, center + src_dir, third(center, center + src_dir)]).astype(np.float32)
    dst = np.stack([dst_c, dst_c + dst_dir, third(dst_c, dst_c + dst_dir)]).astype(np.float32)
    return cv2.getAffineTransform(src, dst)


def mmpose_crop(image: np.ndarray, center: np.ndarray, scale: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """An MMPose validation crop: :func:`ref_warp_matrix` (rotation 0) + ``cv2.warpAffine`` (bilinear)."""
    return cv2.warpAffine(image, ref_warp_matrix(center, scale[0], 0.0, out_wh), out_wh, flags=cv2.INTER_LINEAR)


# ------------------------------------------------------------------------------------------------ annotations
def ref_kept_instances(raw: dict[str, Any]) -> tuple[list[int], dict[str, int]]:
    """The MMPose 1.x instance filter written out plainly, per annotation: (kept ids, skip counts by reason)."""
    size = {im["id"]: (im["width"], im["height"]) for im in raw["images"]}
    kept, skipped = [], {"crowd": 0, "no_keypoints": 0, "invalid_box": 0, "no_labels": 0}
    for a in raw["annotations"]:
        w_img, h_img = size[a["image_id"]]
        x, y, w, h = a["bbox"]
        x1, y1 = min(max(x, 0), w_img - 1), min(max(y, 0), h_img - 1)
        x2, y2 = min(max(x + w, 0), w_img - 1), min(max(y + h, 0), h_img - 1)
        xy = [v for f in PART_FIELDS.values() for i, v in enumerate(a[f]) if i % 3 != 2]
        if a["iscrowd"]:
            skipped["crowd"] += 1
        elif a["num_keypoints"] == 0:
            skipped["no_keypoints"] += 1
        elif x2 - x1 <= 0 or y2 - y1 <= 0:
            skipped["invalid_box"] += 1
        elif max(xy) <= 0:
            skipped["no_labels"] += 1
        else:
            kept.append(a["id"])
    return kept, skipped


# ----------------------------------------------------------------------------------- rescoring, OKS, OKS-NMS
def ref_rescore(keypoint_scores: np.ndarray, bbox_scores: np.ndarray, thr: float = 0.2) -> list[float]:
    """``bbox_score * mean(keypoint scores > thr)`` (0 when none is), a Python loop per instance and keypoint as in
    MMPose 1.x."""
    scores = []
    for kpt_scores, bbox_score in zip(keypoint_scores.tolist(), bbox_scores.tolist()):
        total, valid = 0.0, 0
        for s in kpt_scores:
            if s > thr:
                total += s
                valid += 1
        scores.append(bbox_score * (total / valid if valid else 0.0))
    return scores


def ref_oks(a: np.ndarray, b: np.ndarray, area_a: float, area_b: float) -> float:
    """e = d^2 / vars / ((a_i + a_j) / 2 + eps) / 2 with vars = (2 sigma)^2, averaged over all keypoints."""
    total = 0.0
    for k in range(len(a)):
        d2 = (a[k][0] - b[k][0]) ** 2 + (a[k][1] - b[k][1]) ** 2
        e = d2 / (2 * SIGMAS[k]) ** 2 / ((area_a + area_b) / 2 + np.spacing(1)) / 2
        total += math.exp(-e)
    return total / len(a)


_VARIANCES = (sigmas_array() * 2) ** 2


def mmpose_oks(a: np.ndarray, b: np.ndarray, area_a: float, area_b: float) -> float:
    """MMPose's ``oks_iou`` for one pair: the same formula as :func:`ref_oks` in numpy."""
    d2 = ((a - b) ** 2).sum(-1)
    e = d2 / _VARIANCES / ((area_a + area_b) / 2 + np.spacing(1)) / 2
    return np.sum(np.exp(-e)) / len(e)


def ref_oks_nms(
    keypoints: np.ndarray,
    scores: Sequence[float],
    areas: Sequence[float],
    image_ids: Sequence[int] | None = None,
    thr: float = 0.9,
    oks: Callable[[np.ndarray, np.ndarray, float, float], float] = ref_oks,
) -> list[int]:
    """Greedy OKS-NMS per image (images by ascending id; all one image if ``image_ids`` is None): visit in
    descending score (ties: input order), keep unless the OKS with a kept one is > ``thr``.

    Returns:
        The kept indices, image by image, each image's in the order kept.
    """
    ids = [0] * len(scores) if image_ids is None else np.asarray(image_ids).tolist()
    by_image: dict[int, list[int]] = defaultdict(list)
    for i, image_id in enumerate(ids):
        by_image[image_id].append(i)
    kept = []
    for image_id in sorted(by_image):
        order = sorted(by_image[image_id], key=lambda i: -scores[i])
        while order:
            i, order = order[0], order[1:]
            kept.append(i)
            order = [j for j in order if oks(keypoints[i], keypoints[j], areas[i], areas[j]) <= thr]
    return kept


def ref_select_people(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray,
    bbox_scores: np.ndarray,
    areas: np.ndarray,
    instance_ids: np.ndarray | None = None,
    keypoint_score_thr: float = 0.2,
    nms_thr: float = 0.9,
) -> tuple[list[int], list[float]]:
    """The evaluation's selection (``wbpose.metrics.oks.select_people``: dedupe by instance id, MMPose rescoring,
    greedy OKS-NMS per image) written as plain loops (one instance, one pair at a time)."""
    n = len(image_ids)
    # 1. first occurrence of each instance id, in ascending id order (the canonical order)
    first: dict[int, int] = {}
    for i in range(n):
        key = i if instance_ids is None else int(instance_ids[i])
        if key not in first:
            first[key] = i
    rows = [first[key] for key in sorted(first)]
    # 2. instance score = box score * mean of the keypoint scores above the threshold (0 if none)
    score: dict[int, float] = {}
    for i in rows:
        kpt = keypoint_scores[i]
        above = kpt > keypoint_score_thr
        score[i] = float(bbox_scores[i] * (np.where(above, kpt, 0.0).sum() / above.sum())) if above.any() else 0.0
    # 3. greedy OKS-NMS per image, descending score, ties in canonical order
    variances = (sigmas_array() * 2) ** 2
    keep: list[int] = []
    for image_id in sorted({int(image_ids[i]) for i in rows}):
        candidates = [i for i in rows if int(image_ids[i]) == image_id]
        candidates.sort(key=lambda i: -score[i])  # stable: ties keep the canonical order
        kept_here: list[int] = []
        for i in candidates:
            suppressed = False
            for j in kept_here:
                d2 = ((keypoints[i] - keypoints[j]) ** 2).sum(-1)
                e = d2 / variances / ((areas[i] + areas[j]) / 2 + np.spacing(1)) / 2
                if np.mean(np.exp(-e)) > nms_thr:
                    suppressed = True
                    break
            if not suppressed:
                kept_here.append(i)
        keep.extend(kept_here)
    return keep, [score[i] for i in keep]

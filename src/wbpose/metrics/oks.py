"""Instance rescoring, object keypoint similarity (OKS) and greedy OKS-NMS, vectorised in numpy.

:func:`select_people` chains them as the evaluation does (dedupe by instance id, rescore, OKS-NMS per image); the
metric and the demo both use it, so what is drawn is what is scored.

Semantics follow MMPose 1.x (``mmpose/evaluation/functional/nms.py::oks_nms/oks_iou`` and
``CocoWholeBodyMetric.compute_metrics``), see docs/conventions.md#rescoring and docs/conventions.md#oks-nms:

- instance score = ``bbox_score * mean(kpt_scores[kpt_scores > thr])`` over all keypoints, 0 if none is above;
- OKS between two predictions i, j uses all K keypoints (no visibility threshold), ``vars = (2 sigma)^2`` and the
  mean of the two (padded box) areas: ``e = d^2 / vars / ((a_i + a_j) / 2 + eps) / 2``, ``oks = mean(exp(-e))``;
- NMS is greedy per image in descending score order and keeps a candidate unless its OKS with an already kept
  one is greater than ``thr``.

Where MMPose sorts with ``argsort()[::-1]`` (ties in an order numpy does not define), ties here are broken by
input order (a stable sort), which makes the result independent of how predictions were split across ranks
once the caller has put them in a canonical order.

Instead of MMPose's loop over candidates with a Python loop over pairs, every pair of predictions of an image is
screened at once with rigorous bounds from the boxes of their points (two different people cannot reach the
threshold), the exact OKS (the reference's floats) decides the few pairs left, and the greedy pass runs in rounds
vectorised over those suppressing pairs.
"""

from __future__ import annotations

import numpy as np

from wbpose.keypoints import NUM_KEYPOINTS, part_starts, sigmas_array

#: Pairs screened at once by OKS-NMS (a few float64 temporaries of this length).
_PAIR_CHUNK = 1 << 18
#: Elements (rows x points) of the row blocks of the per-prediction passes: temporaries of a few MB, which the
#: allocator reuses (arrays above 32 MB are fresh pages every time, and the page faults cost more than the work).
_ROW_CHUNK_ELEMENTS = 1 << 19


def rescore(keypoint_scores: np.ndarray, bbox_scores: np.ndarray, thr: float = 0.2) -> np.ndarray:
    """Instance scores: box score times the mean of the keypoint scores above ``thr`` (0 if none is).

    Args:
        keypoint_scores: Per-keypoint confidences (heatmap maxima).
        bbox_scores: Detector box scores.
        thr: Keypoint score threshold (strictly greater than counts).

    Returns:
        The instance scores, float64.

    Shape:
        keypoint_scores: (N, K); bbox_scores: (N,); output: (N,).
    """
    kpt_all = np.asarray(keypoint_scores)
    total = np.zeros(len(kpt_all))
    count = np.zeros(len(kpt_all), np.int64)
    step = max(1, _ROW_CHUNK_ELEMENTS // max(1, kpt_all.shape[-1]))
    for s in range(0, len(kpt_all), step):  # row blocks: small temporaries, reused instead of fresh pages
        kpt = np.asarray(kpt_all[s : s + step], dtype=np.float64)
        above = kpt > thr
        count[s : s + step] = above.sum(axis=1)
        total[s : s + step] = np.where(above, kpt, 0.0).sum(axis=1)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.asarray(bbox_scores, dtype=np.float64) * mean


def _pair_oks(
    xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray, mean_area: np.ndarray, variances: np.ndarray
) -> np.ndarray:
    """OKS of matched pairs, in place on temporaries, with the reference formula's operation order.

    Shape:
        xa, ya, xb, yb: (..., K) (broadcastable); mean_area: (...); variances: (K,); output: (...).
    """
    e = np.subtract(xa, xb)
    e *= e
    dy = np.subtract(ya, yb)
    dy *= dy
    e += dy
    e /= variances
    e /= (mean_area + np.spacing(1))[..., None]
    e /= 2
    np.negative(e, out=e)
    np.exp(e, out=e)
    return e.mean(axis=-1)


def oks_matrix(
    keypoints_a: np.ndarray,
    keypoints_b: np.ndarray,
    areas_a: np.ndarray,
    areas_b: np.ndarray,
    sigmas: np.ndarray | None = None,
) -> np.ndarray:
    """OKS between every prediction of ``a`` and every prediction of ``b`` (batched over leading dims).

    Args:
        keypoints_a: Keypoints of the first set.
        keypoints_b: Keypoints of the second set.
        areas_a: Areas of the first set (padded box area for NMS).
        areas_b: Areas of the second set.
        sigmas: Per-keypoint sigmas; defaults to the 133 COCO-WholeBody sigmas.

    Returns:
        OKS values, float64: ``mean_k exp(-d_k^2 / (2 sigma_k)^2 / ((a_i + a_j) / 2 + eps) / 2)``.

    Shape:
        keypoints_a: (..., N, K, 2); keypoints_b: (..., M, K, 2); areas_a: (..., N); areas_b: (..., M);
        sigmas: (K,); output: (..., N, M).
    """
    sigmas = sigmas_array() if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    a = np.asarray(keypoints_a, dtype=np.float64)
    b = np.asarray(keypoints_b, dtype=np.float64)
    mean_area = (np.asarray(areas_a, np.float64)[..., :, None] + np.asarray(areas_b, np.float64)[..., None, :]) / 2
    return _pair_oks(
        a[..., :, None, :, 0],
        a[..., :, None, :, 1],
        b[..., None, :, :, 0],
        b[..., None, :, :, 1],
        mean_area,
        (sigmas * 2) ** 2,
    )


def _segments(num_keypoints: int) -> np.ndarray:
    """Start of each point segment of the part-box bound: the parts for the 133 whole-body points (the same
    person's face or hands are far from another person's), else at most eight equal runs."""
    if num_keypoints == NUM_KEYPOINTS:
        return part_starts()
    return np.unique(np.linspace(0, num_keypoints, min(8, num_keypoints), endpoint=False).astype(np.int64))


def _pair_chunks(group_end: np.ndarray, budget: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every pair ``i < j`` of sorted positions in the same group, in chunks of about ``budget`` pairs.

    Shape:
        group_end: (N,) the end (exclusive) of each position's group -> [(pi, pj) (P,)] with ``pi < pj``.
    """
    later = group_end - np.arange(len(group_end)) - 1  # pairs a position starts
    ends = np.cumsum(later)
    chunks, start = [], 0
    while start < len(later):
        stop = max(int(np.searchsorted(ends, ends[start] - later[start] + budget, "right")), start + 1)
        counts = later[start:stop]
        total = int(counts.sum())
        if total:
            pi = np.repeat(np.arange(start, stop), counts)
            first = np.repeat(np.cumsum(counts) - counts, counts)
            chunks.append((pi, pi + 1 + (np.arange(total) - first)))
        start = stop
    return chunks


def _gap_squared(boxes: tuple[np.ndarray, ...], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distance between the boxes of rows ``a`` and ``b`` (0 where they overlap): a lower bound of the
    squared distance between any point of one and any point of the other.

    Shape:
        boxes: x_lo, y_lo, x_hi, y_hi (N,); a, b: (P,) -> (P,).
    """
    x_lo, y_lo, x_hi, y_hi = boxes
    gx = np.maximum(0.0, np.maximum(x_lo[b] - x_hi[a], x_lo[a] - x_hi[b]))
    gy = np.maximum(0.0, np.maximum(y_lo[b] - y_hi[a], y_lo[a] - y_hi[b]))
    gx *= gx
    gy *= gy
    gx += gy
    return gx


def _suppressing_pairs(
    keypoints: np.ndarray, rows: np.ndarray, areas: np.ndarray, pi: np.ndarray, pj: np.ndarray, variances: np.ndarray,
    thr: float, seg_starts: np.ndarray, seg_boxes: tuple[np.ndarray, ...], boxes: tuple[np.ndarray, ...],
) -> np.ndarray:  # fmt: skip
    """The pairs of ``(pi, pj)`` whose OKS is greater than ``thr`` (a mask).

    Two rigorous upper bounds skip most pairs before the exact OKS: every point distance is at least the gap
    between the boxes of the two predictions' points of its segment (the parts), so ``OKS <= sum_s n_s
    exp(-gap_s^2 / max_s(var) / (area + eps) / 2) / K``; first with one segment (the whole box), then with the
    parts. A margin far above rounding keeps every pair whose exact OKS could exceed ``thr``; the exact OKS of the
    rest is the reference formula's float (:func:`_pair_oks`).

    Shape:
        keypoints: (N0, K, 2) any float dtype; rows: (N,) its row of each position; areas: (N,); pi, pj: (P,)
        positions; seg_boxes: x_lo, y_lo, x_hi, y_hi (N, S) of each segment; boxes: the same (N,) over all points
        -> (P,) bool.
    """
    mean_area = (areas[pi] + areas[pj]) / 2
    if 0.0 < thr < 1.0:
        limit = -np.log(thr) + 1e-6
        gap = _gap_squared(boxes, pi, pj)
        rest = np.flatnonzero(gap / variances.max() / (mean_area + np.spacing(1)) / 2 <= limit)
        if len(rest):
            a, b = pi[rest], pj[rest]
            scale = (mean_area[rest] + np.spacing(1)) * 2
            bounds = np.diff(np.append(seg_starts, len(variances)))
            seg_var = np.maximum.reduceat(variances, seg_starts)
            upper = np.zeros(len(rest))
            for s in range(len(seg_starts)):
                g = _gap_squared(tuple(box[:, s] for box in seg_boxes), a, b)
                upper += bounds[s] * np.exp(-g / seg_var[s] / scale)
            rest = rest[upper / len(variances) >= thr - 1e-9]
    else:
        rest = np.arange(len(pi))
    out = np.zeros(len(pi), bool)
    step = max(1, _ROW_CHUNK_ELEMENTS // (2 * len(variances)))
    for s in range(0, len(rest), step):
        idx = rest[s : s + step]
        a = np.asarray(keypoints[rows[pi[idx]]], dtype=np.float64)
        b = np.asarray(keypoints[rows[pj[idx]]], dtype=np.float64)
        out[idx] = _pair_oks(a[..., 0], a[..., 1], b[..., 0], b[..., 1], mean_area[idx], variances) > thr
    return out


def _greedy(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Greedy NMS over suppression edges ``src < dst`` (sorted positions of one image; OKS > thr): position ``j`` is
    kept unless an edge comes into it from a kept position.

    Decided in rounds, each vectorised over the edges: targets of kept positions are suppressed, and a position
    whose every incoming edge comes from a suppressed one is kept. The smallest undecided position is decided in
    every round, so this ends, in practice after a few rounds (the longest chain of overlapping duplicates).

    Shape:
        src, dst: (E,) -> kept mask (n,).
    """
    kept = np.ones(n, bool)
    if len(src) == 0:
        return kept
    nodes, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    a, b = inverse[: len(src)], inverse[len(src) :]
    state = np.zeros(len(nodes), np.int8)  # 0 undecided, 1 kept, 2 suppressed
    blocked = np.zeros(len(nodes), bool)
    blocked[b] = True
    state[~blocked] = 1
    while True:
        state[b[(state[a] == 1) & (state[b] == 0)]] = 2
        undecided = state == 0
        if not undecided.any():
            break
        blocked[:] = False
        blocked[b[state[a] != 2]] = True
        state[undecided & ~blocked] = 1
    kept[nodes] = state == 1
    return kept


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    image_ids: np.ndarray,
    thr: float = 0.9,
    sigmas: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy OKS-NMS within each image.

    Every pair of predictions of an image is screened with bounds from their point boxes (most pairs are two
    different people and need no OKS; see :func:`_suppressing_pairs`), the exact OKS decides the rest, and the
    greedy pass runs on the few suppressing pairs left (:func:`_greedy`); the result is that of the greedy
    candidate-by-candidate reference.

    Args:
        keypoints: Predicted keypoints in image pixels.
        scores: Instance scores (after :func:`rescore`).
        areas: Areas used by OKS (MMPose: the padded, aspect-fixed box area ``prod(scale_wh)``).
        image_ids: Image of each prediction; NMS never compares two images.
        thr: A candidate is dropped if its OKS with a kept one is greater than ``thr``.
        sigmas: Per-keypoint sigmas; defaults to the 133 COCO-WholeBody sigmas.

    Returns:
        Indices of the kept predictions, grouped by ascending image id and, within an image, in descending score
        order (ties in input order).

    Shape:
        keypoints: (N, K, 2); scores, areas, image_ids: (N,); output: (N_kept,).
    """
    keypoints = np.asarray(keypoints)
    n, k = keypoints.shape[:2]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sigmas = sigmas_array() if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    variances = (sigmas * 2) ** 2
    image_ids = np.asarray(image_ids)
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), image_ids))  # stable for ties
    sorted_ids = image_ids[order]
    new_group = np.ones(n, bool)
    new_group[1:] = sorted_ids[1:] != sorted_ids[:-1]
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.append(starts, n))
    if counts.max() == 1:
        return order
    # only the positions of images with several predictions take part
    multi = np.repeat(counts > 1, counts)
    pos = np.flatnonzero(multi)
    rows = order[pos]
    areas_sorted = np.asarray(areas, dtype=np.float64)[rows]
    seg_starts = _segments(k)
    seg_boxes = tuple(np.empty((len(rows), len(seg_starts))) for _ in range(4))
    step = max(1, _ROW_CHUNK_ELEMENTS // (2 * k))
    for s in range(0, len(rows), step):  # boxes of each prediction's point segments, in row blocks
        block = np.asarray(keypoints[rows[s : s + step]], dtype=np.float64)
        for out, ufunc, c in zip(seg_boxes, (np.minimum, np.minimum, np.maximum, np.maximum), (0, 1, 0, 1)):
            out[s : s + step] = ufunc.reduceat(block[..., c], seg_starts, axis=1)
    boxes = tuple(b.min(axis=1) if i < 2 else b.max(axis=1) for i, b in enumerate(seg_boxes))
    group_end = np.repeat(np.cumsum(counts[counts > 1]), counts[counts > 1])
    src, dst = [], []
    for pi, pj in _pair_chunks(group_end, _PAIR_CHUNK):
        hit = _suppressing_pairs(keypoints, rows, areas_sorted, pi, pj, variances, thr, seg_starts, seg_boxes, boxes)
        src.append(pi[hit])
        dst.append(pj[hit])
    kept = np.ones(n, bool)
    kept[pos] = _greedy(len(pos), np.concatenate(src), np.concatenate(dst))
    return order[kept]


def select_people(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray,
    bbox_scores: np.ndarray,
    areas: np.ndarray,
    instance_ids: np.ndarray | None = None,
    keypoint_score_thr: float = 0.2,
    nms_thr: float = 0.9,
    sigmas: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The people the COCO-WholeBody evaluation scores: deduplicate, rescore, OKS-NMS per image.

    This is the one selection used by :class:`~wbpose.metrics.coco_wholebody.CocoWholeBodyMetric` and by
    anything that shows "the predicted people" (the demo), so both always agree:

    1. with ``instance_ids``, keep the first prediction of each id and put them in ascending id order (a canonical
       order: the result does not depend on how predictions were split across ranks or batches, and duplicates
       such as DistributedSampler padding are dropped);
    2. instance score = :func:`rescore` with ``keypoint_score_thr``;
    3. :func:`oks_nms` per image with ``nms_thr``.

    Args:
        image_ids: Image of each prediction.
        keypoints: Predicted keypoints in image pixels.
        keypoint_scores: Per-keypoint confidences.
        bbox_scores: Detector box scores.
        areas: Areas used by OKS-NMS (padded box area ``prod(scale_wh)``).
        instance_ids: Unique box id of each prediction; ``None``: every row is its own instance, in input order.
        keypoint_score_thr: Keypoints with a score above this count in the instance score.
        nms_thr: A candidate is dropped if its OKS with a kept one (same image) is greater.
        sigmas: Per-keypoint sigmas; defaults to the 133 COCO-WholeBody sigmas.

    Returns:
        ``(keep, scores)``: indices into the inputs of the kept people, grouped by ascending image id and, within
        an image, in descending score order (ties in canonical order), and their instance scores (float64).

    Shape:
        image_ids, bbox_scores, areas, instance_ids: (N,); keypoints: (N, K, 2); keypoint_scores: (N, K);
        keep, scores: (N_kept,).
    """
    ids = None if instance_ids is None else np.asarray(instance_ids)
    if ids is None or (len(ids) and bool(np.all(ids[1:] > ids[:-1]))) or len(ids) == 0:
        rows = np.arange(len(image_ids))  # already unique and in canonical order: no copies
        take = lambda a: np.asarray(a)  # noqa: E731
    else:
        _, rows = np.unique(ids, return_index=True)  # first occurrence, ascending id
        take = lambda a: np.asarray(a)[rows]  # noqa: E731
    scores = rescore(take(keypoint_scores), take(bbox_scores), keypoint_score_thr)
    kept = oks_nms(take(keypoints), scores, take(areas), take(image_ids), nms_thr, sigmas)
    return rows[kept].astype(np.int64, copy=False), scores[kept]

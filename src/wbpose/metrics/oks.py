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

Instead of MMPose's loop over candidates with a Python loop over pairs, the images are grouped, padded to the
largest group of their size bucket and their full OKS matrices are computed in one batched op; the greedy pass
then loops over candidate ranks (at most the largest number of predictions in one image), each step vectorised
over all images.
"""

from __future__ import annotations

import numpy as np

from wbpose.keypoints import sigmas_array

#: Largest number of float64 elements of a (G, M(M-1)/2, K) pair block (4 MB per temporary: blocks stay in cache
#: and reuse memory; one large block was slower on first use, from page faults).
_BLOCK_ELEMENTS = 1 << 19


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
    kpt = np.asarray(keypoint_scores, dtype=np.float64)
    above = kpt > thr
    count = above.sum(axis=1)
    total = np.where(above, kpt, 0.0).sum(axis=1)
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


def _group_blocks(counts: np.ndarray, num_keypoints: int) -> list[np.ndarray]:
    """Split groups into blocks of similar size whose padded pair tensor fits the element budget.

    Groups are taken in ascending size; a block ends when the padded (G, M(M-1)/2, K) tensor would pass the budget
    or the size grows past 1.5x the block's smallest group (to bound padding waste).
    """
    order = np.argsort(counts, kind="stable")
    sizes = counts[order]
    blocks, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order):
            m = int(sizes[stop])
            if (stop - start + 1) * m * (m - 1) // 2 * num_keypoints > _BLOCK_ELEMENTS or m > 1.5 * sizes[start]:
                break
            stop += 1
        blocks.append(order[start:stop])
        start = stop
    return blocks


def _greedy_block(oks: np.ndarray, valid: np.ndarray, thr: float) -> np.ndarray:
    """Greedy NMS on padded, score-sorted groups (only the upper triangle of ``oks`` is read).

    Shape:
        oks: (G, M, M); valid: (G, M); output: kept mask (G, M).
    """
    suppressed = ~valid
    keep = np.zeros_like(valid)
    later = np.triu(np.ones((valid.shape[1],) * 2, dtype=bool), k=1)  # later[r, j]: j comes after r
    for r in range(valid.shape[1]):
        kept_now = ~suppressed[:, r]
        keep[:, r] = kept_now
        suppressed |= kept_now[:, None] & (oks[:, r, :] > thr) & later[r]
    return keep


def _may_exceed(
    boxes: tuple[np.ndarray, ...],
    xs: np.ndarray,
    ys: np.ndarray,
    pi: np.ndarray,
    pj: np.ndarray,
    mean_area: np.ndarray,
    variances: np.ndarray,
    thr: float,
) -> np.ndarray:
    """Pairs whose OKS may be above ``thr``; the others certainly are not (their OKS need not be computed).

    Two rigorous upper bounds, cheapest first: every point distance is at least the gap between the two
    predictions' point boxes (``OKS <= exp(-gap^2 / max(var) / (area + eps) / 2)``); and the mean over all K
    points is at most the mean with every point outside a subset S (every 4th point) counted as 1. A margin far
    above rounding keeps every pair whose exact OKS could exceed ``thr``.

    Shape:
        boxes: x_lo, y_lo, x_hi, y_hi (N,); xs, ys: (N, K); pi, pj, mean_area: (P,) -> (P,) bool.
    """
    if not 0.0 < thr < 1.0:
        return np.ones(len(pi), bool)
    x_lo, y_lo, x_hi, y_hi = boxes
    gx = np.maximum(0.0, np.maximum(x_lo[pj] - x_hi[pi], x_lo[pi] - x_hi[pj]))
    gy = np.maximum(0.0, np.maximum(y_lo[pj] - y_hi[pi], y_lo[pi] - y_hi[pj]))
    scale = mean_area + np.spacing(1)
    need = (gx**2 + gy**2) / variances.max() / scale / 2 <= -np.log(thr) + 1e-6
    rest = np.flatnonzero(need)
    subset = np.arange(0, xs.shape[1], 4)
    for s in range(0, len(rest), 1 << 15):
        idx = rest[s : s + (1 << 15)]
        a, b = pi[idx], pj[idx]
        e = (xs[a][:, subset] - xs[b][:, subset]) ** 2 + (ys[a][:, subset] - ys[b][:, subset]) ** 2
        e /= variances[subset]
        e /= scale[idx][:, None]
        e /= 2
        upper = (np.exp(-e).sum(axis=1) + (xs.shape[1] - len(subset))) / xs.shape[1]
        need[idx] = upper >= thr - 1e-9
    return need


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    image_ids: np.ndarray,
    thr: float = 0.9,
    sigmas: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy OKS-NMS within each image.

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
    keypoints = np.asarray(keypoints, dtype=np.float64)
    n, k = keypoints.shape[:2]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sigmas = sigmas_array() if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    variances = (sigmas * 2) ** 2
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), np.asarray(image_ids)))  # stable for ties
    _, starts, counts = np.unique(np.asarray(image_ids)[order], return_index=True, return_counts=True)
    kept = np.zeros(n, dtype=bool)  # by sorted position
    kept[starts[counts == 1]] = True
    multi = np.flatnonzero(counts > 1)
    areas_sorted = np.asarray(areas, dtype=np.float64)[order]
    xs = np.ascontiguousarray(keypoints[order, :, 0])  # (N, K): contiguous rows for the gathers below
    ys = np.ascontiguousarray(keypoints[order, :, 1])
    boxes = (xs.min(axis=1), ys.min(axis=1), xs.max(axis=1), ys.max(axis=1))
    for block in _group_blocks(counts[multi], k):
        groups = multi[block]
        m = int(counts[groups].max())
        rank = np.arange(m)
        valid = rank[None, :] < counts[groups][:, None]
        pos = np.where(valid, starts[groups][:, None] + rank[None, :], 0)  # (G, M) sorted positions; pads -> 0
        iu, ju = np.triu_indices(m, k=1)  # each pair (i < j) once
        pi, pj = pos[:, iu].reshape(-1), pos[:, ju].reshape(-1)  # (G * P,)
        mean_area = (areas_sorted[pi] + areas_sorted[pj]) / 2
        values = np.zeros(len(pi))
        need = _may_exceed(boxes, xs, ys, pi, pj, mean_area, variances, thr)
        values[need] = _pair_oks(xs[pi[need]], ys[pi[need]], xs[pj[need]], ys[pj[need]], mean_area[need], variances)
        oks = np.zeros((len(groups), m, m))
        oks[:, iu, ju] = values.reshape(len(groups), -1)
        keep = _greedy_block(oks, valid, thr)
        kept[pos[keep]] = True
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

"""The fast engine's OKS of (result, person) pairs: the floats of xtcocotools' ``computeOks``, many pairs at once.

Used by :mod:`wbpose.metrics.cocoeval`: the ground-truth area rule, the per-part point boxes, the bound that skips
pairs whose OKS cannot reach 0.5, and the OKS itself (see that module's docstring for the rules kept).
"""

from __future__ import annotations

import numpy as np

from wbpose.data.coco_files import CocoArrays
from wbpose.keypoints import sigmas_array
from wbpose.metrics.keypoint_results import CHUNK_ELEMENTS, KeypointResults


def person_areas(gt: CocoArrays, rows: np.ndarray, *, use_area: bool) -> np.ndarray:
    """The area of each ground-truth person of ``rows``: its ``area`` field (``use_area``) or ``0.53 w h``."""
    if use_area:
        area = np.asarray(gt.area[rows], dtype=np.float64)
        if np.isnan(area).any():
            first = int(gt.ann_ids[rows][np.isnan(area)][0])
            raise ValueError(f"{gt.source or 'ground truth'}: annotation id {first} has no 'area' (use_area=True)")
        return area
    box = np.asarray(gt.bbox[rows], dtype=np.float64)
    return box[:, 2] * box[:, 3] * 0.53


def _part_boxes(
    x: np.ndarray, y: np.ndarray, valid: np.ndarray | None, parts: list[slice]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per part, the (lo, hi) corners (n, 2) of the box of each row's points (only ``valid`` ones if given).

    One pass over the points: min/max per segment between the parts' boundaries, then per part over its segments.
    """
    bounds = sorted({b for p in parts for b in (p.start, p.stop)})
    starts = np.asarray(bounds[:-1])
    seg = []
    for v, fill, ufunc in ((x, np.inf, np.minimum), (y, np.inf, np.minimum), (x, -np.inf, np.maximum),
                           (y, -np.inf, np.maximum)):  # fmt: skip
        w = v if valid is None else np.where(valid, v, fill)
        seg.append(ufunc.reduceat(w, starts, axis=1) if len(w) else np.zeros((0, len(starts))))
    out = []
    for p in parts:
        cols = [i for i, b in enumerate(bounds[:-1]) if p.start <= b < p.stop]
        lo = np.stack([seg[0][:, cols].min(axis=1), seg[1][:, cols].min(axis=1)], -1)
        hi = np.stack([seg[2][:, cols].max(axis=1), seg[3][:, cols].max(axis=1)], -1)
        out.append((lo, hi))
    return out


def _may_reach(
    d_box: tuple[np.ndarray, np.ndarray],
    g_box: tuple[np.ndarray, np.ndarray],
    gt_bbox: np.ndarray,
    gt_area: np.ndarray,
    count: np.ndarray,
    max_variance: float,
    pair_dt: np.ndarray,
    pair_gt: np.ndarray,
) -> np.ndarray:
    """Pairs whose OKS may reach the lowest threshold (0.5): a rigorous test from boxes, for skipping the rest.

    Every point of a result lies in the box of its points, every labelled point of a person in the box of those
    (or, for a person without one, the reference measures the distance to the doubled ``bbox``), so each
    distance is at least the gap ``d`` between the two boxes and each ``e_k >= d^2 / max(var) / (area + eps) / 2``.
    A pair with that bound above ``ln 2`` (plus a margin far above rounding) has OKS below 0.5 and can match no
    one at any threshold; its OKS is not needed (the matching only compares OKS with the thresholds).

    Shape:
        d_box: lo, hi (Nd, 2); g_box: lo, hi (Ng, 2) of the labelled points; gt_bbox: (Ng, 4); gt_area, count:
        (Ng,); pairs: (P,) -> (P,) bool.
    """
    g_lo, g_hi = g_box[0].copy(), g_box[1].copy()
    none = count == 0
    b = gt_bbox[none]
    g_lo[none] = np.stack([b[:, 0] - b[:, 2], b[:, 1] - b[:, 3]], -1)
    g_hi[none] = np.stack([b[:, 0] + b[:, 2] * 2, b[:, 1] + b[:, 3] * 2], -1)
    gap = np.maximum(0.0, np.maximum(g_lo[pair_gt] - d_box[1][pair_dt], d_box[0][pair_dt] - g_hi[pair_gt]))
    bound = (gap**2).sum(axis=1) / max_variance / (gt_area[pair_gt] + np.spacing(1)) / 2
    return ~(bound > np.log(2.0) + 1e-6)


def pair_oks(
    dt: KeypointResults,
    gkp: np.ndarray,
    gt_box: np.ndarray,
    gt_area: np.ndarray,
    pair_dt: np.ndarray,
    pair_gt: np.ndarray,
    parts: list[slice],
) -> list[np.ndarray]:
    """OKS of each (result, ground truth) pair for several parts, as ``computeOks`` computes each of them.

    ``e`` and ``exp(-e)`` of a point do not depend on the part (same sigma, same ground-truth area), so they are
    computed once per pair over the points the parts span; each part then sums, per pair, exactly the values the
    reference sums (the labelled points of its slice, in order; pairs grouped by their count, since numpy's
    pairwise sum of a row equals its sum of the same values as a 1-D array). People without a labelled point of a
    part use the reference's distance to the doubled box for that part.

    Shape:
        gkp: (Ng, 133, 3); gt_box: (Ng, 4); gt_area: (Ng,); pair_*: (P,) rows of ``dt`` / gkp -> [(P,)] per part.
    """
    lo, hi = min(p.start for p in parts), max(p.stop for p in parts)
    span = slice(lo, hi)
    gx_all, gy_all = np.ascontiguousarray(gkp[:, span, 0]), np.ascontiguousarray(gkp[:, span, 1])
    labelled = gkp[:, span, 2] > 0
    variances = (sigmas_array()[span] * 2) ** 2
    local = [slice(p.start - lo, p.stop - lo) for p in parts]
    counts = [labelled[:, p].sum(axis=1) for p in local]
    cols = [np.argsort(~labelled[:, p], axis=1, kind="stable") for p in local]  # labelled points first, in order
    eps = np.spacing(1)
    outs = [np.zeros(len(pair_dt)) for _ in parts]
    d_boxes = [dt.part_box(p) for p in parts]
    g_boxes = _part_boxes(gx_all, gy_all, labelled, local)
    reach = [
        _may_reach(d_box, g_box, gt_box, gt_area, count, variances[part].max(), pair_dt, pair_gt)
        for part, count, d_box, g_box in zip(local, counts, d_boxes, g_boxes)
    ]  # per part; the others keep OKS 0 (below every threshold, as theirs)
    needed = np.logical_or.reduce(reach) if reach else np.zeros(len(pair_dt), bool)
    # Pairs sorted by their person's labelled counts, so that a chunk holds few distinct counts per part.
    pairs = np.flatnonzero(needed)
    order = pairs[np.lexsort([c[pair_gt[pairs]] for c in counts[::-1]])] if len(pairs) else pairs
    step = max(1, CHUNK_ELEMENTS // (hi - lo))
    for s in range(0, len(order), step):
        idx = order[s : s + step]
        pd, pg = pair_dt[idx], pair_gt[idx]
        kp = np.asarray(dt.keypoints[pd], dtype=np.float64)
        xd, yd = kp[:, span, 0], kp[:, span, 1]
        ex = xd - gx_all[pg]
        ex **= 2
        dy = yd - gy_all[pg]
        dy **= 2
        ex += dy
        del dy
        area = (gt_area[pg] + eps)[:, None]
        ex /= variances
        ex /= area
        ex /= 2
        np.negative(ex, out=ex)
        np.exp(ex, out=ex)
        for part, out, count, col, d_box_of, mine in zip(local, outs, counts, cols, d_boxes, reach):
            num_points = part.stop - part.start
            sub = np.flatnonzero(mine[idx])
            c = count[pg[sub]]
            res = np.zeros(len(pd))
            for n in np.unique(c):
                rows = sub[c == n]
                if n == num_points:  # every point labelled
                    res[rows] = np.sum(ex[rows, part], axis=1) / num_points
                elif n > 0:  # the labelled points, in order
                    kept = np.take_along_axis(ex[rows, part], col[pg[rows], :n], axis=1)
                    res[rows] = np.sum(kept, axis=1) / n
                else:  # no labelled point: distance to the doubled box, over all the part's points
                    box = gt_box[pg[rows]]
                    x0, x1 = (box[:, 0] - box[:, 2])[:, None], (box[:, 0] + box[:, 2] * 2)[:, None]
                    y0, y1 = (box[:, 1] - box[:, 3])[:, None], (box[:, 1] + box[:, 3] * 2)[:, None]
                    # every point inside the doubled box: every distance and e is 0, the OKS exactly 1
                    d_lo, d_hi = d_box_of[0][pd[rows]], d_box_of[1][pd[rows]]
                    inside = (x0[:, 0] <= d_lo[:, 0]) & (d_hi[:, 0] <= x1[:, 0])
                    inside &= (y0[:, 0] <= d_lo[:, 1]) & (d_hi[:, 1] <= y1[:, 0])
                    res[rows[inside]] = 1.0
                    outside = ~inside
                    rows, x0, x1, y0, y1 = rows[outside], x0[outside], x1[outside], y0[outside], y1[outside]
                    bx, by = xd[rows, part], yd[rows, part]
                    bdx = np.maximum(0.0, x0 - bx) + np.maximum(0.0, bx - x1)
                    bdy = np.maximum(0.0, y0 - by) + np.maximum(0.0, by - y1)
                    e = (bdx**2 + bdy**2) / variances[part] / area[rows] / 2
                    res[rows] = np.sum(np.exp(-e), axis=1) / num_points
            out[idx] = res
    return outs

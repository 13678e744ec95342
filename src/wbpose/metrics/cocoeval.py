"""xtcocotools' COCO-WholeBody keypoint evaluation, vectorised in numpy on arrays: the same numbers, bit for bit.

:func:`evaluate_part` computes what ``COCOeval(gt, dt, 'keypoints_<part>', sigmas, use_area)`` followed by
``evaluate()``, ``accumulate()`` and ``summarize()`` computes (xtcocotools 1.14, ``cocoeval.py``), from the
ground truth as :class:`~wbpose.data.coco_files.CocoArrays` and the results as :class:`KeypointResults`, with no
Python object per prediction. Every rule of the reference is kept (docs/conventions.md#evaluation):

- ground truth: a person is ignored for a part when crowd or when none of the part's points has ``v > 0``;
  area = ``area`` (``use_area``) or ``0.53 w h``; the three area ranges all / medium / large (inclusive bounds);
- results: a result whose part keypoint scores are all ``<= 0`` is dropped for that part; each part ranks by
  ``<part>_score`` (``score`` for body) where a result has one, else ``score``; the result's area is the extent
  box of its 17 body points (``loadRes``); per image the 20 best (stable descending sort) are kept;
- OKS over the labelled points of the ground truth, or, for a person without any, the distance to the box
  doubled around its ``bbox``; the floating-point operations are those of ``computeOks`` in the same order, and
  the sum over points runs on exactly the points the reference sums (pairs are grouped by their number of
  labelled points), so every OKS is the identical float;
- greedy matching per image, threshold and area range: detections in score order; for each, among the ground
  truth not yet matched (crowd may match again), the non-ignored people first, the one of highest OKS at least
  the threshold, the last one in file order on ties; only if none, the same among the ignored ones;
  unmatched detections outside the area range are ignored;
- accumulation (stable sort of all scores, cumulative TP/FP, precision envelope, 101 recall points) and the ten
  summary numbers exactly as ``accumulate()`` / ``summarize()``, including -1 where undefined.

The matching loop runs over detection ranks (at most 20), each step vectorised over all images of a size class,
all ten thresholds and the three area ranges. ``tests/metrics/test_cocoeval.py`` checks equality with
xtcocotools on crowd and ignored people, unlabelled parts, tied scores, the maxDets cut, images without ground
truth or without results, the area ranges and the real 4-image sample; ``benchmarks/metric.py`` times it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wbpose.data.coco_files import CocoArrays
from wbpose.keypoints import NUM_KEYPOINTS, PART_SLICES, sigmas_array

#: Evaluated parts in the order MMPose runs them, with their keypoint ranges.
EVAL_PARTS: dict[str, slice] = {**PART_SLICES, "wholebody": slice(0, NUM_KEYPOINTS)}
#: The ranking score of each part when a result carries it (xtcocotools' ``score_key``).
SCORE_KEYS: dict[str, str] = {
    "body": "score",
    "foot": "foot_score",
    "face": "face_score",
    "lefthand": "lefthand_score",
    "righthand": "righthand_score",
    "wholebody": "wholebody_score",
}
# xtcocotools' Params.setKpParams, built the same way (the same floats).
IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNG = ((0**2, 1e5**2), (32**2, 96**2), (96**2, 1e5**2))
AREA_LBL = ("all", "medium", "large")
MAX_DETS = 20
#: Largest number of float64 elements of one OKS temporary (pairs x points).
_CHUNK_ELEMENTS = 1 << 20


@dataclass
class KeypointResults:
    """Keypoint results as arrays (N results, in results-file order).

    Attributes:
        image_ids: (N,) int64.
        keypoints: (N, 133, 2) float64 image pixels.
        keypoint_scores: (N, 133) float64 (the third number of each point).
        scores: (N,) float64 instance score.
        category_ids: (N,) int64 (all 1 when ``None``).
        part_scores: optional ``{"<part>_score": (N,) float64}``, NaN where a result has none.
    """

    image_ids: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray | None = None
    part_scores: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_ids)

    def xy_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of every point as two contiguous (N, 133) float64 arrays (made once, then kept)."""
        cached = self.__dict__.get("_xy")
        if cached is None:
            kp = np.asarray(self.keypoints)
            cached = (np.ascontiguousarray(kp[..., 0], np.float64), np.ascontiguousarray(kp[..., 1], np.float64))
            self.__dict__["_xy"] = cached
        return cached

    def categories(self) -> np.ndarray:
        return np.ones(len(self), np.int64) if self.category_ids is None else np.asarray(self.category_ids)

    def ranking_scores(self, part: str) -> np.ndarray:
        """The score each result ranks by for ``part`` (its ``<part>_score`` where present, else ``score``)."""
        key = SCORE_KEYS[part]
        own = self.part_scores.get(key) if key != "score" else None
        scores = np.asarray(self.scores, dtype=np.float64)
        return scores if own is None else np.where(np.isnan(own), scores, own)

    def body_box_area(self) -> np.ndarray:
        """``loadRes``'s result area: the extent box of the 17 body points."""
        body = np.asarray(self.keypoints[:, PART_SLICES["body"]], dtype=np.float64)
        lo, hi = body.min(axis=1), body.max(axis=1)
        return (hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1])


def _gt_area(gt: CocoArrays, rows: np.ndarray, use_area: bool) -> np.ndarray:
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


def _pair_oks(
    dxy: tuple[np.ndarray, np.ndarray],
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
        dxy: x, y (Nd, 133); gkp: (Ng, 133, 3); gt_box: (Ng, 4); gt_area: (Ng,); pair_*: (P,) -> [(P,)] per part.
    """
    lo, hi = min(p.start for p in parts), max(p.stop for p in parts)
    span = slice(lo, hi)
    dx_all, dy_all = dxy[0][:, span], dxy[1][:, span]
    gx_all, gy_all = np.ascontiguousarray(gkp[:, span, 0]), np.ascontiguousarray(gkp[:, span, 1])
    labelled = gkp[:, span, 2] > 0
    variances = (sigmas_array()[span] * 2) ** 2
    local = [slice(p.start - lo, p.stop - lo) for p in parts]
    counts = [labelled[:, p].sum(axis=1) for p in local]
    cols = [np.argsort(~labelled[:, p], axis=1, kind="stable") for p in local]  # labelled points first, in order
    eps = np.spacing(1)
    outs = [np.zeros(len(pair_dt)) for _ in parts]
    needed = np.zeros(len(pair_dt), bool)
    d_boxes = _part_boxes(dx_all, dy_all, None, local)
    g_boxes = _part_boxes(gx_all, gy_all, labelled, local)
    for part, count, d_box, g_box in zip(local, counts, d_boxes, g_boxes):
        needed |= _may_reach(d_box, g_box, gt_box, gt_area, count, variances[part].max(), pair_dt, pair_gt)
    # Pairs sorted by their person's labelled counts, so that a chunk holds few distinct counts per part.
    pairs = np.flatnonzero(needed)
    order = pairs[np.lexsort([c[pair_gt[pairs]] for c in counts[::-1]])] if len(pairs) else pairs
    step = max(1, _CHUNK_ELEMENTS // (hi - lo))
    for s in range(0, len(order), step):
        idx = order[s : s + step]
        pd, pg = pair_dt[idx], pair_gt[idx]
        xd, yd = dx_all[pd], dy_all[pd]
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
        for part, out, count, col in zip(local, outs, counts, cols):
            num_points = part.stop - part.start
            c = count[pg]
            res = np.empty(len(pd))
            for n in np.unique(c):
                rows = np.flatnonzero(c == n)
                if n == num_points:  # every point labelled
                    res[rows] = np.sum(ex[rows, part], axis=1) / num_points
                elif n > 0:  # the labelled points, in order
                    kept = np.take_along_axis(ex[rows, part], col[pg[rows], :n], axis=1)
                    res[rows] = np.sum(kept, axis=1) / n
                else:  # no labelled point: distance to the doubled box, over all the part's points
                    box = gt_box[pg[rows]]
                    x0, x1 = (box[:, 0] - box[:, 2])[:, None], (box[:, 0] + box[:, 2] * 2)[:, None]
                    y0, y1 = (box[:, 1] - box[:, 3])[:, None], (box[:, 1] + box[:, 3] * 2)[:, None]
                    bx, by = xd[rows, part], yd[rows, part]
                    bdx = np.maximum(0.0, x0 - bx) + np.maximum(0.0, bx - x1)
                    bdy = np.maximum(0.0, y0 - by) + np.maximum(0.0, by - y1)
                    e = (bdx**2 + bdy**2) / variances[part] / area[rows] / 2
                    res[rows] = np.sum(np.exp(-e), axis=1) / num_points
            out[idx] = res
    return outs


def _match_block(oks: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of a block of images with the same number G of ground-truth people.

    Args:
        oks: (B, D, G) OKS of rank-d result vs person g (file order); -1 for padding (never matches).
        gt_ignore: (B, A, G) ignored for area range a.
        crowd: (B, G).

    Returns:
        ``(matched, matched_ignored)``, each (B, A, T, D): the result matched a person / an ignored person.
    """
    b, d_max, g = oks.shape
    a = gt_ignore.shape[1]
    t_num = len(IOU_THRS)
    thr = np.minimum(IOU_THRS, 1 - 1e-10)
    taken = np.zeros((b, a, t_num, g), bool)
    matched = np.zeros((b, a, t_num, d_max), bool)
    matched_ig = np.zeros_like(matched)
    reverse = np.arange(g - 1, -1, -1)
    people = np.arange(g)
    for r in range(d_max):
        # Only images where this result reaches the lowest threshold with someone can match it.
        act = np.flatnonzero((oks[:, r, :] >= thr[0]).any(axis=-1))
        if len(act) == 0:
            continue
        o = oks[act, r, :][:, None, None, :]  # (b', 1, 1, G)
        ign = gt_ignore[act][:, :, None, :]
        tk = taken[act]
        qualified = (~tk | crowd[act][:, None, None, :]) & (o >= thr[None, None, :, None])
        choice = np.full(tk.shape[:3], -1)
        from_ignored = np.zeros(tk.shape[:3], bool)
        for is_ignored in (False, True):
            cand = qualified & (ign if is_ignored else ~ign)
            vals = np.where(cand, o, -1.0)
            best = vals.max(axis=-1, keepdims=True)
            last = g - 1 - np.argmax(((vals == best) & cand)[..., reverse], axis=-1)  # last maximum in file order
            open_ = (choice < 0) & cand.any(axis=-1)
            choice = np.where(open_, last, choice)
            if is_ignored:
                from_ignored = open_
        matched[act, :, :, r] = choice >= 0
        matched_ig[act, :, :, r] = from_ignored
        taken[act] = tk | (people == choice[..., None])
    return matched, matched_ig


def _accumulate(inds: np.ndarray, matched: np.ndarray, ignored: np.ndarray, num_pos: int) -> tuple[np.ndarray, ...]:
    """``accumulate()`` for one category and area range: precision (T, R) and recall (T,).

    Shape:
        inds: (Nd,) the stable descending-score order of the results (``argsort(-scores, kind='mergesort')``
        over the (image, rank) order); matched, ignored: (T, Nd) in (image, rank) order.
    """
    t_num, r_num = len(IOU_THRS), len(REC_THRS)
    dtm, dtig = matched[:, inds], ignored[:, inds]
    tps = np.logical_and(dtm, np.logical_not(dtig))
    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtig))
    tp_sum = np.cumsum(tps, axis=1, dtype=np.float64)  # exact integers, as cumsum(...).astype(float64)
    fp_sum = np.cumsum(fps, axis=1, dtype=np.float64)
    precision = np.zeros((t_num, r_num))
    nd = tp_sum.shape[1]
    rc = tp_sum / num_pos
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    recall = rc[:, -1].copy() if nd else np.zeros(t_num)
    if nd:
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # the reference's backward max pass
    for t in range(t_num):
        pos = np.searchsorted(rc[t], REC_THRS, side="left")
        ok = pos < nd
        precision[t, ok] = pr[t, pos[ok]]
    return precision, recall


def _summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """``summarize()``'s ten keypoint numbers from precision (T, R, K, A, M) and recall (T, K, A, M)."""

    def one(ap: int, iou_thr: float | None = None, area: str = "all") -> float:
        aind = [i for i, lbl in enumerate(AREA_LBL) if lbl == area]
        mind = [0]
        if ap == 1:
            s = precision
            if iou_thr is not None:
                s = s[np.where(iou_thr == IOU_THRS)[0]]
            s = s[:, :, :, aind, mind]
        else:
            s = recall
            if iou_thr is not None:
                s = s[np.where(iou_thr == IOU_THRS)[0]]
            s = s[:, :, aind, mind]
        return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

    return np.array(
        [
            one(1),
            one(1, iou_thr=0.5),
            one(1, iou_thr=0.75),
            one(1, area="medium"),
            one(1, area="large"),
            one(0),
            one(0, iou_thr=0.5),
            one(0, iou_thr=0.75),
            one(0, area="medium"),
            one(0, area="large"),
        ]
    )


def _segments(sorted_rows: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and count of each row value 0..num_rows-1 in an ascending array."""
    counts = np.bincount(sorted_rows, minlength=num_rows)
    return np.cumsum(counts) - counts, counts


@dataclass
class _Selection:
    """The results one part evaluates for one category: per image by descending score, the first MAX_DETS."""

    rows: np.ndarray  # (Nd,) result rows, in (image, rank) order
    image: np.ndarray  # (Nd,) image row
    rank: np.ndarray  # (Nd,)
    start: np.ndarray  # (M,) first position of each image
    count: np.ndarray  # (M,)


def _select(candidates: np.ndarray, image_rows: np.ndarray, ranking: np.ndarray, num_images: int) -> _Selection:
    order = np.lexsort((-ranking[candidates], image_rows[candidates]))
    rows, img = candidates[order], image_rows[candidates][order]
    start, _ = _segments(img, num_images)
    rank = np.arange(len(rows)) - start[img]
    keep = rank < MAX_DETS
    rows, img, rank = rows[keep], img[keep], rank[keep]
    start, count = _segments(img, num_images)
    return _Selection(rows, img, rank, start, count)


def _size_class(counts: np.ndarray) -> np.ndarray:
    """Round people counts up to 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (few blocks, at most 1.5x padding)."""
    classes = np.array(sorted({1, 2, 3} | {int(2**k * f) for k in range(1, 12) for f in (2, 3)}))
    return classes[np.searchsorted(classes, counts)]


def _part_result(
    sel: _Selection,
    pair_dt: np.ndarray,
    pair_pos: np.ndarray,
    pair_oks: np.ndarray,
    g_start: np.ndarray,
    g_count: np.ndarray,
    g_ignore: np.ndarray,
    g_crowd: np.ndarray,
    d_out: np.ndarray,
    scores: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Matching and accumulation of one part and category: precision (T, R, A), recall (T, A), -1 if undefined."""
    t_num, r_num, a_num = len(IOU_THRS), len(REC_THRS), len(AREA_RNG)
    precision = -np.ones((t_num, r_num, a_num))
    recall = -np.ones((t_num, a_num))
    num_images = len(g_count)
    matched = np.zeros((a_num, t_num, len(sel.rows)), bool)
    matched_ig = np.zeros_like(matched)
    both = np.flatnonzero((g_count > 0) & (sel.count > 0))
    pair_img = sel.image[pair_dt]
    size_class = _size_class(g_count[both])
    for g in np.unique(size_class):  # images with about the same number of people, matched together (padded)
        g = int(g)
        imgs = both[size_class == g]
        d_max = int(sel.count[imgs].max())
        pos = np.full(num_images, -1)
        pos[imgs] = np.arange(len(imgs))
        in_block = np.flatnonzero(pos[pair_img] >= 0)
        oks = np.full((len(imgs), d_max, g), -1.0)
        pdt = pair_dt[in_block]
        oks[pos[pair_img[in_block]], sel.rank[pdt], pair_pos[in_block]] = pair_oks[in_block]
        people = g_start[imgs][:, None] + np.arange(g)  # (B, G); padding points at a valid row, never matched
        people = np.minimum(people, (g_start[imgs] + g_count[imgs] - 1)[:, None])
        m, mig = _match_block(oks, g_ignore[people].transpose(0, 2, 1), g_crowd[people])
        b_idx, r_idx = np.nonzero(np.arange(d_max)[None, :] < sel.count[imgs][:, None])
        dts = sel.start[imgs][b_idx] + r_idx
        matched[:, :, dts] = m[b_idx, :, :, r_idx].transpose(1, 2, 0)
        matched_ig[:, :, dts] = mig[b_idx, :, :, r_idx].transpose(1, 2, 0)
    inds = np.argsort(-scores, kind="mergesort")
    for a in range(a_num):
        num_pos = int(np.count_nonzero(~g_ignore[:, a]))
        if num_pos == 0:
            continue
        ignored = matched_ig[a] | (~matched[a] & d_out[None, :, a])
        precision[:, :, a], recall[:, a] = _accumulate(inds, matched[a], ignored, num_pos)
    return precision, recall


def _evaluate_category(
    gt: CocoArrays,
    gt_sel: np.ndarray,
    dt: KeypointResults,
    dt_cat: np.ndarray,
    parts: tuple[str, ...],
    use_area: bool,
    dt_area: np.ndarray,
    dt_image_rows: np.ndarray,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Precision (T, R, A) and recall (T, A) of each part for one category (-1 where undefined)."""
    num_images = len(gt.image_ids)
    g_rows = gt_sel[np.argsort(gt.image_rows(gt.ann_image_ids[gt_sel]), kind="stable")]  # by image, file order
    g_img = gt.image_rows(gt.ann_image_ids[g_rows])
    g_start, g_count = _segments(g_img, num_images)
    g_kp = np.asarray(gt.keypoints[g_rows], dtype=np.float64)
    g_box = np.asarray(gt.bbox[g_rows], dtype=np.float64)
    g_area = _gt_area(gt, g_rows, use_area)
    g_crowd = np.asarray(gt.iscrowd[g_rows], dtype=bool)
    lo = np.array([r[0] for r in AREA_RNG])
    hi = np.array([r[1] for r in AREA_RNG])
    g_out = (g_area[:, None] < lo) | (g_area[:, None] > hi)
    d_out_all = (dt_area[:, None] < lo) | (dt_area[:, None] > hi)

    selections: dict[str, _Selection] = {}
    for part in parts:
        sl = EVAL_PARTS[part]
        scored = (np.asarray(dt.keypoint_scores[:, sl]) > 0).any(axis=1) if len(dt) else np.zeros(0, bool)
        candidates = np.flatnonzero(dt_cat & scored)
        selections[part] = _select(candidates, dt_image_rows, dt.ranking_scores(part), num_images)

    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pending = list(parts)
    while pending:  # parts that evaluate the same results share their pairs and point-wise OKS terms
        first = selections[pending[0]]
        group = [p for p in pending if np.array_equal(selections[p].rows, first.rows)]
        pending = [p for p in pending if p not in group]
        pair_n = g_count[first.image]
        pair_dt = np.repeat(np.arange(len(first.rows)), pair_n)
        pair_pos = np.arange(len(pair_dt)) - np.repeat(np.cumsum(pair_n) - pair_n, pair_n)
        pair_gt = g_start[first.image][pair_dt] + pair_pos
        dxy = tuple(column[first.rows] for column in dt.xy_columns())
        oks_by_part = _pair_oks(dxy, g_kp, g_box, g_area, pair_dt, pair_gt, [EVAL_PARTS[p] for p in group])
        for part, pair_oks in zip(group, oks_by_part):
            sl = EVAL_PARTS[part]
            if len(g_rows) == 0 and len(first.rows) == 0:
                t_num, r_num, a_num = len(IOU_THRS), len(REC_THRS), len(AREA_RNG)
                results[part] = (-np.ones((t_num, r_num, a_num)), -np.ones((t_num, a_num)))
                continue
            g_ignore = (g_crowd | ~(g_kp[:, sl, 2] > 0).any(axis=1))[:, None] | g_out
            scores = dt.ranking_scores(part)[first.rows]
            results[part] = _part_result(
                first, pair_dt, pair_pos, pair_oks, g_start, g_count, g_ignore, g_crowd, d_out_all[first.rows],
                scores,
            )  # fmt: skip
    return results


def evaluate_parts(
    gt: CocoArrays, dt: KeypointResults, parts: tuple[str, ...] = tuple(EVAL_PARTS), use_area: bool = True
) -> dict[str, np.ndarray]:
    """The ten xtcocotools stats of each part: ``{part: (AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl)}``.

    Args:
        gt: Ground truth (all images of the file are evaluated, as ``params.imgIds``).
        dt: Results; every image id must be one of ``gt``'s (see
            :func:`wbpose.metrics.evaluation.check_image_ids`).
        parts: Any of body, foot, face, lefthand, righthand, wholebody.
        use_area: ``COCOeval(..., use_area)`` (MMPose: True).

    Returns:
        ``{part: (10,) float64}``, -1 where undefined.
    """
    categories = np.asarray(gt.category_ids, dtype=np.int64)
    t_num, r_num, a_num = len(IOU_THRS), len(REC_THRS), len(AREA_RNG)
    precision = {p: -np.ones((t_num, r_num, len(categories), a_num, 1)) for p in parts}
    recall = {p: -np.ones((t_num, len(categories), a_num, 1)) for p in parts}
    if len(categories):
        dt_area = dt.body_box_area() if len(dt) else np.zeros(0)
        dt_image_rows = gt.image_rows(dt.image_ids)
        dt_cat, gt_cat = dt.categories(), np.asarray(gt.ann_category_ids)
        for k, cat in enumerate(categories.tolist()):
            gt_sel = np.flatnonzero(gt_cat == cat)
            per_part = _evaluate_category(gt, gt_sel, dt, dt_cat == cat, parts, use_area, dt_area, dt_image_rows)
            for part, (p, r) in per_part.items():
                precision[part][:, :, k, :, 0], recall[part][:, k, :, 0] = p, r
    return {part: _summarize(precision[part], recall[part]) for part in parts}


def evaluate_part(gt: CocoArrays, dt: KeypointResults, part: str, use_area: bool = True) -> np.ndarray:
    """The ten xtcocotools stats of one part (see :func:`evaluate_parts`)."""
    return evaluate_parts(gt, dt, (part,), use_area)[part]

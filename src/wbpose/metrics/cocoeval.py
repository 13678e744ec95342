"""xtcocotools' COCO-WholeBody keypoint evaluation, vectorised in numpy on arrays: the same numbers, bit for bit.

:func:`evaluate_part_fast` computes what ``COCOeval(gt, dt, 'keypoints_<part>', sigmas, use_area)`` followed by
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

How it is fast: parts that evaluate the same results (all six, for a model's results) share their (result,
person) pairs and the point-wise OKS terms, and pairs whose OKS cannot reach 0.5 (a bound from point boxes) are
skipped (a result inside the doubled box of a person without labelled points has OKS exactly 1); the matching loop
runs over detection ranks (at most 20), each step vectorised over all images of a size class, all ten thresholds,
the three area ranges and the parts, with the people on the first axis; the accumulation reads the precision at
the true positives only (where the reference's envelope takes its values). ``tests/metrics/test_cocoeval.py``
checks equality with xtcocotools on crowd and ignored people, unlabelled parts, tied scores, the maxDets cut,
images without ground truth or without results, the area ranges and the real 4-image sample;
``benchmarks/metric_full_size.py`` times it at full val size.

The results' array form is :mod:`wbpose.metrics.keypoint_results`; the OKS of the pairs is
:mod:`wbpose.metrics.cocoeval_oks`; this module matches, accumulates and summarises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wbpose.data.coco_files import CocoArrays
from wbpose.metrics.cocoeval_oks import pair_oks, person_areas
from wbpose.metrics.keypoint_results import EVAL_PARTS, KeypointResults

# xtcocotools' Params.setKpParams, built the same way (the same floats).
IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNG = ((0**2, 1e5**2), (32**2, 96**2), (96**2, 1e5**2))
AREA_LBL = ("all", "medium", "large")
MAX_DETS = 20


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
    # People on the first axis: the reductions over them are then element-wise over contiguous (image, area,
    # threshold) blocks (a reduction over a short last axis is slow in numpy).
    oks_g = np.ascontiguousarray(oks.transpose(2, 0, 1))  # (G, B, D)
    ignore_g = np.ascontiguousarray(gt_ignore.transpose(2, 0, 1))[..., None]  # (G, B, A, 1)
    crowd_g = np.ascontiguousarray(crowd.T)[:, :, None, None]  # (G, B, 1, 1)
    taken = np.zeros((g, b, a, t_num), bool)
    matched = np.zeros((b, a, t_num, d_max), bool)
    matched_ig = np.zeros_like(matched)
    people = np.arange(g, dtype=np.int16 if g < 2**15 else np.int64).reshape(g, 1, 1, 1)
    for r in range(d_max):
        # Only images where this result reaches the lowest threshold with someone can match it.
        act = np.flatnonzero((oks_g[:, :, r] >= thr[0]).any(axis=0))
        if len(act) == 0:
            continue
        o = oks_g[:, act, r][:, :, None, None]  # (G, b', 1, 1)
        ign = ignore_g[:, act]
        tk = taken[:, act]
        qualified = (~tk | crowd_g[:, act]) & (o >= thr)  # (G, b', A, T)
        choice = np.full(tk.shape[1:], -1, dtype=people.dtype)
        from_ignored = np.zeros(tk.shape[1:], bool)
        for is_ignored in (False, True):
            cand = qualified & (ign if is_ignored else ~ign)
            if not cand.any():
                continue
            vals = np.where(cand, o, -1.0)  # -1 where nobody qualifies (an OKS that qualifies is at least 0.5)
            if g == 1:
                best, last = vals[0], people[0, 0, 0, 0]
            elif g <= 4:  # a running maximum over the few people; ">=": the last maximum in file order
                best, last = vals[0], np.zeros(vals.shape[1:], people.dtype)
                for j in range(1, g):
                    later = vals[j] >= best
                    best = np.maximum(best, vals[j])
                    last[later] = j
            else:
                best = vals.max(axis=0)
                last = np.where(vals == best, people, -1).max(axis=0)  # the last maximum in file order
            open_ = (choice < 0) & (best >= 0)
            choice = np.where(open_, last, choice)
            if is_ignored:
                from_ignored = open_
        matched[act, :, :, r] = choice >= 0
        matched_ig[act, :, :, r] = from_ignored
        taken[:, act] = tk | (people == choice)
    return matched, matched_ig


def _accumulate(matched: np.ndarray, ignored: np.ndarray, num_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """``accumulate()`` for one threshold, category and area range: precision (R,) and recall (scalar).

    The reference's precision at recall threshold ``r`` is the maximum of ``tp / (fp + tp + eps)`` over the
    positions from the first one whose recall ``tp / num_pos`` reaches ``r``; that position is a true positive (the
    recall only grows there), and between true positives the precision only falls, so the maximum is over true
    positives. Only they are computed, with the reference's floats (cumulative counts are exact integers).

    Shape:
        matched, ignored: (Nd,) bool, in descending score order.
    """
    precision = np.zeros(len(REC_THRS))
    tp_at = np.flatnonzero(matched & ~ignored)  # positions of the true positives
    if len(tp_at) == 0:
        return precision, 0.0
    tp = np.arange(1, len(tp_at) + 1, dtype=np.float64)
    counted = np.cumsum(~ignored, dtype=np.int64)[tp_at].astype(np.float64)  # tp + fp up to each true positive
    pr = tp / ((counted - tp) + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]  # the reference's backward max pass
    rc = tp / num_pos
    pos = np.searchsorted(rc, REC_THRS, side="left")
    ok = pos < len(tp)
    precision[ok] = pr[pos[ok]]
    return precision, float(rc[-1])


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


def _match_images(
    sel: _Selection,
    pair_dt: np.ndarray,
    pair_pos: np.ndarray,
    pair_oks: list[np.ndarray],
    g_start: np.ndarray,
    g_count: np.ndarray,
    ignore: np.ndarray,
    g_crowd: np.ndarray,
    matched: np.ndarray,
    matched_ig: np.ndarray,
) -> None:
    """Greedy matching of the results for parts that evaluate the same results, written into
    ``matched`` / ``matched_ig`` (parts, A, T, Nd) at those results' positions.

    Images with about the same number of people are matched together (padded), the parts stacked on the image axis
    of :func:`_match_block`.

    Shape:
        pair_*: (P,) the pairs; pair_oks: [(P,)] per part; ignore: (parts, Ng, A).
    """
    n_parts, a_num, t_num, _ = matched.shape
    num_images = len(g_count)
    both = np.flatnonzero((g_count > 0) & (sel.count > 0))
    pair_img = sel.image[pair_dt]
    size_class = _size_class(g_count[both])
    for g in np.unique(size_class):
        g = int(g)
        imgs = both[size_class == g]
        b = len(imgs)
        d_max = int(sel.count[imgs].max())
        pos = np.full(num_images, -1)
        pos[imgs] = np.arange(b)
        in_block = np.flatnonzero(pos[pair_img] >= 0)
        oks = np.full((n_parts, b, d_max, g), -1.0)
        where = (pos[pair_img[in_block]], sel.rank[pair_dt[in_block]], pair_pos[in_block])
        for k, values in enumerate(pair_oks):
            oks[k][where] = values[in_block]
        people = g_start[imgs][:, None] + np.arange(g)  # (B, G); padding points at a valid row, never matched
        people = np.minimum(people, (g_start[imgs] + g_count[imgs] - 1)[:, None])
        ign = ignore[:, people].transpose(0, 1, 3, 2).reshape(n_parts * b, a_num, g)
        crowd = np.broadcast_to(g_crowd[people], (n_parts, b, g)).reshape(n_parts * b, g)
        m, mig = _match_block(oks.reshape(n_parts * b, d_max, g), ign, crowd)
        b_idx, r_idx = np.nonzero(np.arange(d_max)[None, :] < sel.count[imgs][:, None])
        dts = sel.start[imgs][b_idx] + r_idx
        m, mig = m.reshape(n_parts, b, a_num, t_num, d_max), mig.reshape(n_parts, b, a_num, t_num, d_max)
        matched[..., dts] = m[:, b_idx, :, :, r_idx].transpose(1, 2, 3, 0)
        matched_ig[..., dts] = mig[:, b_idx, :, :, r_idx].transpose(1, 2, 3, 0)


def _accumulate_parts(
    matched: np.ndarray, matched_ig: np.ndarray, ignore: np.ndarray, d_out: np.ndarray, scores: list[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Accumulation of parts that evaluate the same results (one category): per part, precision (T, R, A) and
    recall (T, A), -1 where undefined. Parts ranked by the same scores share the sort.

    Shape:
        matched, matched_ig: (parts, A, T, Nd); ignore: (parts, Ng, A); d_out: (Nd, A); scores: [(Nd,)].
    """
    t_num, r_num, a_num = len(IOU_THRS), len(REC_THRS), len(AREA_RNG)
    n_parts = len(matched)
    ignored = matched_ig | (~matched & d_out.T[None, :, None, :])
    num_pos = np.count_nonzero(~ignore, axis=1)  # (parts, A)
    out = [(-np.ones((t_num, r_num, a_num)), -np.ones((t_num, a_num))) for _ in range(n_parts)]
    pending = list(range(n_parts))
    while pending:
        first = pending[0]
        same = [k for k in pending if k == first or np.array_equal(scores[k], scores[first])]
        pending = [k for k in pending if k not in same]
        inds = np.argsort(-scores[first], kind="mergesort")
        for k in same:
            for a in np.flatnonzero(num_pos[k] > 0).tolist():
                dtm, dtig = matched[k, a][:, inds], ignored[k, a][:, inds]
                for t in range(t_num):
                    out[k][0][t, :, a], out[k][1][t, a] = _accumulate(dtm[t], dtig[t], int(num_pos[k, a]))
    return out


def _evaluate_category(
    gt: CocoArrays,
    gt_sel: np.ndarray,
    dt: KeypointResults,
    dt_cat: np.ndarray,
    parts: tuple[str, ...],
    dt_area: np.ndarray,
    dt_image_rows: np.ndarray,
    *,
    use_area: bool,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Precision (T, R, A) and recall (T, A) of each part for one category (-1 where undefined)."""
    num_images = len(gt.image_ids)
    g_rows = gt_sel[np.argsort(gt.image_rows(gt.ann_image_ids[gt_sel]), kind="stable")]  # by image, file order
    g_img = gt.image_rows(gt.ann_image_ids[g_rows])
    g_start, g_count = _segments(g_img, num_images)
    g_kp = np.asarray(gt.keypoints[g_rows], dtype=np.float64)
    g_box = np.asarray(gt.bbox[g_rows], dtype=np.float64)
    g_area = person_areas(gt, g_rows, use_area=use_area)
    g_crowd = np.asarray(gt.iscrowd[g_rows], dtype=bool)
    lo = np.array([r[0] for r in AREA_RNG])
    hi = np.array([r[1] for r in AREA_RNG])
    g_out = (g_area[:, None] < lo) | (g_area[:, None] > hi)
    d_out_all = (dt_area[:, None] < lo) | (dt_area[:, None] > hi)

    selections: dict[str, _Selection] = {}
    made: list[tuple[np.ndarray, np.ndarray, _Selection]] = []  # parts with the same results share the selection
    for part in parts:
        candidates = np.flatnonzero(dt_cat & dt.scored(EVAL_PARTS[part]))
        ranking = dt.ranking_scores(part)
        same = (s for c, r, s in made if np.array_equal(c, candidates) and (r is ranking or np.array_equal(r, ranking)))
        selections[part] = next(same, None) or _select(candidates, dt_image_rows, ranking, num_images)
        made.append((candidates, ranking, selections[part]))

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
        slices = [EVAL_PARTS[p] for p in group]
        if len(g_rows) == 0 and len(first.rows) == 0:
            t_num, r_num, a_num = len(IOU_THRS), len(REC_THRS), len(AREA_RNG)
            results.update({p: (-np.ones((t_num, r_num, a_num)), -np.ones((t_num, a_num))) for p in group})
            continue
        ignore = np.stack([(g_crowd | ~(g_kp[:, sl, 2] > 0).any(axis=1))[:, None] | g_out for sl in slices])
        matched = np.zeros((len(group), len(AREA_RNG), len(IOU_THRS), len(first.rows)), bool)
        matched_ig = np.zeros_like(matched)
        oks = pair_oks(dt, g_kp, g_box, g_area, first.rows[pair_dt], pair_gt, slices)
        _match_images(first, pair_dt, pair_pos, oks, g_start, g_count, ignore, g_crowd, matched, matched_ig)
        del oks
        scores = [dt.ranking_scores(part)[first.rows] for part in group]
        results.update(zip(group, _accumulate_parts(matched, matched_ig, ignore, d_out_all[first.rows], scores)))
    return results


def evaluate_parts_fast(
    gt: CocoArrays, dt: KeypointResults, parts: tuple[str, ...] = tuple(EVAL_PARTS), *, use_area: bool = True
) -> dict[str, np.ndarray]:
    """The ten xtcocotools stats of each part: ``{part: (AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl)}``.

    Args:
        gt: Ground truth (all images of the file are evaluated, as ``params.imgIds``).
        dt: Results; every image id must be one of ``gt``'s (see
            :func:`wbpose.metrics.evaluation.check_image_ids_arrays`).
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
            per_part = _evaluate_category(
                gt, gt_sel, dt, dt_cat == cat, parts, dt_area, dt_image_rows, use_area=use_area
            )
            for part, (p, r) in per_part.items():
                precision[part][:, :, k, :, 0], recall[part][:, k, :, 0] = p, r
    return {part: _summarize(precision[part], recall[part]) for part in parts}


def evaluate_part_fast(gt: CocoArrays, dt: KeypointResults, part: str, *, use_area: bool = True) -> np.ndarray:
    """The ten xtcocotools stats of one part (see :func:`evaluate_parts_fast`)."""
    return evaluate_parts_fast(gt, dt, (part,), use_area=use_area)[part]

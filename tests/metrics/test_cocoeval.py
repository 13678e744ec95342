"""The fast engine (wbpose.metrics.cocoeval) against xtcocotools, run as MMPose runs it on the same files.

Every case the reference treats specially is in the data: crowd people (matched again, ignored), people without
keypoints (ignored; OKS by distance to the doubled box), parts unlabelled for some people, duplicated people (OKS
ties between two ground truths), tied result scores, images with more than 20 results (the maxDets cut), images
without ground truth and images without results, results whose part scores are all <= 0 (dropped for that part),
``<part>_score`` fields (each part ranks by its own), small/medium/large people, ``use_area=False``, and the real
4-image sample. The numbers must agree to 1e-12 (they are in fact identical).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

from helpers.annotations import coco_wholebody, image_record, make_wholebody_gt, person, write_json
from helpers.predictions import detector_like_predictions, gt_as_predictions
from wbpose.data.coco_files import parse_annotation_file
from wbpose.keypoints import NUM_KEYPOINTS, PART_SLICES, sigmas_array
from wbpose.metrics import cocoeval_oks, keypoint_results, results_io
from wbpose.metrics.cocoeval import (
    EVAL_PARTS,
    REC_THRS,
    KeypointResults,
    _accumulate,
    _size_class,
    evaluate_part_fast,
    evaluate_parts_fast,
)
from wbpose.metrics.evaluation import evaluate_results_file, summarize_parts
from wbpose.metrics.results_io import dumps_results_arrays, read_results_arrays

TOL = 1e-12


def reference(ann_file: Path, results_file: Path, use_area: bool = True) -> dict[str, np.ndarray]:
    """The six xtcocotools runs exactly as MMPose does them, from the files."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco_gt = COCO(str(ann_file))
        coco_dt = coco_gt.loadRes(str(results_file))
        for part, sl in EVAL_PARTS.items():
            ev = COCOeval(coco_gt, coco_dt, f"keypoints_{part}", sigmas_array()[sl], use_area=use_area)
            ev.params.useSegm = None
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[part] = np.asarray(ev.stats, dtype=np.float64)
    return out


def assert_same(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    for part in EVAL_PARTS:
        diff = np.abs(np.asarray(ours[part]) - ref[part]).max()
        assert diff <= TOL, f"{part}: ours {ours[part]} vs xtcocotools {ref[part]}"


def results_of(preds: dict[str, np.ndarray], rows: np.ndarray | None = None) -> KeypointResults:
    rows = np.arange(len(preds["image_ids"])) if rows is None else rows
    return KeypointResults(
        preds["image_ids"][rows],
        preds["keypoints"][rows],
        preds["keypoint_scores"][rows],
        preds["bbox_scores"][rows] * preds["keypoint_scores"][rows].mean(1),
    )


def hard_case(seed: int) -> tuple[dict, KeypointResults]:
    """Ground truth and results with every special case of the module docstring."""
    gt = make_wholebody_gt(num_images=10, people_per_image=4, seed=seed)
    anns = gt["annotations"]
    next_id = max(a["id"] for a in anns) + 1
    first = gt["images"][0]["id"]
    zeros = np.zeros((NUM_KEYPOINTS, 3))
    # a crowd region, a person without keypoints, a person with only the face labelled, a duplicated person
    anns.append(person(next_id, first, [0, 0, 300, 200], zeros, iscrowd=1, num_keypoints=0, area=40000.0))
    anns.append(person(next_id + 1, first, [300, 200, 120, 200], zeros, num_keypoints=0, area=15000.0))
    face_only = np.array(anns[1]["keypoints"] + anns[1]["foot_kpts"] + anns[1]["face_kpts"] + [0.0] * 126)
    face_only = face_only.reshape(NUM_KEYPOINTS, 3)
    face_only[PART_SLICES["body"]] = 0.0
    face_only[PART_SLICES["foot"]] = 0.0
    anns.append(person(next_id + 2, first, anns[1]["bbox"], face_only, area=anns[1]["area"], num_keypoints=0))
    dup = dict(anns[2], id=next_id + 3)
    anns.append(dup)
    # an image without ground truth (predictions there are false positives) and one without predictions
    gt["images"].append(image_record(5000, (640, 480)))
    gt["images"].append(image_record(5001, (640, 480)))
    anns.append(person(next_id + 4, 5001, [50, 50, 200, 300], area=30000.0))

    preds = detector_like_predictions({**gt, "annotations": [a for a in anns if a["image_id"] != 5001]}, seed)
    rng = np.random.default_rng(seed)
    n = len(preds["image_ids"])
    preds["image_ids"][rng.choice(n, 3, replace=False)] = 5000
    # more than 20 results on one image (copies of its people, jittered), and tied scores
    on_first = np.flatnonzero(preds["image_ids"] == first)
    extra = rng.choice(on_first, 25)
    for key in preds:
        preds[key] = np.concatenate([preds[key], preds[key][extra]])
    preds["keypoints"][n:] += rng.normal(0, 2.0, (25, NUM_KEYPOINTS, 2))
    results = results_of(preds)
    results.scores[n : n + 10] = 0.5
    results.scores[rng.choice(n, 8, replace=False)] = 0.5
    # results whose hand scores are all <= 0 (dropped for the hands) and one with no positive score at all
    results.keypoint_scores[:4, PART_SLICES["lefthand"]] = 0.0
    results.keypoint_scores[4:6, PART_SLICES["righthand"]] = -0.3
    results.keypoint_scores[6] = -1.0
    return gt, results


@pytest.mark.parametrize("seed", range(3))
def test_equal_to_xtcocotools_on_every_special_case(tmp_path, seed):
    gt, results = hard_case(seed)
    ann_file = write_json(tmp_path / "gt.json", gt)
    res_file = tmp_path / "res.json"
    res_file.write_bytes(dumps_results_arrays(results))
    ref = reference(ann_file, res_file)
    assert_same(evaluate_parts_fast(parse_annotation_file(ann_file), results), ref)
    assert_same(evaluate_parts_fast(parse_annotation_file(ann_file), read_results_arrays(res_file)), ref)
    assert 0.05 < ref["wholebody"][0] < 0.95 and min(ref[p][3] for p in EVAL_PARTS) >= 0  # non-trivial, APm defined
    file_metrics = evaluate_results_file(ann_file, res_file, num_procs=2)
    assert file_metrics == pytest.approx(summarize_parts(ref), abs=TOL)


def test_use_area_false(tmp_path):
    gt, results = hard_case(7)
    ann_file = write_json(tmp_path / "gt.json", gt)
    res_file = tmp_path / "res.json"
    res_file.write_bytes(dumps_results_arrays(results))
    assert_same(
        evaluate_parts_fast(parse_annotation_file(ann_file), results, use_area=False),
        reference(ann_file, res_file, False),
    )


def test_part_scores_rank_each_part(tmp_path):
    gt = make_wholebody_gt(6, 4, seed=9)
    ann_file = write_json(tmp_path / "gt.json", gt)
    results = results_of(detector_like_predictions(gt, seed=9))
    entries = json.loads(dumps_results_arrays(results))
    rng = np.random.default_rng(0)
    for i, entry in enumerate(entries):  # some results carry part scores, others not (fallback to "score")
        if i % 3:
            entry.update({f"{p}_score": float(rng.uniform()) for p in ("foot", "face", "lefthand", "wholebody")})
    res_file = write_json(tmp_path / "res.json", entries)
    parsed = read_results_arrays(res_file)
    assert set(parsed.part_scores) == {"foot_score", "face_score", "lefthand_score", "wholebody_score"}
    assert np.isnan(parsed.part_scores["face_score"][0]) and not np.isnan(parsed.part_scores["face_score"][1])
    assert_same(evaluate_parts_fast(parse_annotation_file(ann_file), parsed), reference(ann_file, res_file))


def test_perfect_and_empty_results(tmp_path):
    gt = make_wholebody_gt(5, 3, seed=2, missing_parts=("lefthand",))
    ann_file = write_json(tmp_path / "gt.json", gt)
    arrays = parse_annotation_file(ann_file)
    perfect = results_of(gt_as_predictions(gt))
    res_file = tmp_path / "res.json"
    res_file.write_bytes(dumps_results_arrays(perfect))
    ours = evaluate_parts_fast(arrays, perfect)
    assert_same(ours, reference(ann_file, res_file))
    assert ours["body"][0] == 1.0 and (ours["lefthand"] == -1).all()
    empty = KeypointResults(np.zeros(0, np.int64), np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros((0, NUM_KEYPOINTS)),
                            np.zeros(0))  # fmt: skip
    zero = evaluate_parts_fast(arrays, empty)
    assert all(((zero[p] == 0) | (zero[p] == -1)).all() for p in EVAL_PARTS) and zero["body"][0] == 0
    # a single person and no result: AP 0 as well (not -1, which only a category without people gets)
    one = parse_annotation_file(write_json(tmp_path / "one.json", make_wholebody_gt(1, 1, seed=2)))
    assert evaluate_parts_fast(one, empty)["body"][0] == 0


def test_results_json_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    n = 7
    results = KeypointResults(
        rng.integers(1, 9, n),
        rng.uniform(-5, 700, (n, NUM_KEYPOINTS, 2)) / 3,
        rng.uniform(0, 1, (n, NUM_KEYPOINTS)) ** 7,
        rng.uniform(0, 1, n),
    )
    results.keypoints[0, 0] = [1e-5, 3.0]
    path = tmp_path / "r.json"
    path.write_bytes(dumps_results_arrays(results))
    entries = json.loads(path.read_text())
    assert set(entries[0]) == {"image_id", "category_id", "keypoints", "foot_kpts", "face_kpts", "lefthand_kpts",
                               "righthand_kpts", "score"}  # fmt: skip
    back = read_results_arrays(path)
    for name in ("image_ids", "keypoints", "keypoint_scores", "scores"):
        assert np.array_equal(getattr(back, name), getattr(results, name)), name


@pytest.mark.data
def test_real_sample_equal_to_xtcocotools(tmp_path):
    sample = os.environ.get("WBPOSE_SAMPLE_DATA")
    if not sample:
        pytest.skip("WBPOSE_SAMPLE_DATA is not set")
    ann_file = Path(sample) / "test_coco_wholebody.json"
    real = json.loads(ann_file.read_text())
    for seed in range(3):
        results = results_of(detector_like_predictions(real, seed=seed, noise=0.2))
        res_file = tmp_path / f"res{seed}.json"
        res_file.write_bytes(dumps_results_arrays(results))
        assert_same(evaluate_parts_fast(parse_annotation_file(ann_file), results), reference(ann_file, res_file))
    assert_same(
        evaluate_parts_fast(parse_annotation_file(ann_file), results_of(gt_as_predictions(real))),
        {p: v for p, v in reference_perfect(ann_file, real, tmp_path).items()},
    )


def reference_perfect(ann_file: Path, real: dict, tmp_path: Path) -> dict[str, np.ndarray]:
    res_file = tmp_path / "perfect.json"
    res_file.write_bytes(dumps_results_arrays(results_of(gt_as_predictions(real))))
    return reference(ann_file, res_file)


def test_wrapper_forms_of_coco_images_and_categories(tmp_path):
    """Images listed twice keep the last record, as xtcocotools' dict does; no categories: everything -1."""
    gt = make_wholebody_gt(3, 2, seed=4)
    # two images listed twice: the second record (other file name and size) is the one kept, each image once
    first, second = gt["images"][0], gt["images"][1]
    relisted = [dict(first, file_name="relisted_a.jpg", width=first["width"] + 8), dict(second, file_name="b.jpg")]
    twice = coco_wholebody([*gt["images"], *relisted], gt["annotations"])
    twice_file = write_json(tmp_path / "twice.json", twice)
    arrays = parse_annotation_file(twice_file)
    assert arrays.image_ids.tolist() == sorted(im["id"] for im in gt["images"])
    rows = arrays.image_rows(np.array([first["id"], second["id"]]))
    assert arrays.file_names[rows].tolist() == ["relisted_a.jpg", "b.jpg"]
    assert arrays.image_wh[rows[0]].tolist() == [first["width"] + 8, first["height"]]
    ref_coco = COCO(str(twice_file))
    assert (
        len(ref_coco.getImgIds()) == len(gt["images"]) and ref_coco.imgs[first["id"]]["file_name"] == "relisted_a.jpg"
    )
    results = results_of(detector_like_predictions(gt, 4))
    res_file = tmp_path / "twice_res.json"
    res_file.write_bytes(dumps_results_arrays(results))
    once = evaluate_parts_fast(parse_annotation_file(write_json(tmp_path / "once.json", gt)), results)
    assert_same(evaluate_parts_fast(arrays, results), reference(twice_file, res_file))
    assert_same(evaluate_parts_fast(arrays, results), once)  # an image listed twice is not scored twice
    assert 0 < once["wholebody"][0] < 1

    no_cats = coco_wholebody(gt["images"], gt["annotations"])
    del no_cats["categories"]
    ann_file = write_json(tmp_path / "nocat.json", no_cats)
    results = results_of(gt_as_predictions(gt))
    stats = evaluate_parts_fast(parse_annotation_file(ann_file), results)
    assert all((stats[p] == -1).all() for p in EVAL_PARTS)


def xtcocotools_accumulate_row(dtm: np.ndarray, dt_ignored: np.ndarray, num_pos: int) -> tuple[np.ndarray, float]:
    """xtcocotools ``accumulate()`` for one threshold, area range and category, transcribed (its loops)."""
    tps = np.logical_and(dtm, np.logical_not(dt_ignored))
    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ignored))
    tp = np.cumsum(tps).astype(dtype=float)
    fp = np.cumsum(fps).astype(dtype=float)
    nd = len(tp)
    rc = tp / num_pos
    pr = tp / (fp + tp + np.spacing(1))
    q = np.zeros(len(REC_THRS))
    recall = rc[-1] if nd else 0
    pr, q = pr.tolist(), q.tolist()
    for i in range(nd - 1, 0, -1):
        if pr[i] > pr[i - 1]:
            pr[i - 1] = pr[i]
    inds = np.searchsorted(rc, REC_THRS, side="left")
    try:
        for ri, pi in enumerate(inds):
            q[ri] = pr[pi]
    except IndexError:
        pass
    return np.array(q), recall


@pytest.mark.parametrize("seed", range(6))
def test_accumulate_over_true_positives_equals_the_reference_loop(seed):
    rng = np.random.default_rng(seed)
    for nd, p_match, p_ignore in [(0, 0.5, 0.1), (1, 1.0, 0.0), (40, 0.0, 0.2), (300, 0.3, 0.1), (2000, 0.7, 0.3),
                                  (50, 0.5, 1.0)]:  # fmt: skip
        matched = rng.uniform(size=nd) < p_match
        ignored = rng.uniform(size=nd) < p_ignore
        num_pos = max(1, int(matched.sum()) + int(rng.integers(0, 5)))
        precision, recall = _accumulate(matched, ignored, num_pos)
        ref_precision, ref_recall = xtcocotools_accumulate_row(matched, ignored, num_pos)
        assert np.array_equal(precision, ref_precision) and recall == ref_recall


def test_results_file_parsed_in_pieces(tmp_path, monkeypatch):
    """Cut between results (every few results, pretty-printed or compact), the pieces give the same arrays as one
    piece, also when later results are shorter than the first ones (the array sized from the first piece grows); a
    cut that falls inside a nested value makes the parse take the file whole."""
    gt = make_wholebody_gt(20, 4, seed=3)  # enough results for the first piece's estimate to fall short
    results = results_of(detector_like_predictions(gt, seed=3))
    entries = json.loads(dumps_results_arrays(results))
    for entry in entries[len(entries) // 3 :]:  # shorter numbers later in the file: more results per byte
        for field in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"):
            entry[field] = [round(v, 1) for v in entry[field]]
    entries[1]["extra"] = [{"a": 1}, {"b": [2, {"c": 3}]}]  # nested objects (ignored) where a cut may fall
    entries[2]["face_score"] = 0.25
    files = {"compact": write_json(tmp_path / "c.json", entries), "indented": tmp_path / "i.json"}
    files["indented"].write_text(json.dumps(entries, indent=2))
    whole = read_results_arrays(files["compact"])
    assert whole.part_scores["face_score"][2] == 0.25 and np.isnan(whole.part_scores["face_score"][3])
    assert np.array_equal(whole.keypoints[-1, 0], np.round(results.keypoints[-1, 0], 1))
    monkeypatch.setattr(results_io, "RESULTS_CHUNK_BYTES", 3000)  # a result is about 8 kB
    assert len(results_io._result_spans(files["compact"].read_bytes(), 3000)) > 10
    for path in files.values():
        back = read_results_arrays(path)
        for name in ("image_ids", "keypoints", "keypoint_scores", "scores", "category_ids"):
            assert np.array_equal(getattr(back, name), getattr(whole, name)), (path.name, name)
        assert np.array_equal(back.part_scores["face_score"], whole.part_scores["face_score"], equal_nan=True)
    del entries[1]["extra"]  # no cut inside a value now: the pieces are used, and the array grows
    write_json(files["compact"], entries)
    grown = read_results_arrays(files["compact"])
    assert np.array_equal(grown.keypoints, whole.keypoints) and np.array_equal(grown.scores, whole.scores)
    monkeypatch.setattr(results_io, "_decode_span", lambda *a: None)  # nothing unusual is decoded: the plain path
    plain = read_results_arrays(files["compact"])
    assert np.array_equal(plain.keypoints, whole.keypoints) and np.array_equal(plain.scores, whole.scores)


def boundary_case() -> tuple[dict, KeypointResults]:
    """Ground truth and results for the edges of matching, the maxDets cut and categories, on top of random people.

    - every image's best-scored result is far from everyone (no image matches at rank 0, later ranks do);
    - a person with two labelled body points and a result on one of them, far off the other: OKS exactly
      (1 + 0) / 2 = 0.5, the lowest threshold (matches, as ``>=`` in the reference);
    - an image with 21 results whose 21st (lowest score) is the only true one: the maxDets cut drops it;
    - a second category, only large people, on its own image, with results of both categories there, and a
      third with neither;
    - people whose area is exactly 32^2, 96^2 and 1e5^2 and results whose body extent is 32 x 32 and 96 x 96
      (the area ranges include both bounds).
    """
    gt = make_wholebody_gt(num_images=5, people_per_image=3, seed=21)
    gt["categories"].append({**gt["categories"][0], "id": 2, "name": "other"})
    gt["categories"].append({**gt["categories"][0], "id": 3, "name": "nobody"})  # no people, no results
    for ann, area in zip(gt["annotations"][:3], (32.0**2, 96.0**2, 1e5**2)):  # on the area range bounds
        ann["area"] = area
    anns = gt["annotations"]
    next_id = max(a["id"] for a in anns) + 1
    gt["images"] += [image_record(i, (640, 480)) for i in (7000, 7001, 7002)]
    two = np.zeros((NUM_KEYPOINTS, 3))
    two[5], two[11] = [200.0, 150.0, 2], [220.0, 260.0, 2]
    anns.append(person(next_id, 7000, [180, 120, 80, 160], two, area=9000.0))
    anns.append(person(next_id + 1, 7001, [100, 100, 120, 200], area=20000.0, seed=5))
    for k in range(2):
        other = person(next_id + 2 + k, 7002, [50 + 300 * k, 40, 200, 400], area=80000.0, seed=7 + k)
        anns.append({**other, "category_id": 2})
    preds = gt_as_predictions({**gt, "annotations": [a for a in anns if a["image_id"] not in (7000, 7001)]})
    results = results_of(preds)
    rng = np.random.default_rng(21)
    extra_img, extra_kp, extra_score, extra_cat = [], [], [], []
    # 7000: OKS 0.5 exactly (point 5 exact, point 11 some 10^4 px away; the other points are unlabelled)
    kp = rng.uniform(0, 600, (NUM_KEYPOINTS, 2))
    kp[5], kp[11] = two[5, :2], [1e4, 1e4]
    extra_img.append(7000), extra_kp.append(kp), extra_score.append(0.9), extra_cat.append(1)
    # 7001: 20 false results above the true one
    truth = gt_as_predictions({**gt, "annotations": [anns[-3]]})["keypoints"][0]
    for r in range(21):
        extra_img.append(7001)
        extra_kp.append(truth if r == 20 else rng.uniform(-3000, -2000, (NUM_KEYPOINTS, 2)))
        extra_score.append(0.99 - 0.01 * r), extra_cat.append(1)
    # a top false result on every image; on 7002 of category 1 (false) and 2
    for image in gt["images"]:
        for cat in (1, 2) if image["id"] == 7002 else (1,):
            extra_img.append(image["id"])
            extra_kp.append(rng.uniform(5000, 6000, (NUM_KEYPOINTS, 2)))
            extra_score.append(5.0), extra_cat.append(cat)
    results.category_ids = np.where(results.image_ids == 7002, 2, 1).astype(np.int64)
    for row, side in ((3, 32.0), (4, 96.0)):  # body extent boxes on the area bounds
        body = results.keypoints[row, :17]
        body -= body.min(axis=0)
        body *= side / body.max(axis=0)
        body += 100.0
    n = len(extra_img)
    results = KeypointResults(
        np.concatenate([results.image_ids, extra_img]),
        np.concatenate([results.keypoints, np.stack(extra_kp)]),
        np.concatenate([results.keypoint_scores, rng.uniform(0.3, 1.0, (n, NUM_KEYPOINTS))]),
        np.concatenate([results.scores, extra_score]),
        np.concatenate([results.category_ids, extra_cat]),
    )
    return gt, results


def test_equal_to_xtcocotools_at_the_edges_of_matching_and_with_two_categories(tmp_path):
    gt, results = boundary_case()
    ann_file = write_json(tmp_path / "gt.json", gt)
    entries = json.loads(dumps_results_arrays(results))
    for entry, category in zip(entries, results.category_ids.tolist()):  # the file's categories, from the arrays
        entry["category_id"] = category
    res_file = write_json(tmp_path / "res.json", entries)
    ref = reference(ann_file, res_file)
    ours = evaluate_parts_fast(parse_annotation_file(ann_file), results)
    assert_same(ours, ref)
    # the cases took effect: the result on 7000 has OKS exactly 0.5 in xtcocotools ...
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco_gt = COCO(str(ann_file))
        ev = COCOeval(coco_gt, coco_gt.loadRes(str(res_file)), "keypoints_body", sigmas_array()[:17], use_area=True)
        ev.params.imgIds = [7000]
        ev.evaluate()
    assert sorted(np.asarray(ev.ious[(7000, 1)]).ravel().tolist()) == [0.0, 0.5]
    # ... and without the 20 false results above it, the true result on 7001 would count
    keep = ~((results.image_ids == 7001) & (results.scores > 0.795))
    kept = KeypointResults(*(np.asarray(a)[keep] for a in (results.image_ids, results.keypoints,
                             results.keypoint_scores, results.scores, results.category_ids)))  # fmt: skip
    res_kept = write_json(tmp_path / "res_kept.json", [e for e, k in zip(entries, keep) if k])
    assert len(kept) == len(json.loads(res_kept.read_text()))
    assert reference(ann_file, res_kept)["body"][5] > ref["body"][5]


def test_evaluate_part_fast_is_one_part_of_evaluate_parts_fast(tmp_path):
    gt, results = hard_case(7)
    arrays = parse_annotation_file(write_json(tmp_path / "gt.json", gt))
    for use_area in (True, False):
        every = evaluate_parts_fast(arrays, results, use_area=use_area)
        for part in EVAL_PARTS:
            np.testing.assert_array_equal(evaluate_part_fast(arrays, results, part, use_area=use_area), every[part])
    default = evaluate_part_fast(arrays, results, "wholebody")
    np.testing.assert_array_equal(default, evaluate_parts_fast(arrays, results, use_area=True)["wholebody"])
    assert not np.array_equal(default, evaluate_parts_fast(arrays, results, use_area=False)["wholebody"])


def test_parts_with_equal_selections_but_other_scores_rank_on_their_own(tmp_path):
    """A face score ordered as the score within each image but not across images: the face selects the same
    results in the same order per image as the body, yet its accumulation must sort by its own scores."""
    gt = make_wholebody_gt(6, 3, seed=4)
    ann_file = write_json(tmp_path / "gt.json", gt)
    results = results_of(detector_like_predictions(gt, seed=4))
    entries = json.loads(dumps_results_arrays(results))
    for entry in entries:
        entry["face_score"] = entry["score"] + (entry["image_id"] % 2)
    res_file = write_json(tmp_path / "res.json", entries)
    ref = reference(ann_file, res_file)
    assert_same(evaluate_parts_fast(parse_annotation_file(ann_file), read_results_arrays(res_file)), ref)
    without = write_json(
        tmp_path / "res_plain.json", [{k: v for k, v in e.items() if k != "face_score"} for e in entries]
    )
    assert reference(ann_file, without)["face"][0] != ref["face"][0]  # the face score does change the face AP


def test_missing_area_is_named_with_the_file_and_the_first_annotation(tmp_path):
    gt = make_wholebody_gt(3, 2, seed=1)
    for ann in gt["annotations"][2:4]:
        del ann["area"]
    ann_file = write_json(tmp_path / "gt.json", gt)
    arrays = parse_annotation_file(ann_file)
    results = results_of(gt_as_predictions(gt))
    first = gt["annotations"][2]["id"]
    message = f"{ann_file}: annotation id {first} has no 'area' (use_area=True)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        evaluate_parts_fast(arrays, results)
    assert evaluate_parts_fast(arrays, results, use_area=False)["body"][0] == 1.0  # 0.53 w h instead


def oks_edge_case() -> tuple[dict, KeypointResults]:
    """People and results at the edges of the OKS and of its skipping bound, on images of their own.

    - two people labelled only at both hips, on one spot, and a result with every point ``d`` px off it (d = 1.2,
      1.6), ``area = d^2 / var``: every ``e`` equals the bound exactly (0.5, OKS 0.61), a pair the bound must keep;
    - a wide person without labelled points and a result inside its doubled box, far from the box itself (OKS 1);
    - a person of area 0 and a result near, not on, its points (OKS 0, not inf);
    - a person with one labelled face point and a result on it within OKS 0.7 (not the doubled-box rule).
    """
    var = (2 * sigmas_array()) ** 2
    gt = coco_wholebody([image_record(8000 + i, (640, 480)) for i in range(5)], [])
    kp_rows, image_ids = [], []
    rng = np.random.default_rng(5)

    def add(image_id, bbox, keypoints, area, result):
        gt["annotations"].append(person(len(gt["annotations"]) + 1, image_id, bbox, keypoints, area=area))
        kp_rows.append(result)
        image_ids.append(image_id)

    for i, d in enumerate((1.2, 1.6)):
        hips = np.zeros((NUM_KEYPOINTS, 3))
        hips[[11, 12]] = [300.0, 200.0, 2]
        result = np.tile([300.0 + d, 200.0], (NUM_KEYPOINTS, 1))  # every point: the box gap is d too
        add(8000 + i, [290, 190, 20, 20], hips, d * d / var[11], result)
    add(8002, [300, 200, 200, 40], np.zeros((NUM_KEYPOINTS, 3)), 8000.0, rng.uniform(0, 1, (NUM_KEYPOINTS, 2))
        * [40, 60] + [120, 180])  # fmt: skip
    zero = np.zeros((NUM_KEYPOINTS, 3))
    zero[:17] = np.c_[rng.uniform(100, 200, (17, 2)), np.full(17, 2)]
    add(8003, [100, 100, 100, 100], zero, 0.0, np.r_[zero[:17, :2] + 0.5, rng.uniform(100, 200, (116, 2))])
    face = np.zeros((NUM_KEYPOINTS, 3))
    face[5:7] = [[400.0, 300.0, 2], [420.0, 300.0, 2]]  # two body points keep the body part labelled
    face[40] = [410.0, 250.0, 1.0]
    result = face[:, :2] + rng.uniform(-60, 60, (NUM_KEYPOINTS, 2)) * (face[:, 2:] == 0)
    result[40, 0] += np.sqrt(-np.log(0.7) * 2 * var[40] * 5000.0)
    add(8004, [380, 220, 60, 120], face, 5000.0, result)
    n = len(kp_rows)
    results = KeypointResults(np.array(image_ids), np.stack(kp_rows), np.full((n, NUM_KEYPOINTS), 0.9), np.full(n, 0.8))
    return gt, results


@pytest.mark.parametrize("chunk", [None, 2 * NUM_KEYPOINTS])
def test_equal_to_xtcocotools_at_the_edges_of_the_oks(tmp_path, chunk, monkeypatch):
    """Also with the pairs' OKS computed 2 pairs at a time (and the results' point boxes one result at a time)."""
    if chunk:
        monkeypatch.setattr(cocoeval_oks, "CHUNK_ELEMENTS", chunk)
        monkeypatch.setattr(keypoint_results, "CHUNK_ELEMENTS", chunk)
    gt, results = oks_edge_case()
    ann_file = write_json(tmp_path / "gt.json", gt)
    res_file = tmp_path / "res.json"
    res_file.write_bytes(dumps_results_arrays(results))
    ref = reference(ann_file, res_file)
    assert_same(evaluate_parts_fast(parse_annotation_file(ann_file), results), ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco_gt = COCO(str(ann_file))
        coco_dt = coco_gt.loadRes(str(res_file))
        ious = {}
        for part in ("body", "face"):
            ev = COCOeval(coco_gt, coco_dt, f"keypoints_{part}", sigmas_array()[EVAL_PARTS[part]], use_area=True)
            ev.evaluate()
            ious[part] = {img: float(np.asarray(ev.ious[(img, 1)]).ravel()[0]) for img in range(8000, 8005)}
    assert ious["body"][8000] == pytest.approx(np.exp(-0.5)) and ious["body"][8001] == pytest.approx(np.exp(-0.5))
    assert ious["body"][8002] == 1.0 and ious["body"][8003] == 0.0 and ious["face"][8004] == pytest.approx(0.7)


def test_people_counts_round_up_to_few_block_sizes():
    """Images are matched in blocks of equal people counts: 1, 2, 3, then 2^k * (2 or 3), up to 6144 people."""
    counts = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17, 25, 70, 1025, 6144])
    expected = [1, 2, 3, 4, 6, 6, 8, 8, 12, 16, 24, 32, 96, 1536, 6144]
    assert _size_class(counts).tolist() == expected

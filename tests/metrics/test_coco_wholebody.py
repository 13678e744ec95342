"""CocoWholeBodyMetric and the functional evaluation API on small synthetic COCO-WholeBody files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

from helpers.annotations import make_wholebody_gt, write_json
from helpers.predictions import detector_like_predictions, gt_as_predictions, random_predictions, selection_args
from wbpose.keypoints import PART_FIELDS, sigmas_array
from wbpose.metrics import CocoWholeBodyMetric, evaluate_results_file, format_table, read_results_file
from wbpose.metrics.evaluation import REPORTED_PARTS, STAT_NAMES
from wbpose.metrics.oks import select_people

PARTS = {"body": (0, 17), "foot": (17, 23), "face": (23, 91), "lefthand": (91, 112), "righthand": (112, 133)}
PARTS["wholebody"] = (0, 133)


def as_tensors(preds: dict[str, np.ndarray], idx=slice(None)) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v[idx]) for k, v in preds.items()}


def scored(ann_file: Path, preds: dict[str, np.ndarray], **kwargs) -> dict[str, float]:
    metric = CocoWholeBodyMetric(ann_file, **kwargs)
    metric.update(**as_tensors(preds))
    return {k: float(v) for k, v in metric.compute().items()}


def direct_xtcocotools(ann_file: Path, results_json: Path) -> dict[str, np.ndarray]:
    """The six evaluations exactly as MMPose calls them, on the file."""
    coco_gt = COCO(str(ann_file))
    coco_dt = coco_gt.loadRes(str(results_json))
    stats = {}
    for part, (start, stop) in PARTS.items():
        coco_eval = COCOeval(coco_gt, coco_dt, f"keypoints_{part}", sigmas_array()[start:stop], use_area=True)
        coco_eval.params.useSegm = None
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        stats[part] = np.asarray(coco_eval.stats)
    return stats


@pytest.fixture(scope="module")
def gt() -> dict:
    return make_wholebody_gt(num_images=4, people_per_image=4, seed=3)


@pytest.fixture()
def ann_file(tmp_path: Path, gt: dict) -> Path:
    return write_json(tmp_path / "coco_wholebody_val_v1.0.json", gt)


def test_ground_truth_as_predictions_scores_one_everywhere(ann_file, gt):
    metrics = scored(ann_file, gt_as_predictions(gt))
    assert set(metrics) == {f"val/{p}_{s}" for p in REPORTED_PARTS for s in STAT_NAMES}
    assert metrics == {k: 1.0 for k in metrics}


@pytest.mark.filterwarnings("ignore:'.*_score' not found:UserWarning")
def test_numbers_equal_a_direct_xtcocotools_run_on_the_results_file(ann_file, gt, tmp_path):
    outfile = tmp_path / "out" / "results.keypoints.json"
    metric = CocoWholeBodyMetric(ann_file, prefix="test", outfile=outfile)
    metric.update(**as_tensors(detector_like_predictions(gt, seed=1)))
    metrics = metric.compute()
    assert metric.results_file == outfile and [p.name for p in outfile.parent.iterdir()] == [outfile.name]
    direct = direct_xtcocotools(ann_file, outfile)
    for part, stats in direct.items():
        for i, name in enumerate(STAT_NAMES):
            assert float(metrics[f"test/{part}_{name}"]) == pytest.approx(stats[i], abs=1e-9)
    hand = (direct["lefthand"] + direct["righthand"]) / 2
    assert float(metrics["test/hand_ap"]) == pytest.approx(hand[0], abs=1e-12)
    assert 0.05 < float(metrics["test/wholebody_ap"]) < 0.95  # a realistic, non-trivial case
    entry = json.loads(outfile.read_text())[0]
    assert set(entry) == {"image_id", "category_id", "score", *PART_FIELDS.values()}
    assert [len(entry[f]) for f in PART_FIELDS.values()] == [51, 18, 204, 63, 63]


@pytest.mark.filterwarnings("ignore:.*compute.*before the ``update``:UserWarning")
def test_predictions_split_across_ranks_with_padding_give_single_rank_numbers(ann_file, gt):
    preds = detector_like_predictions(gt, seed=2)
    n = len(preds["instance_ids"])
    single = scored(ann_file, preds, num_procs=1)
    # DistributedSampler: rank r takes r::3 of the list padded with its first items (duplicate instance ids).
    padded = np.concatenate([np.arange(n), np.arange((-n) % 3 + 3)])
    ranks = [CocoWholeBodyMetric(ann_file, num_procs=1) for _ in range(3)]
    for rank, metric in enumerate(ranks):
        idx = padded[rank::3]
        for batch in np.array_split(idx, 3):
            metric.update(**as_tensors(preds, batch))
    gathered = CocoWholeBodyMetric(ann_file, num_procs=2)  # as after all_gather with dist_reduce_fx="cat"
    for name in ("instance_ids", "image_ids", "keypoints", "keypoint_scores", "bbox_scores", "areas"):
        setattr(gathered, name, torch.cat([torch.cat(getattr(m, name)) for m in ranks]))
    assert {k: float(v) for k, v in gathered.compute().items()} == single
    ranks[2].merge_state(ranks[0])
    ranks[2].merge_state(ranks[1])
    assert {k: float(v) for k, v in ranks[2].compute().items()} == single


def test_evaluate_results_file_reads_mmpose_formats(ann_file, gt, tmp_path):
    metric = CocoWholeBodyMetric(ann_file, prefix="", num_procs=1, outfile=tmp_path / "ours.json")
    metric.update(**as_tensors(detector_like_predictions(gt, seed=4)))
    ours = {k: float(v) for k, v in metric.compute().items()}
    results = json.loads(metric.results_file.read_text())
    for entry in results:  # MMPose 0.x extras; no category_id
        entry.update(center=[1.0, 2.0], scale=[3.0, 4.0])
        del entry["category_id"]
    mmpose_file = write_json(tmp_path / "result_keypoints.json", results)
    assert evaluate_results_file(ann_file, mmpose_file) == ours
    assert evaluate_results_file(ann_file, mmpose_file, engine="xtcocotools") == ours
    assert "center" not in read_results_file(mmpose_file)[0]


def test_score_results_script(ann_file, gt, tmp_path, capsys):
    from wbpose.app import score as script

    metric = CocoWholeBodyMetric(ann_file, outfile=tmp_path / "res.json", num_procs=1)
    metric.update(**as_tensors(gt_as_predictions(gt)))
    metric.compute()
    assert script.main([str(ann_file), str(tmp_path / "res.json"), "--out", str(tmp_path / "m.json")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| Body AP | Body AR | Foot AP") and table[2].count("1.000") == 10
    written = json.loads((tmp_path / "m.json").read_text())
    assert len(written) == 70 and written["hand_ar"] == 1.0
    bad = write_json(tmp_path / "bad.json", [{**json.loads((tmp_path / "res.json").read_text())[0], "image_id": 7}])
    assert script.main([str(ann_file), str(bad)]) == 1
    err = capsys.readouterr().err
    assert "7" in err and str(ann_file) in err


@pytest.mark.filterwarnings("ignore:.*compute.*before the ``update``:UserWarning")
def test_no_predictions_scores_zero(ann_file):
    metrics = CocoWholeBodyMetric(ann_file, num_procs=1).compute()
    assert all(float(v) == 0.0 for v in metrics.values())


def test_missing_parts_give_minus_one_and_hand_uses_the_labelled_side(tmp_path):
    no_hands = make_wholebody_gt(3, 3, seed=5, missing_parts=("lefthand", "righthand"))
    metrics = scored(write_json(tmp_path / "a.json", no_hands), gt_as_predictions(no_hands), num_procs=1)
    for part in ("lefthand", "righthand", "hand"):
        assert all(metrics[f"val/{part}_{s}"] == -1.0 for s in STAT_NAMES)
    assert metrics["val/body_ap"] == metrics["val/wholebody_ap"] == 1.0
    no_left = make_wholebody_gt(3, 3, seed=5, missing_parts=("lefthand",))
    metrics = scored(write_json(tmp_path / "b.json", no_left), detector_like_predictions(no_left), num_procs=1)
    assert metrics["val/lefthand_ap"] == -1.0 and metrics["val/hand_ap"] == metrics["val/righthand_ap"] >= 0
    assert "-" in format_table(
        {k.split("/")[1]: v for k, v in scored(tmp_path / "a.json", gt_as_predictions(no_hands), num_procs=1).items()}
    )


def test_annotation_file_without_people(tmp_path, gt):
    empty = {**gt, "annotations": []}
    metrics = scored(write_json(tmp_path / "empty.json", empty), detector_like_predictions(gt), num_procs=1)
    assert all(v == -1.0 for v in metrics.values())


def test_unknown_image_ids_are_named(ann_file, gt):
    preds = gt_as_predictions(gt)
    preds["image_ids"][[0, 3]] = [555, 777]
    metric = CocoWholeBodyMetric(ann_file)
    metric.update(**as_tensors(preds))
    with pytest.raises(ValueError, match=r"2 image id\(s\).*coco_wholebody_val_v1.0.json.*555, 777"):
        metric.compute()


def test_update_validates_shapes_and_values(ann_file, gt):
    metric = CocoWholeBodyMetric(ann_file)
    preds = as_tensors(gt_as_predictions(gt))
    with pytest.raises(ValueError, match=r"keypoints \(N, 133, 2\).*got"):
        metric.update(**{**preds, "keypoints": preds["keypoints"][:, :17]})
    with pytest.raises(ValueError, match=r"areas \(N,\)"):
        metric.update(**{**preds, "areas": preds["areas"][:-1]})
    bad = preds["keypoints"].clone()
    bad[2, 5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf in \['keypoints'\] for instance ids \[2\]"):
        metric.update(**{**preds, "keypoints": bad})
    assert metric.instance_ids == []  # nothing stored from rejected batches


def test_results_file_with_nan_is_rejected(ann_file, tmp_path, gt):
    entry = {"image_id": gt["images"][0]["id"], "category_id": 1, "score": 1.0}
    entry.update({f: [0.0] * (3 * n) for f, n in zip(PART_FIELDS.values(), (17, 6, 68, 21, 21))})
    entry["face_kpts"][4] = float("nan")
    with pytest.raises(ValueError, match="non-finite.*face_kpts.*#0"):
        evaluate_results_file(ann_file, write_json(tmp_path / "nan.json", [entry]))


def test_format_table_row():
    metrics = {f"{p}_{s}": 0.5 for p in REPORTED_PARTS for s in STAT_NAMES} | {"wholebody_ar": 0.6614}
    lines = format_table(metrics).splitlines()
    assert (
        lines[0]
        == "| Body AP | Body AR | Foot AP | Foot AR | Face AP | Face AR | Hand AP | Hand AR | Whole AP | Whole AR |"
    )
    assert lines[2].split("|")[-2].strip() == "0.661" and len(lines) == 3


@pytest.mark.data
def test_real_sample_annotations_as_predictions():
    sample = os.environ.get("WBPOSE_SAMPLE_DATA")
    if not sample:
        pytest.skip("WBPOSE_SAMPLE_DATA is not set")
    ann_file = Path(sample) / "test_coco_wholebody.json"
    real = json.loads(ann_file.read_text())
    metrics = scored(ann_file, gt_as_predictions(real), num_procs=1)
    assert metrics["val/wholebody_ap"] == metrics["val/hand_ar"] == 1.0
    assert all(v == pytest.approx(1.0) or v == -1.0 for v in metrics.values())  # -1: e.g. no medium-size face


def _failing_writer(path, results):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("engine", ["fast", "xtcocotools"])
def test_broken_worker_pool_falls_back_to_sequential(ann_file, gt, monkeypatch, engine, tmp_path):
    """xtcocotools engine: the parts of a dead worker are evaluated here. Fast engine (whose writer thread writes
    the results json while the evaluation runs here): when the thread fails, the json is written here."""
    import wbpose.metrics.evaluation as evaluation
    import wbpose.metrics.reference as reference

    preds = detector_like_predictions(gt, seed=6)
    expected = scored(ann_file, preds, num_procs=1, engine=engine, outfile=tmp_path / "one.json")
    if engine == "fast":
        monkeypatch.setattr(evaluation, "_write_shared_results", _failing_writer)
    else:
        monkeypatch.setattr(reference, "_WORKER_CODE", "import os; os._exit(1)")  # every worker dies at start
    match = "writing it here" if engine == "fast" else "running the remaining parts"
    with pytest.warns(UserWarning, match=match):
        assert scored(ann_file, preds, num_procs=2, engine=engine, outfile=tmp_path / "two.json") == expected
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()


@pytest.mark.parametrize("engine", ["fast", "xtcocotools"])
def test_verbose_prints_xtcocotools_tables_in_part_order(ann_file, gt, capsys, engine):
    scored(ann_file, gt_as_predictions(gt), num_procs=2, verbose=True, engine=engine)
    out = capsys.readouterr().out
    headers = [out.index(f"== keypoints_{part} ==") for part in PARTS]
    assert headers == sorted(headers) and out.count("Average Precision") == 6 * 5


def test_malformed_annotation_file_names_file_and_record(tmp_path, gt):
    """The metric reads ground truth with the dataset's loader: a broken record is named, not a deep traceback."""
    from wbpose.data.errors import DataError
    from wbpose.metrics.evaluation import load_coco_gt, load_gt_arrays

    broken = {**gt, "images": [{k: v for k, v in gt["images"][0].items() if k != "width"}, *gt["images"][1:]]}
    path = write_json(tmp_path / "broken.json", broken)
    for load in (load_coco_gt, load_gt_arrays):
        with pytest.raises(DataError, match=r"broken.json: image #0 .* has no field 'width'"):
            load(path)
        with pytest.raises(DataError, match="annotation file not found: .*missing.json"):
            load(tmp_path / "missing.json")


def test_float32_inputs_give_the_float64_numbers_on_both_engines(ann_file, gt):
    """A model's float32 outputs are stored as float32 (half the memory) and scored exactly."""
    preds = detector_like_predictions(gt, seed=8)
    p32 = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in preds.items()}
    p64 = {k: v.astype(np.float32).astype(np.float64) if v.dtype == np.float64 else v for k, v in preds.items()}
    fast32 = scored(ann_file, p32, num_procs=1)
    assert fast32 == scored(ann_file, p64, num_procs=1)
    reference = scored(ann_file, p64, num_procs=1, engine="xtcocotools")
    assert max(abs(fast32[k] - reference[k]) for k in reference) <= 1e-12


def test_update_keeps_copies_not_the_callers_storage(tmp_path: Path) -> None:
    """Batch fields from loader workers live in shared memory; the metric must not keep those mappings alive."""
    ann_file = tmp_path / "gt.json"
    write_json(ann_file, make_wholebody_gt(num_images=1, people_per_image=1))
    metric = CocoWholeBodyMetric(ann_file)
    big = torch.zeros(4096, 133 * 3)  # one storage holding far more than the fields below
    fields = (
        torch.arange(4), torch.ones(4, dtype=torch.int64), big[:4, :266].reshape(4, 133, 2), big[4:8, :133],
        big[8:12, 0], big[12:16, 0] + 1,
    )  # fmt: skip
    metric.update(*fields)
    for name in ("instance_ids", "image_ids", "keypoints", "keypoint_scores", "bbox_scores", "areas"):
        (stored,) = getattr(metric, name)
        assert stored.untyped_storage().nbytes() == stored.numel() * stored.element_size(), name
    big.fill_(7.0)  # the caller reuses its buffer: the stored values do not change
    assert float(metric.keypoints[0].abs().max()) == 0.0


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset root (6 train, 3 val images)."""
    from wbpose.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("metric_selection_synthetic")
    generate_dataset(root, num_train=6, num_val=3, seed=0)
    return root


def test_metric_results_are_the_selected_people(small_synthetic, tmp_path):
    """The metric's results file holds exactly select_people's people, in its order, with its scores."""
    from wbpose.data.layout import VAL_ANN
    from wbpose.metrics import CocoWholeBodyMetric

    ann_file = small_synthetic / VAL_ANN
    image_ids = [img["id"] for img in json.loads(ann_file.read_text())["images"]]
    preds = random_predictions(11, num_images=len(image_ids))
    remap = dict(zip(sorted(np.unique(preds["image_ids"]).tolist()), image_ids))
    preds["image_ids"] = np.asarray([remap[int(i)] for i in preds["image_ids"]])
    metric = CocoWholeBodyMetric(ann_file, num_procs=1, outfile=tmp_path / "results.json")
    half = len(preds["image_ids"]) // 2  # two updates, like two batches
    for part in (slice(0, half), slice(half, None)):
        metric.update(**{k: torch.as_tensor(v[part]) for k, v in preds.items()})
    metric.compute()
    results = json.loads((tmp_path / "results.json").read_text())
    keep, scores = select_people(*selection_args(preds), instance_ids=preds["instance_ids"])
    assert [r["image_id"] for r in results] == preds["image_ids"][keep].tolist()
    assert [r["score"] for r in results] == scores.tolist()
    body = np.asarray([r["keypoints"] for r in results]).reshape(len(results), 17, 3)
    np.testing.assert_array_equal(body[..., :2], preds["keypoints"][keep][:, :17])

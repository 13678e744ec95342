"""Bad input: every case raises a DataError naming the file and the record, or is skipped with a logged count.

Decisions: a missing or corrupt image is a setup error (raise when the sample is read, naming the file, the
image id and the instance id); malformed or empty json and detections for unknown images raise at load time;
zero-size boxes are skipped and counted (MMPose 1.x drops them too); NaN/infinite boxes and scores and negative
scores are dropped, and NaN/infinite keypoints made unlabelled, counted and warned about with the record ids.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from helpers.annotations import coco_wholebody, person, write_images, write_json, write_root
from wbpose.codecs import MSRAHeatmap
from wbpose.data.annotations import load_instances
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.data.errors import DataError

INPUT_WH = (48, 64)


def load(ann: Path, img_dir: Path, **kw) -> CocoWholeBodyDataset:
    return CocoWholeBodyDataset(ann, img_dir, INPUT_WH, **kw)


def one_person_root(tmp_path: Path, **edits) -> tuple[Path, Path]:
    """Annotation file with two good people on image 1; ``edits`` update person id 1."""
    images = write_images(tmp_path / "img", [1])
    ann = person(1, 1, [10, 10, 50, 90])
    ann.update(edits)
    data = coco_wholebody(images, [ann, person(2, 1, [60, 10, 50, 90])])
    return write_json(tmp_path / "ann.json", data), tmp_path / "img"


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


def test_missing_image_file(tmp_path: Path) -> None:
    ann, img_dir = one_person_root(tmp_path)
    (img_dir / "000000000001.jpg").unlink()
    ds = load(ann, img_dir)  # images are checked when read, not at load time
    with pytest.raises(DataError, match=r"missing image file .*000000000001\.jpg.*image_id 1, instance_id 1"):
        ds[0]


def test_corrupt_jpeg(tmp_path: Path) -> None:
    ann, img_dir = one_person_root(tmp_path)
    path = img_dir / "000000000001.jpg"
    path.write_bytes(path.read_bytes()[:20] + b"\x00" * 50)  # truncated: cv2.imread returns None
    with pytest.raises(DataError, match=r"cannot decode image .*000000000001\.jpg.*image_id 1"):
        load(ann, img_dir)[0]


def test_image_size_differs_from_annotation(tmp_path: Path) -> None:
    ann, img_dir = one_person_root(tmp_path)
    data = json.loads(ann.read_text())
    data["images"][0]["width"] = 200
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"decodes to 160x120 but the annotation file says 200x120"):
        load(ann, img_dir)[0]


def test_missing_keypoint_field(tmp_path: Path) -> None:
    ann, img_dir = one_person_root(tmp_path)
    data = json.loads(ann.read_text())
    del data["annotations"][1]["face_kpts"]
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"ann\.json: annotation id 2 field 'face_kpts' is missing"):
        load(ann, img_dir)


def test_keypoint_field_of_wrong_length(tmp_path: Path) -> None:
    ann, img_dir = one_person_root(tmp_path, foot_kpts=[0.0] * 15)
    with pytest.raises(DataError, match=r"annotation id 1 field 'foot_kpts' is of length 15; expected .* 18"):
        load(ann, img_dir)


@pytest.mark.parametrize(
    ("edits", "match"),
    [
        ({"bbox": [1, 2, 3]}, r"annotation id 1 field 'bbox' must be \[x, y, w, h\]"),
        ({"keypoints": ["a"] * 51}, r"annotation id 1 has non-numeric keypoint values"),
        ({"image_id": 99}, r"annotation id 1 has image_id 99, which is not in 'images'"),
    ],
)
def test_malformed_annotation(tmp_path: Path, edits: dict, match: str) -> None:
    ann, img_dir = one_person_root(tmp_path, **edits)
    with pytest.raises(DataError, match=match):
        load(ann, img_dir)


def test_missing_required_fields(tmp_path: Path) -> None:
    ann, img_dir = one_person_root(tmp_path)
    data = json.loads(ann.read_text())
    del data["annotations"][0]["num_keypoints"]
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation id 1 has no field 'num_keypoints'"):
        load(ann, img_dir)
    del data["annotations"][0]["image_id"]
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation #0 \(id 1\) has no field 'image_id'"):
        load(ann, img_dir)
    data = json.loads(one_person_root(tmp_path)[0].read_text())
    del data["images"][0]["file_name"]
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"image #0 \(id 1\) has no field 'file_name'"):
        load(ann, img_dir)


def test_zero_size_boxes_are_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ann, img_dir = one_person_root(tmp_path, bbox=[20, 20, 30, -1])
    with caplog.at_level(logging.INFO, logger="wbpose.data.annotations"):
        ds = load(ann, img_dir)
    assert len(ds) == 1 and ds.skipped["invalid_box"] == 1
    assert "'invalid_box': 1" in caplog.text
    boxes = ([5, 5, 0, 9], [5, 5, 9, 9])
    dets = write_json(
        tmp_path / "det.json", [{"image_id": 1, "category_id": 1, "bbox": b, "score": 1.0} for b in boxes]
    )
    det = load(ann, img_dir, bbox_source="det", det_file=dets)
    assert det.instances.instance_ids.tolist() == [1] and det.skipped["invalid_box"] == 1


def test_detections_for_unknown_images(tmp_path: Path) -> None:
    ann, img_dir = one_person_root(tmp_path)
    dets = [{"image_id": i, "category_id": 1, "bbox": [5, 5, 9, 9], "score": 1.0} for i in (1, 7, 8)]
    det_file = write_json(tmp_path / "det.json", dets)
    with pytest.raises(
        DataError, match=r"det\.json has person boxes for 2 image id\(s\) absent from .*ann\.json: \[7, 8\]"
    ):
        load(ann, img_dir, bbox_source="det", det_file=det_file)


@pytest.mark.parametrize(
    ("dets", "match"),
    [
        ({"image_id": 1}, r"det\.json: expected a json list"),
        ([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}], r"detection #0 \(id \?\) has no field 'score'"),
        ([{"image_id": 1, "category_id": 1, "bbox": [1, 1], "score": 1}], r"detection #0 field 'bbox' must be"),
    ],
)
def test_malformed_detections(tmp_path: Path, dets: object, match: str) -> None:
    ann, img_dir = one_person_root(tmp_path)
    det_file = write_json(tmp_path / "det.json", dets)
    with pytest.raises(DataError, match=match):
        load(ann, img_dir, bbox_source="det", det_file=det_file)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"images": [], "annotations": []}, r"empty\.json has no images \('images' is empty or not a list\)"),
        ({"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}]}, r"has no annotations .*missing"),
        ([1, 2], r"empty\.json: expected a json object, got a list"),
    ],
)
def test_empty_annotation_file(tmp_path: Path, data: object, match: str) -> None:
    path = write_json(tmp_path / "empty.json", data)
    with pytest.raises(DataError, match=match):
        load(path, tmp_path)


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [1, 2')
    with pytest.raises(DataError, match=r"broken\.json is not valid json"):
        load(path, tmp_path)
    ann, img_dir = one_person_root(tmp_path)
    (tmp_path / "det.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(DataError, match=r"det\.json is not valid json"):
        load(ann, img_dir, bbox_source="det", det_file=tmp_path / "det.json")


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"annotation file not found: .*nope\.json"):
        load(tmp_path / "nope.json", tmp_path)
    ann, img_dir = one_person_root(tmp_path)
    with pytest.raises(DataError, match=r"detection file not found: .*dets\.json"):
        load(ann, img_dir, bbox_source="det", det_file=tmp_path / "dets.json")
    with pytest.raises(ValueError, match="det_file"):
        load(ann, img_dir, bbox_source="det")


def test_nothing_left_after_filtering(tmp_path: Path) -> None:
    write_root(tmp_path)
    data = json.loads((tmp_path / "annotations/coco_wholebody_train_v1.0.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] in (4, 5)]
    ann = write_json(tmp_path / "only_bad.json", data)
    with pytest.raises(DataError, match=r"only_bad\.json: no instances left after filtering .*'crowd': 1"):
        load(ann, tmp_path / "train2017")


def test_duplicate_annotation_ids(tmp_path: Path) -> None:
    ann, img_dir = one_person_root(tmp_path, id=2)
    with pytest.raises(DataError, match="not unique"):
        load(ann, img_dir)


def test_nonfinite_boxes_and_scores_in_a_detection_file_are_dropped_and_counted(tmp_path: Path, caplog) -> None:
    """NaN/Infinity (as Python's json writes them), negative scores and negative-size boxes: dropped at load time,
    counted by reason, and warned about with the file and the detection numbers; score 0 is kept (det_score_thr=0)."""
    ann, img_dir = one_person_root(tmp_path)
    nan, inf = float("nan"), float("inf")
    records = [
        ([5, 5, 20, 30], 0.9),  # 0 good
        ([nan, 5, 20, 30], 0.9),  # 1 non-finite x
        ([5, inf, 20, 30], 0.9),  # 2 non-finite y
        ([5, 5, -inf, 30], 0.9),  # 3 non-finite w
        ([5, 5, 20, nan], 0.9),  # 4 non-finite h
        ([5, 5, 20, 30], nan),  # 5 non-finite score
        ([5, 5, 20, 30], inf),  # 6 non-finite score
        ([5, 5, 20, 30], -0.5),  # 7 negative score
        ([5, 5, -5, 30], 0.9),  # 8 negative width
        ([5, 5, 20, 0], 0.9),  # 9 zero height
        ([6, 7, 20, 30], 0.0),  # 10 score 0: kept
    ]
    dets = [{"image_id": 1, "category_id": 1, "bbox": b, "score": s} for b, s in records]
    dets.append({"image_id": 1, "category_id": 2, "bbox": [nan] * 4, "score": 0.5})  # 11 not a person: not counted
    det_file = tmp_path / "det.json"
    det_file.write_text(json.dumps(dets))  # json.dumps writes NaN and Infinity
    for cache_dir in (None, tmp_path / "cache", tmp_path / "cache"):  # parsed, built into the cache, read from it
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wbpose.data.annotations"):
            table = load_instances(ann, "det", det_file, cache_dir=cache_dir)
        assert table.instance_ids.tolist() == [0, 10]
        assert np.isfinite(table.bbox_xyxy).all() and np.isfinite(table.center_xy).all()
        assert np.isfinite(table.bbox_scores).all() and table.bbox_scores.tolist() == pytest.approx([0.9, 0.0])
        assert table.invalid == {"nonfinite_box": 4, "nonfinite_score": 2, "negative_score": 1}
        assert table.skipped == {"other_category": 1, "below_score_thr": 0, "invalid_box": 2}
        text = caplog.text
        assert (
            f"{det_file}: dropped 4 detection(s) whose bbox has a NaN or infinite number (detections # 1, 2, 3, 4)"
            in text
        )
        assert "dropped 2 detection(s) whose score is NaN or infinite (detections # 5, 6)" in text
        assert "dropped 1 detection(s) with a negative score (detections # 7)" in text
        assert "skipped 2 detection(s) with a box of zero or negative width or height (detections # 8, 9)" in text


def test_nonfinite_annotation_values_are_counted(tmp_path: Path, caplog) -> None:
    """A keypoint with a NaN/Infinity x, y or v becomes unlabelled (the person keeps the others); a NaN box drops the
    person; an infinite area falls back to the box area; each counted and warned about with the annotation ids."""
    from helpers.annotations import random_keypoints

    nan, inf = float("nan"), float("inf")
    images = write_images(tmp_path / "img", [1])
    rng = np.random.default_rng(5)
    kp1 = random_keypoints(rng, [10, 10, 50, 90], labelled=1.0)
    kp1[5, 0], kp1[7, 2], kp1[9, 1] = inf, nan, -inf
    kp4 = np.zeros((133, 3))
    kp4[:3] = [inf, 20, 2]  # its only labels are infinite: no labels left
    people = [
        person(1, 1, [10, 10, 50, 90], kp1),
        person(2, 1, [15, 10, 50, 90], seed=2),
        person(3, 1, [60, 10, 50, 90], area=inf, seed=3),
        person(4, 1, [20, 20, 30, 30], kp4, num_keypoints=3),
    ]
    people[1]["bbox"][0] = nan
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco_wholebody(images, people)))
    with caplog.at_level(logging.WARNING, logger="wbpose.data.annotations"):
        ds = CocoWholeBodyDataset(ann, tmp_path / "img", INPUT_WH, codec=MSRAHeatmap((64, 48), (16, 12), sigma=2.0))
    table = ds.instances
    assert table.instance_ids.tolist() == [1, 3]
    assert table.invalid == {"nonfinite_box": 1, "nonfinite_keypoints": 6, "nonfinite_area": 1}
    assert ds.skipped["no_labels"] == 1 and ds.skipped["invalid_box"] == 0
    assert table.visible[0, [5, 7, 9]].tolist() == [0, 0, 0] and (table.keypoints_xy[0, [5, 7, 9]] == 0).all()
    np.testing.assert_allclose(table.keypoints_xy[0, 10:], kp1[10:, :2], rtol=1e-6)  # the other labels kept
    assert table.visible[0].sum() == 130
    assert table.areas[1] == pytest.approx(50 * 90) and np.isfinite(table.areas).all()
    sample = ds[0]  # the crop and its targets: all finite (Infinity used to give NaN centres and blank crops)
    floats = {k: np.asarray(v) for k, v in sample.items() if np.asarray(v).dtype.kind == "f"}
    assert {"image", "heatmaps"} <= set(floats)
    assert all(np.isfinite(v).all() for v in floats.values()), sorted(floats)
    text = caplog.text
    assert f"{ann}: dropped 1 annotation(s) whose bbox has a NaN or infinite number (annotation ids 2)" in text
    assert "made 6 keypoint(s) with a NaN or infinite x, y or v unlabelled (v=0) (annotation ids 1, 4)" in text
    assert "replaced 1 NaN or infinite area(s) by the box area (annotation ids 3)" in text

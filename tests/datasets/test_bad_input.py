"""Bad input: every case raises a DataError naming the file and the record, or is skipped with a logged count.

Decisions: a missing or corrupt image is a setup error (raise when the sample is read, naming the file, the
image id and the instance id); malformed or empty json and detections for unknown images raise at load time;
zero-size boxes are skipped and counted (MMPose 1.x drops them too).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers.annotations import coco_wholebody, person, write_images, write_json, write_root
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

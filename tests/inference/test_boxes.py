"""Person boxes: whole image, detection files (images and videos), IoU/NMS against plain references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wbpose.inference.boxes import DetectionFile, WholeImage, iou_matrix, nms
from wbpose.inference.sources import Frame, FrameSource


def _frame(index: int = 0, path: Path | None = None, name: str = "clip.mp4#0", hw=(40, 60)) -> Frame:
    return Frame(index, np.zeros((*hw, 3), np.uint8), path.name if path else name, path)


class _Video(FrameSource):
    kind, name, num_frames = "video", "clip.mp4", 20


def _iou_ref(a, b) -> float:
    ax1, ay1, aw, ah = a
    bx1, by1, bw, bh = b
    iw = max(0.0, min(ax1 + aw, bx1 + bw) - max(ax1, bx1))
    ih = max(0.0, min(ay1 + ah, by1 + bh) - max(ay1, by1))
    return iw * ih / (aw * ah + bw * bh - iw * ih)


def test_whole_image() -> None:
    boxes = WholeImage()(_frame(hw=(40, 60)))
    np.testing.assert_array_equal(boxes.xywh, [[0, 0, 60, 40]])
    np.testing.assert_array_equal(boxes.scores, [1.0])


def test_iou_matrix_and_nms_match_plain_loops() -> None:
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 50, (7, 2)), rng.uniform(1, 40, (7, 2))], 1)
    b = np.concatenate([rng.uniform(0, 50, (5, 2)), rng.uniform(1, 40, (5, 2))], 1)
    expected = np.array([[_iou_ref(x, y) for y in b] for x in a])
    np.testing.assert_allclose(iou_matrix(a, b), expected, rtol=1e-12)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (7, 0)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [30, 30, 5, 5], [0, 0, 10, 10.5], [31, 30, 5, 5]], float)
    scores = np.array([0.5, 0.9, 0.3, 0.9, 0.1])
    # plain greedy reference
    order, kept = sorted(range(5), key=lambda i: -scores[i]), []
    for i in order:
        if all(_iou_ref(boxes[i], boxes[k]) <= 0.45 for k in kept):
            kept.append(i)
    assert nms(boxes, scores, 0.45).tolist() == kept == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_detection_file_for_images(tmp_path: Path) -> None:
    dets = [
        {"image_id": 785, "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.9},
        {"image_id": 785, "category_id": 1, "bbox": [1, 2, 0, 20], "score": 0.9},  # degenerate: dropped
        {"image_id": 785, "category_id": 2, "bbox": [1, 2, 10, 20], "score": 0.9},  # not a person
        {"image_id": 785, "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.1},  # below box_thr
        {"file_name": "holiday.jpg", "image_id": 9, "category_id": 1, "bbox": [5, 5, 5, 5], "score": 0.8},
    ]
    path = tmp_path / "det.json"
    path.write_text(json.dumps(dets))
    source = DetectionFile(path, box_thr=0.3)
    coco = source(_frame(path=tmp_path / "000000000785.jpg"))
    np.testing.assert_array_equal(coco.xywh, [[1, 2, 10, 20]])
    assert coco.image_id == 785 and coco.scores.tolist() == [0.9]
    named = source(_frame(path=tmp_path / "holiday.jpg"))
    assert named.image_id == 9 and named.xywh.tolist() == [[5, 5, 5, 5]]
    assert len(source(_frame(path=tmp_path / "other.jpg"))) == 0


def test_detection_file_for_a_video(tmp_path: Path) -> None:
    dets = [{"image_id": i, "category_id": 1, "bbox": [i, 0, 10, 10], "score": 1.0} for i in range(20)]
    path = tmp_path / "clip_det.json"
    path.write_text(json.dumps(dets))
    source = DetectionFile(path)
    source.check_source(_Video())
    assert source(_frame(7)).xywh.tolist() == [[7, 0, 10, 10]]
    # detections of another (longer) video: image ids beyond the frame count
    other = tmp_path / "long_video_det.json"
    other.write_text(json.dumps(dets + [{"image_id": 499, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1}]))
    with pytest.raises(ValueError, match=r"long_video_det\.json does not belong to video clip\.mp4: .*0\.\.499 .*"
                       r"20 frames; expected image_id = frame index 0\.\.19"):  # fmt: skip
        DetectionFile(other).check_source(_Video())
    named = tmp_path / "named.json"
    named.write_text(json.dumps([{**d, "file_name": "walk.mp4"} for d in dets]))
    with pytest.raises(ValueError, match=r"named\.json is for walk\.mp4 .*not for video clip\.mp4"):
        DetectionFile(named).check_source(_Video())
    same = tmp_path / "same.json"
    same.write_text(json.dumps([{**d, "file_name": "clip.mp4"} for d in dets]))
    matched = DetectionFile(same)
    matched.check_source(_Video())
    assert matched(_frame(3)).xywh.tolist() == [[3, 0, 10, 10]]


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"not": "a list"}', "expected a json list"), ("[{]", "not valid json"), ('[{"score": 1}]', "record #0")],
)
def test_bad_detection_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad_det.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"bad_det.json.*{message}|{message}.*bad_det.json"):
        DetectionFile(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        DetectionFile(tmp_path / "missing.json")


def test_invalid_boxes_and_scores_are_dropped_on_loading_and_counted(tmp_path: Path, caplog) -> None:
    """NaN/Inf numbers, w or h <= 0 and NaN scores are dropped before the threshold, counted and logged by record."""
    good = {"image_id": 785, "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.9}
    nan, inf = float("nan"), float("inf")
    dets = [
        good,
        {**good, "bbox": [nan, 2, 10, 20]},  # record 1: NaN x
        {**good, "bbox": [1, inf, 10, 20]},  # record 2: infinite y
        {**good, "bbox": [1, 2, -10, 20]},  # record 3: negative width
        {**good, "bbox": [1, 2, 10, 0]},  # record 4: zero height
        {**good, "score": nan},  # record 5: NaN score (NaN >= box_thr is False, but a plain filter keeps it)
        {**good, "score": -inf},  # record 6
        {**good, "category_id": 2, "bbox": [nan, 0, 0, 0]},  # not a person: ignored, not counted
        {**good, "score": 0.1},  # valid, below the threshold: not counted as invalid
    ]
    path = tmp_path / "nan_det.json"
    path.write_text(json.dumps(dets))  # Python's json writes NaN and Infinity
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    with caplog.at_level("WARNING", logger="wbpose.inference.boxes"):
        source = DetectionFile(path, box_thr=0.3)
    assert source.kept == 1 and len(source.dropped) == 6
    assert [line.split(":")[0] for line in source.dropped] == [f"record #{i}" for i in range(1, 7)]
    (record,) = caplog.records
    message = record.getMessage()
    assert record.levelname == "WARNING" and str(path) in message and "dropped 6 invalid person records" in message
    assert "record #1: bbox [nan, 2, 10, 20]: non-finite x" in message and "record #3" in message
    assert "(1 more)" in message  # the first five are listed
    boxes = source(_frame(path=tmp_path / "000000000785.jpg"))
    np.testing.assert_array_equal(boxes.xywh, [[1, 2, 10, 20]])
    assert np.isfinite(boxes.xywh).all() and np.isfinite(boxes.scores).all()
    assert repr(source) == f"DetectionFile(path={path}, 1 boxes, score>=0.3, 6 invalid dropped)"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"image_id": 1, "bbox": ["1", 2, 3, 4], "score": 0.9}, r"record #0 has bbox \['1', 2, 3, 4\].*numbers"),
        ({"image_id": 1, "bbox": [1, 2, 3], "score": 0.9}, r"record #0 has bbox \[1, 2, 3\]"),
        ({"image_id": 1, "bbox": [1, 2, 3, 4], "score": None}, r"record #0 has score None, expected a number"),
    ],
)
def test_malformed_boxes_and_scores_name_the_record(tmp_path: Path, record: dict, message: str) -> None:
    path = tmp_path / "odd_det.json"
    path.write_text(json.dumps([record]))
    with pytest.raises(ValueError, match=rf"odd_det\.json: {message}"):
        DetectionFile(path)


def test_box_sources_print_readably(tmp_path: Path) -> None:
    path = tmp_path / "det.json"
    path.write_text(json.dumps([{"image_id": i, "bbox": [0, 0, 5, 5], "score": 0.5 + i / 10} for i in range(4)]))
    text = repr(DetectionFile(path, box_thr=0.6))
    assert text == f"DetectionFile(path={path}, 3 boxes, score>=0.6)" and str(DetectionFile(path, 0.6)) == text
    assert repr(WholeImage()) == "WholeImage(the whole image is one person box)"
    for source in (DetectionFile(path), WholeImage()):
        assert " object at 0x" not in f"{source}" and " object at 0x" not in f"{source!r}"

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

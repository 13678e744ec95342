"""Drawing of the video path: the batched skeleton drawing gives the pixels of one OpenCV call per link and point,
BGR drawing in place equals the RGB drawing converted, and the writer thread's task writes exactly that."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from wbpose.inference.pipeline import _draw_task, draw_frame
from wbpose.inference.predictor import PosePrediction
from wbpose.inference.sources import Frame
from wbpose.inference.writers import ImageSink
from wbpose.keypoints import PART_COLORS, PART_SLICES, SKELETON, keypoint_colors


def _reference_draw(image_rgb, keypoints, scores, score_thr=0.3, radius=None, thickness=None, boxes_xywh=None):
    """The former drawing: one ``cv2.line`` per link, then one ``cv2.circle`` per point, person by person."""
    out = image_rgb.copy()
    size = max(out.shape[:2])
    r = radius if radius is not None else max(1, round(size / 320))
    t = thickness if thickness is not None else max(1, round(size / 400))
    if boxes_xywh is not None:
        for x, y, w, h in np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4):
            cv2.rectangle(out, (round(x), round(y)), (round(x + w), round(y + h)), (255, 255, 255), t)
    kpt_colors = keypoint_colors()

    def link_color(i, j):
        return next(PART_COLORS[n] for n, sl in PART_SLICES.items() if sl.start <= max(i, j) < sl.stop)

    for kp, sc in zip(keypoints, scores):
        ok = (sc > score_thr) & np.isfinite(kp).all(-1)
        pts = [(int(round(x)), int(round(y))) if good else None for (x, y), good in zip(kp.tolist(), ok)]
        for i, j in SKELETON:
            if ok[i] and ok[j]:
                cv2.line(out, pts[i], pts[j], link_color(i, j), t, cv2.LINE_AA)
        for k in np.flatnonzero(ok):
            cv2.circle(out, pts[k], r, tuple(int(c) for c in kpt_colors[k]), -1, cv2.LINE_AA)
    return out


def _poses(rng: np.random.Generator, n: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    centre = rng.uniform(-40, max(hw) + 40, (n, 1, 2))
    keypoints = centre + rng.normal(0, rng.uniform(5, 120), (n, 133, 2))
    scores = rng.uniform(0, 1, (n, 133))
    if n:
        keypoints[0, rng.integers(0, 133, 4)] = np.nan  # not finite: not drawn
    return keypoints, scores


def test_draw_pose_equals_one_opencv_call_per_link_and_point() -> None:
    from wbpose.visualize import draw_pose

    rng = np.random.default_rng(3)
    for trial in range(40):
        hw = tuple(int(v) for v in rng.integers(40, 500, 2))
        image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        keypoints, scores = _poses(rng, int(rng.integers(0, 4)), hw)
        boxes = rng.uniform(0, 200, (len(keypoints), 4)) if trial % 2 else None
        sizes = {"radius": 3, "thickness": 2} if trial % 3 == 0 else {}
        expected = _reference_draw(image, keypoints, scores, boxes_xywh=boxes, **sizes)
        np.testing.assert_array_equal(draw_pose(image, keypoints, scores, boxes_xywh=boxes, **sizes), expected)
        bgr = np.ascontiguousarray(image[..., ::-1])
        drawn = draw_pose(bgr, keypoints, scores, boxes_xywh=boxes, bgr=True, in_place=True, **sizes)
        assert drawn is bgr  # drawn on the image itself
        np.testing.assert_array_equal(bgr[..., ::-1], expected)  # BGR colours: the same picture


def test_draw_pose_in_place_refuses_a_view_and_far_points_are_harmless() -> None:
    from wbpose.visualize import draw_pose

    image = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(ValueError, match="C-contiguous"):
        draw_pose(image[:, ::2], np.zeros((133, 2)), in_place=True)
    far = np.full((1, 133, 2), 1e12)
    far[0, 0] = (20, 20)
    assert draw_pose(image, far).any() and not image.any()  # drawn on a copy; far points do not raise


class _RecordingSink:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def write_bgr(self, image_bgr: np.ndarray, name: str | None = None) -> None:
        self.frames.append(image_bgr.copy())


def test_writer_task_writes_the_rgb_drawing_converted_to_bgr(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    keypoints, scores = _poses(rng, 2, (120, 160))
    boxes = np.array([[10, 10, 60, 90], [70, 20, 50, 80]], np.float32)
    ones = np.ones(2, np.float32)
    prediction = PosePrediction(keypoints.astype(np.float32), scores.astype(np.float32), ones, boxes, ones)
    frame = Frame(0, image.copy(), "v#0")
    sink = _RecordingSink()
    _draw_task(sink, frame, prediction, np.array([3, 7]), 0.3, True)()
    expected = cv2.cvtColor(draw_frame(image, prediction, np.array([3, 7]), 0.3), cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(sink.frames[0], expected)
    np.testing.assert_array_equal(frame.image, image)  # the frame itself is not drawn on
    assert not np.array_equal(expected, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))  # something was drawn

    pngs = ImageSink(tmp_path)  # the BGR write of an image equals the RGB one
    rgb_path = pngs.write(image, "a.jpg")
    rgb_png = cv2.imread(str(rgb_path))
    bgr_path = pngs.write_bgr(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), "b.jpg")
    np.testing.assert_array_equal(cv2.imread(str(bgr_path)), rgb_png)
    np.testing.assert_array_equal(rgb_png, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

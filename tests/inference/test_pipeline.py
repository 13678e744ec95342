"""The frames -> poses -> outputs loop: Python API, image ids, a webcam stopped with Ctrl-C, errors from threads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.threads import torch_threads
from inference.fakes import random_model
from wbpose.inference import Predictor, make_codec, predict_source
from wbpose.inference.boxes import DetectionFile, WholeImage
from wbpose.inference.pipeline import make_boxes, run
from wbpose.inference.sources import Frame, FrameSource
from wbpose.inference.synthetic_video import make_synthetic_video
from wbpose.inference.tracking import PoseTracker


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):  # small networks: see helpers.threads
        yield


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    codec = make_codec("msra", (64, 64))
    return Predictor(random_model(), codec, codec.input_wh, device="cpu", flip_test=False)


class FakeWebcam(FrameSource):
    """A webcam whose user presses Ctrl-C after ``frames`` frames."""

    kind, name, fps, frame_wh = "webcam", "webcam0", 15.0, (80, 60)

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.closed = False

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.frames):
            yield Frame(i, np.full((60, 80, 3), 10 * i, np.uint8), f"webcam0#{i}")
        raise KeyboardInterrupt

    def close(self) -> None:
        self.closed = True


def test_webcam_interrupted_keeps_its_outputs(predictor: Predictor, tmp_path: Path) -> None:
    webcam = FakeWebcam(4)
    result = run(predictor, webcam, PoseTracker(WholeImage(), det_every=2), tmp_path, progress=False)
    assert webcam.closed and result.frames == 4 and result.video_path == tmp_path / "webcam0.mp4"
    capture = cv2.VideoCapture(str(result.video_path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and capture.get(cv2.CAP_PROP_FPS) == pytest.approx(15)
    results = json.loads(result.results_path.read_text())
    assert [r["image_id"] for r in results] == [0, 1, 2, 3] and all("track_id" in r for r in results)
    assert set(result.timings) >= {"wait_read", "boxes", "pose", "track", "wait_write", "draw_write"}


def test_python_api_on_a_video_and_on_images(predictor: Predictor, tmp_path: Path) -> None:
    video = make_synthetic_video(tmp_path / "v", num_frames=5, num_people=2, seed=2)
    result = predict_source(predictor, str(video.video), video.boxes, tmp_path / "out", track=True, det_every=2,
                            progress=False)  # fmt: skip
    assert (result.frames, result.people, result.track_ids) == (5, 10, 2)
    assert result.video_path == tmp_path / "out" / "synthetic.mp4" and result.fps > 0
    images = tmp_path / "images"
    images.mkdir()
    for name in ("000000000785.jpg", "street.png"):
        cv2.imwrite(str(images / name), np.full((50, 40, 3), 90, np.uint8))
    result = predict_source(predictor, images, out=tmp_path / "img_out", progress=False, draw=False)
    ids = [r["image_id"] for r in json.loads(result.results_path.read_text())]
    assert ids == [785, 1]  # a COCO file name gives its id, another file its position
    assert not list((tmp_path / "img_out").glob("*.png"))  # draw=False
    with pytest.raises(ValueError, match="tracking follows people through a video"):
        predict_source(predictor, images, track=True)
    assert isinstance(make_boxes(None), WholeImage) and isinstance(make_boxes(video.boxes), DetectionFile)


def test_errors_in_the_reader_thread_reach_the_caller(predictor: Predictor, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((20, 20, 3), np.uint8))
    (folder / "b.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"cannot read image .*b\.png"):  # strict: skipping is the default
        predict_source(predictor, folder, out=tmp_path / "o", progress=False, strict=True)

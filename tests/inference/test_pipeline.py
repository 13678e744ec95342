"""The frames -> poses -> outputs loop: Python API, image ids, a webcam stopped with Ctrl-C, errors from threads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.fakes import random_model
from helpers.threads import torch_threads
from wbpose.inference import Predictor, make_codec, predict_source
from wbpose.inference.boxes import DetectionFile, WholeImage
from wbpose.inference.pipeline import make_boxes, run
from wbpose.inference.sources import Frame, FrameSource
from wbpose.inference.tracking import PoseTracker
from wbpose.synthetic.video import make_synthetic_video


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


def _strict_json(path: Path) -> list:
    """Parse with a strict json parser: NaN, Infinity and -Infinity fail the test."""

    def refuse(name: str):
        raise AssertionError(f"{path} holds the non-json constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


class _Broken(torch.nn.Module):
    """A network whose heatmaps are ``value`` (inf: an overflow, NaN) for the crops at ``bad`` in each batch."""

    def __init__(self, net: torch.nn.Module, bad: list[int], value: float) -> None:
        super().__init__()
        self.net, self.bad, self.value = net, bad, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x).clone()
        out[self.bad] = self.value
        return out


def test_nonfinite_poses_never_reach_the_results_json(tmp_path: Path, caplog) -> None:
    codec = make_codec("msra", (64, 64))
    net = _Broken(random_model(), [1], float("inf"))
    predictor = Predictor(net, codec, codec.input_wh, device="cpu", flip_test=False)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("000000000001.png", "000000000002.png"):
        cv2.imwrite(str(folder / name), np.full((60, 80, 3), 90, np.uint8))
    dets = tmp_path / "det.json"
    dets.write_text(json.dumps([{"image_id": i, "bbox": [5 + j, 5, 30, 40], "score": 0.9}
                                for i in (1, 2) for j in (0, 10, 20)]))  # fmt: skip
    with caplog.at_level("WARNING", logger="wbpose.inference.pipeline"):
        result = predict_source(predictor, folder, dets, tmp_path / "out", progress=False)
    assert (result.frames, result.people, result.nonfinite_poses) == (2, 4, 2)  # the second box of each image
    results = _strict_json(result.results_path)
    assert len(results) == 4 and all(np.isfinite(r["keypoints"]).all() and np.isfinite(r["score"]) for r in results)
    assert "000000000001.png: left out 1 of 3 poses with a NaN or infinite keypoint or score" in caplog.text
    assert "left out 2 poses with a NaN or infinite keypoint or score (2 frames" in caplog.text
    net.value = float("nan")  # the codec refuses NaN heatmaps: the error names the frame
    with pytest.raises(ValueError, match=r"000000000001\.png: heatmaps contain NaN"):
        predict_source(predictor, folder, dets, tmp_path / "out2", progress=False)


def test_whole_image_warning_and_results_beside_the_video(predictor: Predictor, tmp_path: Path, caplog,
                                                          monkeypatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the default output folder, outputs/predict, would land here
    video = make_synthetic_video(tmp_path / "v", num_frames=3, num_people=2, seed=1)
    annotated = tmp_path / "renders" / "annotated.mp4"
    with caplog.at_level("WARNING", logger="wbpose.inference.pipeline"):
        result = predict_source(predictor, str(video.video), None, video_path=annotated, progress=False)
    assert (result.video_path, result.results_path) == (annotated, tmp_path / "renders" / "annotated.json")
    assert [r["image_id"] for r in _strict_json(result.results_path)] == [0, 1, 2]
    assert not (tmp_path / "outputs").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "the whole image is used as one person box" in warnings[0]
    assert "--boxes" in warnings[0] and "--detector" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="wbpose.inference.pipeline"):  # boxes given: no warning
        result = predict_source(predictor, str(video.video), video.boxes, tmp_path / "o", progress=False)
    assert result.results_path == tmp_path / "o" / "results.json" and not caplog.records
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=rf"annotated video {blocker}/out\.mp4: {blocker} is a file"):
        predict_source(predictor, str(video.video), video.boxes, video_path=blocker / "out.mp4", progress=False)

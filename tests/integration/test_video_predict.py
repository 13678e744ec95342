"""scripts/predict.py on a synthetic video with each box source: annotated video, scorable results, tracking, errors.

The video (16 frames, 320x240, three people moving and overlapping) and its ground truth (``image_id`` = frame
index) come from ``wbpose.synthetic.video``; the model is a tiny HRNet with random (BN-calibrated)
weights saved as an MMPose file, so scores are ~0: what is checked is that every output exists, has the input's
frames and scores with wbpose-score against the video's own ground truth. That tracking holds ids on
people is shown with a perfect pose model in tests/inference/test_tracking.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.extras import require_extra
from helpers.threads import torch_threads
from wbpose.app import predict
from wbpose.app import score as score_results
from wbpose.synthetic.video import make_synthetic_video

SMALL = ["--image-hw", "128", "96", "--codec", "msra", "--device", "cpu", "--no-progress"]
FRAMES = 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):  # small networks: see helpers.threads
        yield


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory):
    return make_synthetic_video(tmp_path_factory.mktemp("video"), num_frames=FRAMES, num_people=3, seed=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.fakes import calibrated_model, mmpose_file

    return mmpose_file(calibrated_model("tiny"), tmp_path_factory.mktemp("ckpt") / "tiny_pose.pth", "0.x")


@pytest.fixture(scope="module")
def detector(video, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX detector with the MMDeploy contract returning the people's boxes of frame 0 (score 0.447)."""
    require_extra("onnxruntime", "onnx")
    from helpers.fakes import probe_detector_onnx

    boxes = video.boxes_xywh[0]
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)  # canvas 320x320: r = 1
    probes = [[10, 300]] * len(xyxy)  # in the padding: 114 -> 0.447
    path = tmp_path_factory.mktemp("det") / "tiny_yolox_person.onnx"
    return probe_detector_onnx(path, xyxy, probes, [0] * len(xyxy), "yolox", (320, 320))


def _check_outputs(out: Path, video, expect_tracks: bool) -> list[dict]:
    capture = cv2.VideoCapture(str(out / "synthetic.mp4"))
    assert capture.isOpened()
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(video.fps)
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 240)
    decoded = sum(1 for _ in iter(lambda: capture.read()[0], False))
    assert decoded == FRAMES
    results = json.loads((out / "results.json").read_text())
    assert results and {r["image_id"] for r in results} <= set(range(FRAMES))
    assert all(("track_id" in r) == expect_tracks for r in results)
    assert score_results.main([str(video.annotations), str(out / "results.json"), "--num-procs", "1",
                               "--out", str(out / "metrics.json")]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["wholebody_ap"] <= 1.0 and 0.0 <= metrics["body_ar"] <= 1.0
    return results


@pytest.mark.parametrize("boxes", ["whole", "detections", "onnx", "tracking"])
def test_video_with_each_box_source(video, checkpoint: Path, detector: Path, tmp_path: Path, boxes: str) -> None:
    out = tmp_path / boxes
    argv = [str(checkpoint), "--source", str(video.video), "--out", str(out), *SMALL]
    argv += {
        "whole": [],
        "detections": ["--boxes", str(video.detections), "--box-thr", "0.5"],
        "onnx": ["--detector", str(detector)],
        "tracking": ["--boxes", str(video.boxes), "--track", "--det-every", "4"],
    }[boxes]
    assert predict.main(argv) == 0
    results = _check_outputs(out, video, expect_tracks=boxes == "tracking")
    per_frame = np.bincount([r["image_id"] for r in results], minlength=FRAMES)
    if boxes == "whole":
        assert per_frame.tolist() == [1] * FRAMES
    if boxes == "onnx":
        assert per_frame.tolist() == [3] * FRAMES  # the detector's three boxes in every frame
    if boxes == "tracking":
        assert len({r["track_id"] for r in results if r["image_id"] == 0}) == per_frame[0] == 3


def test_images_glob_and_avi_output(video, checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    capture = cv2.VideoCapture(str(video.video))
    for i in range(3):
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), capture.read()[1])
    out = tmp_path / "glob_out"
    assert predict.main([str(checkpoint), "--source", str(folder / "frame_*.jpg"), "--out", str(out), *SMALL]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["frame_0.png", "frame_1.png", "frame_2.png"]
    avi = tmp_path / "avi" / "annotated.avi"
    argv = [str(checkpoint), "--source", str(video.video), "--out", str(tmp_path / "avi"), "--out-video", str(avi),
            "--max-frames", "5", *SMALL]  # fmt: skip
    assert predict.main(argv) == 0
    assert int(cv2.VideoCapture(str(avi)).get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def test_bad_inputs_name_the_file_and_what_was_expected(video, checkpoint: Path, detector: Path, tmp_path: Path,
                                                        capsys) -> None:  # fmt: skip
    def error(*extra: str) -> str:
        assert predict.main([str(checkpoint), *extra, "--out", str(tmp_path / "o"), *SMALL]) == 1
        return capsys.readouterr().err

    broken = tmp_path / "holiday.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))
    assert "cannot read video" in (msg := error("--source", str(broken))) and "holiday.mp4" in msg
    assert "expected a video file" in msg
    msg = error("--source", "63")
    assert "cannot open webcam 63" in msg and "expected the index of a connected camera" in msg
    other = tmp_path / "other_video_det.json"
    other.write_text(json.dumps([{"image_id": 250, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 1.0}]))
    msg = error("--source", str(video.video), "--boxes", str(other))
    assert "other_video_det.json does not belong to video synthetic.mp4" in msg
    assert "expected image_id = frame index 0..15" in msg
    msg = error("--source", str(video.video), "--detector", str(video.annotations))
    assert "cannot load ONNX file" in msg and "synthetic_gt.json" in msg
    msg = error("--source", str(video.video), "--boxes", str(video.boxes), "--detector", str(detector))
    assert "either --boxes" in msg
    with pytest.raises(SystemExit) as exit_info:  # one input only: --source (no positional image argument)
        predict.main([str(checkpoint), "--source", str(video.video), "extra_positional.jpg", *SMALL])
    assert exit_info.value.code == 2 and "unrecognized arguments: extra_positional.jpg" in capsys.readouterr().err
    msg = error("--source", str(video.annotations.parent / "*.png"))
    assert "no images" in msg
    msg = error("--source", str(video.video), "--out-video", str(tmp_path / "v.xyz"))
    assert "unknown container '.xyz'" in msg and "v.xyz" in msg


def test_out_video_puts_the_results_beside_it(video, checkpoint: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # where the old default, ./outputs/predict, would appear
    clip = tmp_path / "renders" / "clip.avi"
    argv = [str(checkpoint), "--source", str(video.video), "--out-video", str(clip), "--max-frames", "3", *SMALL]
    assert predict.main(argv) == 0
    results = json.loads((tmp_path / "renders" / "clip.json").read_text())
    assert {r["image_id"] for r in results} == {0, 1, 2}
    assert not (tmp_path / "outputs").exists()
    assert f"-> {clip}, {tmp_path / 'renders' / 'clip.json'}" in capsys.readouterr().out
    # --out-json (or --out) still decides
    assert predict.main([*argv, "--out-json", str(tmp_path / "mine.json")]) == 0
    assert [r["image_id"] for r in json.loads((tmp_path / "mine.json").read_text())] == [0, 1, 2]


def test_unwritable_outputs_are_named_before_the_model_loads(video, checkpoint: Path, tmp_path: Path, capsys,
                                                             monkeypatch) -> None:  # fmt: skip
    import wbpose.inference.predictor as predictor_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output paths were checked")

    monkeypatch.setattr(predictor_module.Predictor, "from_checkpoint", no_model)
    blocker = tmp_path / "notes.txt"  # tests run as root: a path under a regular file stands for a read-only folder
    blocker.write_text("x")
    base = [str(checkpoint), "--source", str(video.video), *SMALL]
    assert predict.main([*base, "--out-video", str(blocker / "out.mp4")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write the annotated video {blocker / 'out.mp4'}: {blocker} is a file, not a folder" in err
    assert "codec" not in err
    assert predict.main([*base, "--out", str(blocker / "sub")]) == 1
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err
    assert predict.main([*base, "--out", str(tmp_path / "o"), "--out-json", str(blocker / "r.json")]) == 1
    assert f"cannot write the results json {blocker / 'r.json'}" in capsys.readouterr().err

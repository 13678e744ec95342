"""scripts/export.py: an MMPose-format tiny model to ONNX, verified, then used by scripts/predict.py; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.extras import require_extra
from helpers.threads import torch_threads
from wbpose.app import export, predict

require_extra("onnxruntime", "onnx")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):  # small networks: see helpers.threads
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.fakes import calibrated_model, mmpose_file

    return mmpose_file(calibrated_model("tiny"), tmp_path_factory.mktemp("ckpt") / "tiny_pose.pth", "1.x")


def test_export_then_predict_with_onnx_runtime(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tiny_flip.onnx"
    argv = [str(checkpoint), "--format", "onnx", "--flip-test", "--image-hw", "128", "96", "--codec", "dark",
            "--out", str(out)]  # fmt: skip
    assert export.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"-> {out}" in printed and "opset 18, dynamic batch" in printed and "flip test folded in" in printed
    diff = float(printed.split("max |heatmap diff| ")[1].split()[0])
    assert diff <= 1e-4
    from wbpose.synthetic.video import make_synthetic_video

    video = make_synthetic_video(tmp_path / "video", num_frames=6, num_people=2, seed=4)
    run = tmp_path / "run"
    argv = [str(out), "--source", str(video.video), "--boxes", str(video.boxes), "--out", str(run), "--no-progress"]
    assert predict.main(argv) == 0
    results = json.loads((run / "results.json").read_text())
    assert sorted({r["image_id"] for r in results}) == list(range(6)) and len(results) == 12


def test_export_errors(checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert export.main([str(tmp_path / "missing.pth")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert export.main([str(checkpoint), "--out", str(tmp_path / "x.onnx")]) == 1  # no recipe in the name
    err = capsys.readouterr().err
    assert "tiny_pose.pth" in err and "--image-hw H W --codec NAME" in err
    with pytest.raises(SystemExit):
        export.main([str(checkpoint), "--format", "torchscript"])
    assert "invalid choice: 'torchscript'" in capsys.readouterr().err

"""wbpose-predict on generated images: overlays, a loadable results json, box matching and clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.paths import REPO_ROOT
from wbpose.app import predict
from wbpose.models import build_pose_model
from wbpose.synthetic.generate import DETECTIONS_FILE, generate_dataset

SCRIPT = REPO_ROOT / "scripts" / "predict.py"
SMALL = ["--image-hw", "128", "96", "--codec", "msra", "--device", "cpu"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict_data")
    generate_dataset(root, num_train=0, num_val=3, seed=1)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model saved as an MMPose 0.x file (``keypoint_head.*`` keys, a ``meta`` dict)."""
    torch.manual_seed(0)
    state = {k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else k: v
             for k, v in build_pose_model("tiny").state_dict().items()}  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "hrnet_tiny_coco_wholebody.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, path)
    return path


def test_folder_with_detections(data_root: Path, checkpoint: Path, tmp_path: Path) -> None:
    from xtcocotools.coco import COCO

    from wbpose.metrics import evaluate_results_file

    out = tmp_path / "out"
    det = data_root / DETECTIONS_FILE
    argv = [
        str(checkpoint),
        "--source",
        str(data_root / "val2017"),
        "--boxes",
        str(det),
        "--out",
        str(out),
        "--box-thr",
        "0.5",
    ]
    assert predict.main([*argv, *SMALL]) == 0
    images = sorted((data_root / "val2017").glob("*.jpg"))
    assert sorted(p.name for p in out.glob("*.png")) == [p.stem + ".png" for p in images]
    drawn = cv2.imread(str(out / f"{images[0].stem}.png"))
    assert drawn.shape == cv2.imread(str(images[0])).shape

    results = json.loads((out / "results.json").read_text())
    expected = [d for d in json.loads(det.read_text()) if d["category_id"] == 1 and d["score"] >= 0.5]
    assert len(results) == len(expected) > 0
    assert sorted(r["image_id"] for r in results) == sorted(d["image_id"] for d in expected)
    lengths = {"keypoints": 51, "foot_kpts": 18, "face_kpts": 204, "lefthand_kpts": 63, "righthand_kpts": 63}
    for r in results:
        assert r["category_id"] == 1 and isinstance(r["score"], float)
        assert all(len(r[field]) == n for field, n in lengths.items())
    ann = data_root / "annotations" / "coco_wholebody_val_v1.0.json"
    gt = COCO(str(ann))
    dt = gt.loadRes(str(out / "results.json"))
    assert len(dt.getAnnIds()) == len(results)
    metrics = evaluate_results_file(ann, out / "results.json", num_procs=1)
    assert 0.0 <= metrics["wholebody_ap"] <= 1.0


def test_single_image_whole_box_and_file_name_matching(data_root: Path, checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "street scene.png"
    cv2.imwrite(str(image), np.full((90, 120, 3), 128, np.uint8))
    out = tmp_path / "whole"
    assert predict.main([str(checkpoint), "--source", str(image), "--out", str(out), "--no-flip", *SMALL]) == 0
    (result,) = json.loads((out / "results.json").read_text())
    assert result["image_id"] == 0  # not a COCO file name: position in the listing
    assert (out / "street scene.png").is_file()

    boxes = tmp_path / "boxes.json"
    name = "street scene.png"
    dets = [
        {"file_name": name, "image_id": 42, "category_id": 1, "bbox": [10, 10, 30, 60], "score": 0.9},
        {"file_name": name, "image_id": 42, "category_id": 2, "bbox": [0, 0, 9, 9], "score": 0.9},  # not a person
        {"file_name": name, "image_id": 42, "category_id": 1, "bbox": [5, 5, 9, 9], "score": 0.1},  # below --box-thr
        {"file_name": "other.png", "image_id": 7, "category_id": 1, "bbox": [1, 1, 9, 9], "score": 0.9},
    ]
    boxes.write_text(json.dumps(dets))
    out2 = tmp_path / "boxes_out"
    assert (
        predict.main([str(checkpoint), "--source", str(image), "--boxes", str(boxes), "--out", str(out2), *SMALL]) == 0
    )
    (result,) = json.loads((out2 / "results.json").read_text())
    assert result["image_id"] == 42


def test_folder_with_an_unreadable_image(checkpoint: Path, tmp_path: Path, capsys, caplog) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "000000000785.jpg"), np.full((90, 120, 3), 128, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 cut short")
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="wbpose.inference.sources"):
        assert predict.main([str(checkpoint), "--source", str(folder), "--out", str(out), "--no-progress", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "1 images (1 unreadable, skipped), 1 people" in printed
    assert re.search(r"skipped 1 unreadable images .*\n  \S*broken\.jpg: cannot read image .*truncated JPEG", printed)
    assert "broken.jpg" in caplog.text  # the warning names it as it happens
    assert [r["image_id"] for r in json.loads((out / "results.json").read_text())] == [785]
    assert sorted(p.name for p in out.glob("*.png")) == ["000000000785.png"]
    strict = [str(checkpoint), "--source", str(folder), "--out", str(tmp_path / "o2"), "--strict", *SMALL]
    assert predict.main(strict) == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_coco_image_ids() -> None:
    from wbpose.inference.sources import coco_image_id

    assert coco_image_id(Path("000000000785.jpg")) == 785
    assert coco_image_id(Path("COCO_val2014_000000000042.jpg")) == 42
    assert coco_image_id(Path("holiday.jpg")) is None


def test_errors_name_the_input(data_root: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert predict.main([str(tmp_path / "missing.pth"), "--source", str(data_root / "val2017"), *SMALL]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert predict.main([str(checkpoint), "--source", str(tmp_path / "no_such_dir"), *SMALL]) == 1
    assert "no_such_dir" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert predict.main([str(checkpoint), "--source", str(empty), *SMALL]) == 1
    assert "no images" in capsys.readouterr().err
    (empty / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    assert predict.main([str(checkpoint), "--source", str(empty), "--out", str(tmp_path / "o"), *SMALL]) == 1
    assert "broken.jpg" in capsys.readouterr().err
    bad_boxes = tmp_path / "bad.json"
    bad_boxes.write_text('{"not": "a list"}')
    assert (
        predict.main([str(checkpoint), "--source", str(data_root / "val2017"), "--boxes", str(bad_boxes), *SMALL]) == 1
    )
    assert "bad.json" in capsys.readouterr().err


def test_command_line_exit_status(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "missing.pth"), "--source", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "checkpoint not found" in proc.stderr and "missing.pth" in proc.stderr


def _strict_json(path: Path) -> list:
    """Parse with a strict json parser: NaN, Infinity and -Infinity fail the test."""

    def refuse(name: str):
        raise AssertionError(f"{path} holds the non-json constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_invalid_boxes_are_dropped_and_counted_and_the_json_is_strict(checkpoint: Path, tmp_path: Path,
                                                                      caplog) -> None:  # fmt: skip
    image = tmp_path / "000000000785.jpg"
    cv2.imwrite(str(image), np.full((90, 120, 3), 128, np.uint8))
    good = {"image_id": 785, "category_id": 1, "bbox": [10, 10, 30, 60], "score": 0.9}
    nan, inf = float("nan"), float("inf")
    dets = [good, {**good, "bbox": [nan, 10, 30, 60]}, {**good, "bbox": [10, inf, 30, 60]},
            {**good, "bbox": [10, 10, -30, 60]}, {**good, "bbox": [10, 10, 30, 0]}, {**good, "score": nan}]  # fmt: skip
    boxes = tmp_path / "nan_boxes.json"
    boxes.write_text(json.dumps(dets))
    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        assert (
            predict.main([str(checkpoint), "--source", str(image), "--boxes", str(boxes), "--out", str(out), *SMALL])
            == 0
        )
    (dropped,) = [r.getMessage() for r in caplog.records if "invalid person records" in r.getMessage()]
    assert f"detection file {boxes}: dropped 5 invalid person records" in dropped
    assert all(f"record #{i}" in dropped for i in range(1, 6))
    (result,) = _strict_json(out / "results.json")  # only the valid box: one pose, finite numbers
    assert result["image_id"] == 785 and np.isfinite(result["score"])
    # the log names the box source readably, not as <... object at 0x...>
    assert f"boxes: DetectionFile(path={boxes}, 1 boxes, score>=0.3, 5 invalid dropped)" in caplog.text
    assert " object at 0x" not in caplog.text


def test_no_boxes_warns_that_the_whole_image_is_one_person(checkpoint: Path, tmp_path: Path, caplog) -> None:
    image = tmp_path / "group.png"
    cv2.imwrite(str(image), np.full((90, 120, 3), 128, np.uint8))
    with caplog.at_level("WARNING"):
        assert (
            predict.main([str(checkpoint), "--source", str(image), "--out", str(tmp_path / "o"), "--no-flip", *SMALL])
            == 0
        )
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "the whole image is used as one person box" in warning and "--boxes det.json or --detector" in warning

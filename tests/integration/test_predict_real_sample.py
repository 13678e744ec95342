"""scripts/predict.py on the real COCO val2017 sample photos with their real detector boxes (``data`` marker).

Needs ``WBPOSE_SAMPLE_DATA`` pointing at a folder with the images, ``test_coco_det_AP_H_56.json`` (person
detections) and ``test_coco_wholebody.json`` (annotations), e.g. ``/work/shared/data/coco_wholebody_sample``.
The model is a randomly initialised tiny HRNet converted from a fake MMPose file, so this checks that the real
file formats flow through (image ids from COCO file names, detector boxes, results json), not accuracy.
Everything is written into ``tmp_path``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch

from helpers.paths import SAMPLE_ANN, SAMPLE_DET, sample_root

DET_FILE, ANN_FILE = SAMPLE_DET, SAMPLE_ANN

pytestmark = pytest.mark.data


@pytest.fixture
def sample_dir() -> Path:
    return sample_root()


def test_predict_on_real_photos(sample_dir: Path, tmp_path: Path) -> None:
    from xtcocotools.coco import COCO

    from wbpose.checkpoints import convert_mmpose_checkpoint
    from wbpose.models import build_pose_model

    torch.manual_seed(0)
    fake = {"meta": {"epoch": 0}, "state_dict": {
        k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else k: v
        for k, v in build_pose_model("tiny").state_dict().items()}}  # fmt: skip
    torch.save(fake, tmp_path / "mmpose_tiny.pth")
    converted = tmp_path / "tiny_converted.pth"
    assert convert_mmpose_checkpoint(tmp_path / "mmpose_tiny.pth", converted).ok

    from wbpose.app import predict as script

    out = tmp_path / "predictions"
    det = str(sample_dir / DET_FILE)
    argv = [str(converted), "--source", str(sample_dir), "--boxes", det, "--out", str(out), "--device", "cpu"]
    # a converted file holds weights only and its name is no released one: input size and codec are given
    assert script.main([*argv, "--image-hw", "256", "192", "--codec", "msra"]) == 0

    images = sorted(sample_dir.glob("*.jpg"))
    assert images
    for image in images:
        drawn = cv2.imread(str(out / f"{image.stem}.png"))
        assert drawn is not None and drawn.shape == cv2.imread(str(image)).shape
    results = json.loads((out / "results.json").read_text())
    dets = [d for d in json.loads((sample_dir / DET_FILE).read_text()) if d["category_id"] == 1 and d["score"] >= 0.3]
    assert len(results) == len(dets)
    gt = COCO(str(sample_dir / ANN_FILE))
    assert {r["image_id"] for r in results} <= set(gt.getImgIds())
    assert len(gt.loadRes(str(out / "results.json")).getAnnIds()) == len(results)

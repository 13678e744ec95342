"""The data pipeline on real COCO-WholeBody files: 4 COCO val2017 images, their annotations and detector boxes.

Runs only when ``WBPOSE_SAMPLE_DATA`` names a folder holding ``test_coco_wholebody.json``,
``test_coco_det_AP_H_56.json`` and the images (e.g. the shared sample); the project's files never ship it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.paths import SAMPLE_ANN, SAMPLE_DET, sample_root
from helpers.references import mmpose_crop, ref_kept_instances
from wbpose.codecs import MSRAHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.data.transforms import denormalize_image
from wbpose.keypoints import PART_FIELDS

SAMPLE = os.environ.get("WBPOSE_SAMPLE_DATA")
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not SAMPLE, reason="set WBPOSE_SAMPLE_DATA to a folder like the real COCO-WholeBody sample"),
]
ANN, DET = SAMPLE_ANN, SAMPLE_DET
INPUT_WH = (192, 256)


@pytest.fixture(scope="module")
def root() -> Path:
    return sample_root()


@pytest.fixture(scope="module")
def raw(root: Path) -> dict:
    return json.loads((root / ANN).read_text())


def test_gt_instances_follow_the_rules(root: Path, raw: dict) -> None:
    ds = CocoWholeBodyDataset(root / ANN, root, INPUT_WH)
    kept, skipped = ref_kept_instances(raw)
    assert sorted(ds.instances.instance_ids.tolist()) == sorted(kept)
    assert ds.skipped == skipped
    assert len(ds) == 12 and skipped["no_keypoints"] == 2  # the shared sample: 14 people, 2 without body points
    by_id = {a["id"]: a for a in raw["annotations"]}
    for row, ann_id in enumerate(ds.instances.instance_ids.tolist()):
        kp = np.array([v for f in PART_FIELDS.values() for v in by_id[ann_id][f]]).reshape(-1, 3)
        np.testing.assert_allclose(ds.instances.keypoints_xy[row], kp[:, :2], rtol=1e-6)
        np.testing.assert_array_equal(ds.instances.visible[row], kp[:, 2] > 0)


def test_detections(root: Path) -> None:
    dets = json.loads((root / DET).read_text())
    ds = CocoWholeBodyDataset(root / ANN, root, INPUT_WH, bbox_source="det", det_file=root / DET)
    person = [i for i, d in enumerate(dets) if d["category_id"] == 1]
    assert ds.instances.instance_ids.tolist() == person
    np.testing.assert_allclose(ds.instances.bbox_scores, [dets[i]["score"] for i in person], rtol=1e-6)
    x, y, w, h = dets[person[0]]["bbox"]
    np.testing.assert_allclose(ds.instances.bbox_xyxy[0], [x, y, x + w, y + h])
    for i in range(0, len(ds), 17):
        s = ds[i]
        assert s["image"].shape == (3, 256, 192) and s["image_id"].item() == dets[person[i]]["image_id"]


def test_val_crops_match_mmpose_and_hold_the_person(root: Path) -> None:
    ds = CocoWholeBodyDataset(root / ANN, root, INPUT_WH)
    for i in range(len(ds)):
        s = ds[i]
        crop = denormalize_image(s["image"])
        image = cv2.imread(ds.image_path(i))[..., ::-1]
        ref = mmpose_crop(image, s["center_xy"].numpy().astype(np.float64), s["scale_wh"].numpy(), INPUT_WH)
        assert np.abs(crop.astype(int) - ref.astype(int)).mean() < 0.5
        assert crop.std() > 10  # real content, not border
        # the padded box holds nearly all labelled keypoints of the person
        m = ds.affine.set_geometry(ds.load_sample(i, read_image=False))
        vis = m.visible > 0
        inside = (m.keypoints_xy >= 0).all(1) & (m.keypoints_xy < INPUT_WH).all(1)
        assert inside[vis].mean() > 0.9


def test_train_samples(root: Path) -> None:
    torch.manual_seed(0)
    codec = MSRAHeatmap((256, 192), (64, 48), 2.0)
    ds = CocoWholeBodyDataset(root / ANN, root, INPUT_WH, codec=codec, transforms=build_train_augmentations())
    batch = ds.__getitems__(list(range(len(ds))))
    for s in batch:
        assert s["heatmaps"].shape == (133, 64, 48)
        assert torch.all(s["weights"] <= s["visible"])
        k = torch.nonzero(s["weights"] > 0)[:, 0]
        # every weighted keypoint whose rounded heatmap position lies on the map has its Gaussian peak (1.0) there
        # (MMPose's rule also weights points just off the map, whose square still touches it)
        hm_xy = torch.floor(s["keypoints_xy"][k] / 4 + 0.5).long()
        ok = (hm_xy >= 0).all(1) & (hm_xy[:, 0] < 48) & (hm_xy[:, 1] < 64)
        assert torch.allclose(s["heatmaps"][k[ok], hm_xy[ok, 1], hm_xy[ok, 0]], torch.ones(int(ok.sum())))
    assert sum(int(s["weights"].sum()) for s in batch) > 500

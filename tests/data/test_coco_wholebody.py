"""CocoWholeBodyDataset: instance parsing and filtering (MMPose 1.x rules), detector boxes, the sample contract."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.annotations import IMAGE_WH, coco_wholebody, person, write_images, write_json, write_root
from helpers.references import ref_kept_instances
from wbpose.codecs import MSRAHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES

INPUT_WH = (48, 64)
CODEC = MSRAHeatmap((64, 48), (16, 12), 1.0)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_root(tmp_path)
    return tmp_path


def _train(root: Path, **kw) -> CocoWholeBodyDataset:
    kw.setdefault("codec", CODEC)
    return CocoWholeBodyDataset(root / "annotations/coco_wholebody_train_v1.0.json", root / "train2017", INPUT_WH, **kw)


def _det(root: Path, **kw) -> CocoWholeBodyDataset:
    return CocoWholeBodyDataset(
        root / "annotations/coco_wholebody_val_v1.0.json",
        root / "val2017",
        INPUT_WH,
        bbox_source="det",
        det_file=root / "person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
        **kw,
    )


def test_instance_filtering_counts(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="wbpose.data.annotations"):
        ds = _train(root)
    assert sorted(ds.instances.instance_ids.tolist()) == [1, 2, 3, 8]
    assert ds.skipped == {"crowd": 1, "no_keypoints": 1, "invalid_box": 2, "no_labels": 1}
    assert "4 instances" in caplog.text and "invalid_box" in caplog.text
    assert len(ds) == 4
    assert len(set(ds.instances.instance_ids.tolist())) == len(ds)


def test_filtering_equals_the_plain_reference(root: Path) -> None:
    """The hand-placed people give the same kept ids and skip counts under the rules written out plainly."""
    raw = json.loads((root / "annotations/coco_wholebody_train_v1.0.json").read_text())
    kept, skipped = ref_kept_instances(raw)
    ds = _train(root)
    assert sorted(kept) == sorted(ds.instances.instance_ids.tolist()) == [1, 2, 3, 8]
    assert skipped == ds.skipped


def test_bbox_clipped_to_image_and_center_scale(root: Path) -> None:
    ds = _train(root)
    row = ds.instances.instance_ids.tolist().index(8)  # [100, 40, 80, 120] on a 160x120 image
    w, h = IMAGE_WH
    np.testing.assert_allclose(ds.instances.bbox_xyxy[row], [100, 40, w - 1, h - 1])
    np.testing.assert_allclose(ds.instances.center_xy[row], [(100 + w - 1) / 2, (40 + h - 1) / 2])
    np.testing.assert_allclose(ds.instances.scale_wh[row], [(w - 1 - 100) * 1.25, (h - 1 - 40) * 1.25])
    assert ds.instances.bbox_scores[row] == 1.0
    assert ds.instances.image_ids[row] == 2


def test_keypoints_in_concatenation_order_with_binary_visibility(tmp_path: Path) -> None:
    kp = np.zeros((NUM_KEYPOINTS, 3))
    for n, sl in enumerate(PART_SLICES.values()):  # x encodes the part, y the index within the part
        idx = np.arange(sl.start, sl.stop)
        kp[idx, 0], kp[idx, 1] = 10 * n + 1, idx - sl.start + 1
    kp[:, 2] = np.resize([2.0, 1.0, 0.0, 0.35], NUM_KEYPOINTS)  # float visibilities as in the real files
    images = write_images(tmp_path / "img", [1])
    ann = write_json(tmp_path / "a.json", coco_wholebody(images, [person(1, 1, [5, 5, 60, 60], kp)]))
    ds = CocoWholeBodyDataset(ann, tmp_path / "img", INPUT_WH)
    np.testing.assert_allclose(ds.instances.keypoints_xy[0], kp[:, :2])
    np.testing.assert_array_equal(ds.instances.visible[0], (kp[:, 2] > 0).astype(np.uint8))
    assert list(PART_FIELDS.values()) == ["keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"]


def test_detector_boxes(root: Path) -> None:
    ds = _det(root)
    # entry 1 is another category; the rest are used as given (no clipping), ids = index in the file
    assert ds.instances.instance_ids.tolist() == [0, 2, 3]
    assert ds.skipped == {"other_category": 1, "below_score_thr": 0, "invalid_box": 0}
    np.testing.assert_allclose(ds.instances.bbox_xyxy[1], [-5, 30, 55, 130])
    np.testing.assert_allclose(ds.instances.bbox_scores, [0.9, 0.3, 0.05], rtol=1e-6)
    np.testing.assert_allclose(ds.instances.areas, [50 * 95, 60 * 100, 70 * 100])
    assert ds.instances.keypoints_xy is None
    thr = _det(root, det_score_thr=0.3)
    assert thr.instances.instance_ids.tolist() == [0, 2]
    assert thr.skipped["below_score_thr"] == 1


def test_gt_boxes_for_validation(root: Path) -> None:
    ds = CocoWholeBodyDataset(root / "annotations/coco_wholebody_val_v1.0.json", root / "val2017", INPUT_WH)
    assert sorted(ds.instances.instance_ids.tolist()) == [1, 2, 3, 8]
    sample = ds[0]
    assert set(sample) == {"image", "center_xy", "scale_wh", "instance_id", "image_id", "bbox_score"}


def test_train_sample_contract(root: Path) -> None:
    ds = _train(root, transforms=build_train_augmentations())
    s = ds[0]
    expected = {
        "image": ((3, 64, 48), torch.float32),
        "center_xy": ((2,), torch.float32),
        "scale_wh": ((2,), torch.float32),
        "instance_id": ((), torch.int64),
        "image_id": ((), torch.int64),
        "bbox_score": ((), torch.float32),
        "heatmaps": ((NUM_KEYPOINTS, 16, 12), torch.float32),
        "weights": ((NUM_KEYPOINTS,), torch.float32),
        "keypoints_xy": ((NUM_KEYPOINTS, 2), torch.float32),
        "visible": ((NUM_KEYPOINTS,), torch.float32),
    }
    assert {k: (tuple(v.shape), v.dtype) for k, v in s.items()} == expected
    assert set(torch.unique(s["visible"]).tolist()) <= {0.0, 1.0}
    assert torch.all(s["weights"] <= s["visible"])
    # scale is aspect-fixed to the input (w / h = 48 / 64)
    assert s["scale_wh"][0] / s["scale_wh"][1] == pytest.approx(48 / 64, rel=1e-5)


def test_val_sample_contract(root: Path) -> None:
    ds = _det(root)
    s = ds[1]
    assert {k: (tuple(v.shape), v.dtype) for k, v in s.items()} == {
        "image": ((3, 64, 48), torch.float32),
        "center_xy": ((2,), torch.float32),
        "scale_wh": ((2,), torch.float32),
        "instance_id": ((), torch.int64),
        "image_id": ((), torch.int64),
        "bbox_score": ((), torch.float32),
    }
    assert s["instance_id"].item() == 2 and s["image_id"].item() == 2
    np.testing.assert_allclose(s["center_xy"], [25, 80])
    np.testing.assert_allclose(s["scale_wh"], [125 * 0.75, 125])  # (60, 100) * 1.25 = (75, 125), widened to 3:4


def test_batched_fetch_equals_single_fetch(root: Path) -> None:
    ds = _train(root, transforms=build_train_augmentations())
    torch.manual_seed(3)
    batch = ds.__getitems__([0, 1, 2, 3])
    ds2 = _train(root, transforms=build_train_augmentations())
    torch.manual_seed(3)
    single = [ds2[i] for i in range(4)]
    for a, b in zip(batch, single):
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_each_image_decoded_once_per_batch(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _det(root)
    image_rows = ds.instances.image_index.tolist()
    assert len(set(image_rows)) < len(image_rows), "the fixture needs two boxes on one image"
    expected = [ds[i] for i in range(len(ds))]
    calls: list[int] = []
    original = CocoWholeBodyDataset.read_image
    monkeypatch.setattr(CocoWholeBodyDataset, "read_image", lambda self, i: calls.append(i) or original(self, i))
    batch = ds.__getitems__(list(range(len(ds))))
    assert len(calls) == len(set(image_rows))
    for a, b in zip(batch, expected):
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_augmentation_is_seeded_by_seed_epoch_and_index(root: Path) -> None:
    """Augmentation is a function of (seed, epoch, index): not of torch's RNG, the call order or the batch."""

    def draw(seed: int, epoch: int = 0) -> torch.Tensor:
        ds = _train(root, transforms=build_train_augmentations(), seed=seed)
        return torch.stack([ds[(epoch, i % len(ds))]["scale_wh"] for i in range(8)])

    torch.manual_seed(0)
    first = draw(0)
    torch.manual_seed(1)  # torch's RNG plays no part
    torch.testing.assert_close(draw(0), first, rtol=0, atol=0)
    assert not torch.equal(draw(0), draw(1))
    assert not torch.equal(draw(0, epoch=0), draw(0, epoch=1))  # a new draw each epoch
    ds = _train(root, transforms=build_train_augmentations())
    torch.testing.assert_close(ds[0]["scale_wh"], ds[0]["scale_wh"], rtol=0, atol=0)  # no stream carried over
    reversed_batch = ds.__getitems__([(1, 2), (1, 1), (1, 0)])[::-1]
    ds.set_epoch(1)  # plain indices take the dataset's epoch
    for a, b in zip(reversed_batch, [ds[i] for i in range(3)]):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_codec_rules(root: Path) -> None:
    with pytest.raises(ValueError, match="bbox_source='gt'"):
        _det(root, codec=CODEC)
    with pytest.raises(ValueError, match="input_wh"):
        CocoWholeBodyDataset(
            root / "annotations/coco_wholebody_train_v1.0.json",
            root / "train2017",
            (96, 128),
            codec=CODEC,
        )

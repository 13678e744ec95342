"""Bad image files in the dataset: detection (a truncated JPEG included), the deterministic stand-in of training,
the blank "no prediction" sample of evaluation, strict mode, and the ``data.bad_images`` policy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.bad_images import break_image, image_file, one_person_root
from wbpose.codecs import MSRAHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.bad_images import BadImagePolicy, jpeg_is_truncated, note_bad_rows, read_image_file
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.data.errors import DataError
from wbpose.engine.datamodule import WholeBodyDataModule

INPUT_WH = (48, 64)
CODEC = MSRAHeatmap((64, 48), (16, 12), sigma=2.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 training images, one person each; images 3 (corrupt), 4 (missing) and 9 (truncated) are bad."""
    root = one_person_root(tmp_path_factory.mktemp("bad_images"), num_train=20, num_val=6)
    break_image(image_file(root, "train", 3), "corrupt")
    break_image(image_file(root, "train", 4), "missing")
    break_image(image_file(root, "train", 9), "truncated")
    break_image(image_file(root, "val", 2), "corrupt")
    return root


def _train(root: Path, **kw) -> CocoWholeBodyDataset:
    ann = root / "annotations/coco_wholebody_train_v1.0.json"
    return CocoWholeBodyDataset(ann, root / "train2017", INPUT_WH, codec=CODEC, **kw)


def _val(root: Path, **kw) -> CocoWholeBodyDataset:
    return CocoWholeBodyDataset(root / "annotations/coco_wholebody_val_v1.0.json", root / "val2017", INPUT_WH, **kw)


def test_read_image_file_names_what_is_wrong(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), np.uint8), (5, 5), 0)
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), image)
    data = good.read_bytes()
    decoded, why = read_image_file(str(good))
    assert why is None and decoded.shape == (120, 160, 3)
    np.testing.assert_array_equal(decoded, cv2.imread(str(good), cv2.IMREAD_COLOR))  # as cv2.imread
    half = tmp_path / "half.jpg"
    half.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(half)) is not None  # why the end marker is checked: OpenCV decodes half a JPEG
    assert read_image_file(str(half)) == (None, "truncated") and jpeg_is_truncated(half.read_bytes())
    trailer = tmp_path / "trailer.jpg"  # bytes after the end marker (camera trailers): still a whole image
    trailer.write_bytes(data + b"\x00\x00TRAILER" * 10)
    assert read_image_file(str(trailer))[1] is None and not jpeg_is_truncated(trailer.read_bytes())
    garbage = tmp_path / "garbage.jpg"
    break_image(garbage, "corrupt")
    assert read_image_file(str(garbage)) == (None, "corrupt")
    assert read_image_file(str(tmp_path / "nope.jpg")) == (None, "missing")
    png = tmp_path / "cut.png"
    cv2.imwrite(str(png), image)
    png.write_bytes(png.read_bytes()[:3000])
    assert read_image_file(str(png)) == (None, "corrupt")  # OpenCV refuses a truncated PNG itself


def test_truncated_jpeg_is_a_data_error_in_strict_mode(root: Path) -> None:
    ds = _train(root)
    assert ds.on_bad_image == "raise" and "bad_index" not in ds[0]  # the default, and the sample contract
    with pytest.raises(DataError, match=r"cannot decode image .*000000000009\.jpg for image_id 9.*truncated JPEG"):
        ds[8]
    with pytest.raises(DataError, match=r"missing image file .*000000000004\.jpg for image_id 4, instance_id 4"):
        ds.__getitems__([0, 1, 3])  # the first bad image of the batch stops it


def test_training_replaces_a_bad_sample_by_the_next_instance_that_reads(root: Path) -> None:
    ds = _train(root, transforms=build_train_augmentations(), on_bad_image="replace")
    # index i is image (and instance) i + 1: images 3 (corrupt) and 4 (missing) follow each other, 9 is truncated
    batch = ds.__getitems__([1, 2, 3, 8, 19])
    assert [int(s["bad_index"]) for s in batch] == [-1, 2, 3, 8, -1]
    # image 3 -> 4 is missing too -> image 5; image 4 -> 5; image 9 -> 10; the good ones keep their instance
    assert [int(s["instance_id"]) for s in batch] == [2, 5, 5, 10, 20]
    again = _train(root, transforms=build_train_augmentations(), on_bad_image="replace")
    for a, b in zip(batch, again.__getitems__([1, 2, 3, 8, 19])):  # a rerun: the same batch, bit for bit
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert ds.describe_bad_image(8).endswith("000000000009.jpg (image_id 9, instance_id 9): truncated")
    assert "(image_id 4, instance_id 4): missing" in ds.describe_bad_image(3)


def test_replacement_gives_up_when_nothing_reads(tmp_path: Path) -> None:
    root = one_person_root(tmp_path, num_train=3, num_val=1)
    for image_id in (1, 2, 3):
        break_image(image_file(root, "train", image_id), "corrupt")
    ds = _train(root, on_bad_image="replace")
    with pytest.raises(DataError, match=r"no readable image to stand in for the bad image .*000000000001\.jpg"):
        ds[0]


def test_evaluation_keeps_a_bad_box_as_a_blank_marked_sample(root: Path) -> None:
    ds = _val(root, on_bad_image="drop")
    batch = ds.__getitems__([0, 1, 2])
    assert [int(s["bad_index"]) for s in batch] == [-1, 1, -1]
    assert [int(s["instance_id"]) for s in batch] == [1, 2, 3]  # the box stays (the module drops its prediction)
    blank = batch[1]["image"]
    assert torch.allclose(blank, blank[:, :1, :1].expand_as(blank))  # a constant (normalised black) crop
    collated = torch.utils.data.default_collate(batch)
    assert note_bad_rows(collated)["bad_rows"] == [1]
    with pytest.raises(ValueError, match="on_bad_image"):
        _val(root, on_bad_image="skip")


def test_policy_from_config() -> None:
    assert BadImagePolicy.from_config(None) == BadImagePolicy(strict=False, budget=0.001)
    policy = BadImagePolicy.from_config({"strict": False, "budget": 0.01})
    assert policy.limit(250) == 2 and policy.limit(None) is None
    assert BadImagePolicy(budget=2).limit(10**6) == 2 and BadImagePolicy(budget=0).limit(100) == 0
    assert BadImagePolicy(budget=None).limit(100) is None
    for budget in (-1, 2.5, "many", float("nan")):
        with pytest.raises(ValueError, match="data.bad_images.budget"):
            BadImagePolicy(budget=budget)
    with pytest.raises(ValueError, match=r"unknown keys \['budjet'\]"):
        BadImagePolicy.from_config({"budjet": 3})


def test_datamodule_modes(root: Path) -> None:
    kw = dict(image_hw=(64, 48), codec=CODEC, val_bbox_source="gt", num_workers=0)
    dm = WholeBodyDataModule(root, **kw)
    dm.setup("fit")
    assert dm.bad_images == BadImagePolicy() and dm.train_dataset.on_bad_image == "replace"
    assert dm.val_dataset.on_bad_image == "drop" and dm.train_dataset.num_images == 20
    strict = WholeBodyDataModule(root, bad_images={"strict": True, "budget": 5}, **kw)
    strict.setup("fit")
    assert strict.train_dataset.on_bad_image == strict.val_dataset.on_bad_image == "raise"

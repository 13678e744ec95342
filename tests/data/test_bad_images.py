"""Bad image files in the dataset: detection (a truncated JPEG included), the deterministic stand-in of training,
the blank "no prediction" sample of evaluation, strict mode, and the ``data.bad_images`` policy."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.bad_images import REASONS, break_image, image_file, one_person_root
from wbpose.codecs import MSRAHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.bad_images import (
    BadImagePolicy,
    jpeg_is_truncated,
    libjpeg_corruption,
    note_bad_rows,
    read_image_file,
)
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


@pytest.mark.parametrize("how", ["scrambled", "cut_and_closed"])
def test_jpeg_with_corrupt_data_is_a_bad_image(tmp_path: Path, capfd, how: str) -> None:
    """Garbage in the middle of the entropy-coded data, or half a JPEG given its end marker back: OpenCV decodes
    both without an error (half the picture wrong); libjpeg's warning of that one decode makes them bad images."""
    root = one_person_root(tmp_path, num_train=4, num_val=2)
    path = image_file(root, "train", 2)
    good_pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    break_image(path, how)
    wrong = cv2.imread(str(path), cv2.IMREAD_COLOR)  # what a plain decode would train on
    assert wrong is not None and (np.abs(wrong.astype(int) - good_pixels).max(-1) > 8).mean() > 0.2
    assert "Corrupt JPEG data" in capfd.readouterr().err  # its only trace: libjpeg's line on stderr
    image, why = read_image_file(str(path))
    assert image is None and re.fullmatch(REASONS[how], why), why
    assert not jpeg_is_truncated(path.read_bytes())  # it has its end marker: only the decode tells
    # libjpeg's line went into the reason, not to the terminal; stderr still works afterwards
    print("after", file=sys.stderr)
    err = capfd.readouterr().err
    assert "Corrupt JPEG data" not in err and "after" in err
    # good files decode to exactly what cv2.imread gives (the same single decode)
    for image_id in (1, 3, 4):
        other = image_file(root, "train", image_id)
        np.testing.assert_array_equal(read_image_file(str(other))[0], cv2.imread(str(other), cv2.IMREAD_COLOR))
    # strict (the dataset's default): a DataError naming the file, the record and libjpeg's message
    with pytest.raises(DataError, match=r"cannot decode image .*000000000002\.jpg for image_id 2, .*libjpeg reports"):
        _train(root)[1]
    # non-strict: replaced by the next readable instance, marked and described (what the run counts and logs)
    ds = _train(root, on_bad_image="replace")
    assert [int(s["bad_index"]) for s in ds.__getitems__([0, 1, 2])] == [-1, 1, -1]
    assert re.fullmatch(r".*000000000002\.jpg \(image_id 2, instance_id 2\): " + REASONS[how], ds.describe_bad_image(1))


def test_libjpeg_messages_are_told_apart_and_other_stderr_output_is_kept(tmp_path: Path, capfd) -> None:
    text = "Corrupt JPEG data: bad Huffman code\nsome other thread's line\n"
    assert libjpeg_corruption(text) == ("Corrupt JPEG data: bad Huffman code", "some other thread's line\n")
    assert libjpeg_corruption("Corrupt JPEG data: bad ICC marker\n") == (None, "Corrupt JPEG data: bad ICC marker\n")
    assert libjpeg_corruption("Premature end of JPEG file\n")[0] == "Premature end of JPEG file"
    assert libjpeg_corruption("Warning: unknown JFIF revision number 3.01\n")[0] is None
    # whatever reaches fd 2 during a decode, other than libjpeg's corrupt-data line, is written on to stderr
    root = one_person_root(tmp_path, num_train=1, num_val=1)
    path = image_file(root, "train", 1)
    break_image(path, "scrambled")
    capfd.readouterr()
    real_decode = cv2.imdecode

    def chatty_decode(buffer, flags):
        os.write(2, b"a line from elsewhere\n")
        return real_decode(buffer, flags)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cv2, "imdecode", chatty_decode)
        assert read_image_file(str(path))[1].startswith("corrupt: libjpeg reports")
    err = capfd.readouterr().err
    assert "a line from elsewhere" in err and "Corrupt JPEG data" not in err


def test_corrupt_jpeg_is_detected_in_a_forked_loader_worker(tmp_path: Path) -> None:
    """Each forked process (a DataLoader worker) listens on its own scratch file: a parent that decoded first and a
    child decoding after the fork both see their own warning."""
    root = one_person_root(tmp_path, num_train=2, num_val=1)
    bad, good = image_file(root, "train", 1), image_file(root, "train", 2)
    break_image(bad, "cut_and_closed")
    assert read_image_file(str(bad))[1].startswith("corrupt: libjpeg")  # the parent's scratch file exists now
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it decodes, then leave without pytest's teardown
        try:
            results = [read_image_file(str(p))[1] or "ok" for p in (good, bad, good)]
            os.write(write_fd, "|".join(results).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd) as f:
        child = f.read().split("|")
    assert child[0] == "ok" and child[1].startswith("corrupt: libjpeg reports") and child[2] == "ok"
    assert read_image_file(str(good))[1] is None and read_image_file(str(bad))[1].startswith("corrupt: libjpeg")


def test_encoded_samples_apply_the_same_policy(root: Path, tmp_path: Path) -> None:
    """decode_on=gpu (encoded samples): what a worker sees without decoding follows the same policy with the same
    messages and stand-ins; corrupt entropy-coded data is left to the device decoder (documented)."""
    ds = _train(root, transforms=build_train_augmentations(), on_bad_image="replace", encoded=True)
    batch = ds.__getitems__([1, 2, 3, 8, 19])
    assert [int(s["bad_index"]) for s in batch] == [-1, 2, 3, 8, -1]
    assert [int(s["instance_id"]) for s in batch] == [2, 5, 5, 10, 20]  # the CPU path's stand-ins
    assert batch[1]["encoded"] is batch[2]["encoded"]  # one file read for both samples on image 5
    with pytest.raises(DataError, match=r"cannot decode image .*000000000009\.jpg for image_id 9.*truncated JPEG"):
        _train(root, encoded=True)[8]
    val = _val(root, on_bad_image="drop", encoded=True).__getitems__([0, 1, 2])
    assert [int(s["bad_index"]) for s in val] == [-1, 1, -1] and val[1]["encoded"].is_blank
    small = one_person_root(tmp_path, num_train=2, num_val=1)
    break_image(image_file(small, "train", 1), "wrong_size")
    with pytest.raises(DataError, match=r"000000000001\.jpg decodes to 70x50 but the annotation file says 160x120"):
        _train(small, encoded=True)[0]
    break_image(image_file(small, "train", 2), "scrambled")
    assert _train(small, encoded=True)[1]["encoded"].raw_wh == (160, 120)  # not seen without decoding
    with pytest.raises(ValueError, match="photometric augmentation runs on the uint8 crop"):
        _train(small, encoded=True, photometric=lambda sample, rng: sample)

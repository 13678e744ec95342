"""The parsed-annotation cache (wbpose.data.cache): parse once, memory-map afterwards, never use a stale or bad
entry, build once when processes start together; the streaming parser equals the plain json path."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pytest

import wbpose.data.cache as cache
from helpers.annotations import make_wholebody_gt, write_json, write_root
from wbpose.data.annotations import load_instances
from wbpose.data.coco_files import _plain_annotation_arrays, parse_annotation_file
from wbpose.data.errors import DataError
from wbpose.synthetic.full_size import generate_full_size


@pytest.fixture()
def root(tmp_path: Path) -> dict[str, Path]:
    return write_root(tmp_path / "data")


def same_table(a, b) -> None:
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, other), name
        else:
            assert value == other, name


def test_cached_load_equals_parse_and_is_memory_mapped(root, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    plain = load_instances(root["val"], "det", root["det"])
    first = load_instances(root["val"], "det", root["det"], cache_dir=folder)
    same_table(plain, first)
    gt = load_instances(root["train"], cache_dir=folder)  # another file: its own entry
    assert len(gt.instance_ids) == 4

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(cache, "parse_annotation_file", no_parse)
    monkeypatch.setattr(cache, "parse_detection_file", no_parse)
    again = load_instances(root["val"], "det", root["det"], cache_dir=folder)
    same_table(plain, again)
    assert isinstance(again.bbox_xyxy, np.memmap) and not again.bbox_xyxy.flags.writeable
    same_table(gt, load_instances(root["train"], cache_dir=folder))
    with cache.use_cache_dir(folder):  # the process default (what the DataModule sets)
        same_table(again, load_instances(root["val"], "det", root["det"]))


def test_changed_source_is_rebuilt(root, tmp_path):
    folder = tmp_path / "cache"
    load_instances(root["train"], cache_dir=folder)
    data = json.loads(root["train"].read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 1]
    time.sleep(0.01)
    root["train"].write_text(json.dumps(data))
    table = load_instances(root["train"], cache_dir=folder)
    assert 1 not in table.instance_ids.tolist() and len(table.instance_ids) == 3


def test_same_size_and_mtime_but_other_content_is_caught_by_prepare(root, tmp_path):
    folder = tmp_path / "cache"
    cache.prepare(folder, [root["train"]])
    st = os.stat(root["train"])
    text = root["train"].read_text()
    root["train"].write_text(text.replace('"iscrowd": 1', '"iscrowd": 0', 1))  # same length
    os.utime(root["train"], ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.warns(UserWarning, match="rebuilding the annotation cache: .*changed"):
        cache.prepare(folder, [root["train"]])
    assert cache.annotation_arrays(root["train"], folder).iscrowd.sum() == 0


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_damaged_entry_is_detected_and_rebuilt(root, tmp_path, damage):
    folder = tmp_path / "cache"
    expected = parse_annotation_file(root["train"])
    cache.prepare(folder, [root["train"]])
    entry = next(p for p in folder.iterdir() if p.is_dir())
    target = entry / "keypoints.npy"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[-5] ^= 0xFF
        target.write_bytes(bytes(raw))
    else:
        (entry / "meta.json").write_text("{not json")
    with pytest.warns(UserWarning, match="rebuilding the annotation cache"):
        cache.prepare(folder, [root["train"]])  # the full check (prepare_data) sees every kind of damage
    assert np.array_equal(cache.annotation_arrays(root["train"], folder).keypoints, expected.keypoints)


def _load_in_child(ann: str, folder: str, log: str) -> None:
    original = cache.parse_annotation_file

    def counting(path, allow_empty=False):
        with open(log, "a") as f:
            f.write("parse\n")
        time.sleep(0.5)  # long enough for the other process to arrive while this one builds
        return original(path, allow_empty)

    cache.parse_annotation_file = counting
    arrays = cache.annotation_arrays(ann, folder)
    assert len(arrays.ann_ids) > 0


def test_two_processes_started_together_parse_once(root, tmp_path):
    log = tmp_path / "parses.log"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_load_in_child, args=(str(root["val"]), str(tmp_path / "c"), str(log))) for _ in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text().count("parse") == 1


def test_streaming_parser_equals_plain_path(tmp_path):
    generate_full_size(tmp_path / "full", scale=0.002, seed=1, images=False)
    gt = make_wholebody_gt(5, 4, seed=2)
    gt["annotations"][0]["iscrowd"] = True  # a bool flag
    for path in (tmp_path / "full/annotations/coco_wholebody_train_v1.0.json", write_json(tmp_path / "g.json", gt)):
        fast, plain = parse_annotation_file(path), _plain_annotation_arrays(str(path), False)
        for name, value in vars(fast).items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, getattr(plain, name), equal_nan=value.dtype.kind == "f"), name


def test_datamodule_prepares_and_maps_the_cache(root, tmp_path):
    from wbpose.codecs import MSRAHeatmap
    from wbpose.engine.datamodule import WholeBodyDataModule
    from wbpose.metrics.evaluation import load_gt_arrays

    folder = tmp_path / "cache"
    dm = WholeBodyDataModule(root["val"].parents[1], image_hw=(64, 48), codec=MSRAHeatmap((64, 48), (16, 12), 1.0),
                             batch_size=2, num_workers=1, pin_memory=False, cache_dir=folder)  # fmt: skip
    try:
        dm.prepare_data()
        assert len([p for p in folder.iterdir() if p.is_dir()]) == 3  # train, val, detections
        dm.setup("fit")
        assert isinstance(dm.train_dataset.instances.keypoints_xy, np.memmap)
        assert isinstance(load_gt_arrays(dm.val_ann_file).keypoints, np.memmap)  # the metric reads the cache
        batch = next(iter(dm.train_dataloader()))  # a worker with the prefaulting worker_init_fn
        assert batch["image"].shape[0] == 2
    finally:
        cache.set_cache_dir(None)


@pytest.mark.parametrize("compact", [True, False])
def test_streaming_parser_zero_fields_crowd_rows_and_bad_fields(tmp_path, compact):
    """All-zero keypoint fields (recognised by their text, in each writer's spelling) read as zeros, ``-0.0`` keeps
    its sign, a crowd region with missing or short fields gets a zero row, and a person with a null field is named
    by the plain path's error; everything equal to the plain json path."""
    gt = make_wholebody_gt(4, 3, seed=5)
    anns = gt["annotations"]
    anns[0]["face_kpts"] = [0] * 204  # integers
    anns[1]["lefthand_kpts"] = [0.0] * 63
    anns[2]["righthand_kpts"] = [-0.0] * 63  # not the zero text: parsed, the sign kept
    anns[3]["face_kpts"] = [0.0] * 203 + [7.5]
    anns[4].update(iscrowd=1, num_keypoints=0)
    for field in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"):
        del anns[4][field]
    anns[5].update(iscrowd=1, num_keypoints=0, foot_kpts=[1.0, 2.0, 2.0])  # short: the whole row is zero
    path = tmp_path / "g.json"
    path.write_text(json.dumps(gt, separators=(",", ":")) if compact else json.dumps(gt, indent=1))
    fast, plain = parse_annotation_file(path), _plain_annotation_arrays(str(path), False)
    for name, value in vars(fast).items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, getattr(plain, name), equal_nan=value.dtype.kind == "f"), name
    kp = fast.keypoints.reshape(len(anns), -1)
    assert (kp[0, 69:273] == 0).all() and np.signbit(kp[2, -63:]).all() and kp[3, 272] == 7.5
    assert (kp[4] == 0).all() and (kp[5] == 0).all() and kp[6].any()
    anns[6]["face_kpts"] = None
    path.write_text(json.dumps(gt))
    with pytest.raises(DataError, match="face_kpts"):
        parse_annotation_file(path)

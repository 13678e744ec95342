"""COCO(-WholeBody) json at the level of json objects: reading a file with errors that name it, the record checks
shared by the array parsers, and xtcocotools' ``COCO`` (the reference evaluation, ``engine="xtcocotools"``).

The array parsers (:mod:`wbpose.data.coco_files`, :mod:`wbpose.data.detection_files`) use these checks on their
plain path, so a malformed file gets the same :class:`~wbpose.data.errors.DataError` (file, record, field) from
every reader. Torch-free.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
from collections.abc import Iterator
from typing import Any

from wbpose.data.errors import DataError
from wbpose.keypoints import PART_FIELDS, PART_SLICES

__all__ = [
    "FIELD_LENGTHS",
    "bbox_check",
    "check_keypoint_fields",
    "check_records",
    "check_top_level",
    "load_coco",
    "paused_gc",
    "read_bytes",
    "read_json",
]

#: Expected list length of each keypoint field (3 numbers per keypoint), in concatenation order.
FIELD_LENGTHS: dict[str, int] = {PART_FIELDS[p]: 3 * (sl.stop - sl.start) for p, sl in PART_SLICES.items()}


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large file is decoded (then restore its state).

    Decoding makes millions of containers (a list per keypoint field, a record per annotation), which trigger
    collections over every object of the process: in a process that holds many (a training run, a benchmark) those
    cost more than the decoding itself. The decoded objects form no cycles; they are freed by reference counting.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Load a json file, raising :class:`DataError` naming the file when it is missing or not valid json."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} is not valid json: {e}") from e


def read_bytes(path: str | os.PathLike, what: str) -> bytes:
    """The bytes of a file, raising :class:`DataError` naming it when it is missing."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        return f.read()


def check_records(records: list, keys: tuple[str, ...], path: str, kind: str) -> None:
    """Raise :class:`DataError` naming the record unless each of ``records`` is an object with every key."""
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: {kind} #{i} is a {type(rec).__name__}, expected an object")
        for key in keys:
            if key not in rec:
                rid = rec.get("id", "?")
                raise DataError(f"{path}: {kind} #{i} (id {rid}) has no field '{key}'")


def check_top_level(data: Any, path: str, *, allow_empty: bool) -> None:
    """The checks every annotation file passes (shape of the top level and required record fields)."""
    if not isinstance(data, dict):
        raise DataError(f"annotation file {path}: expected a json object, got a {type(data).__name__}")
    for key in ("images", "annotations"):
        empty_ok = allow_empty and key == "annotations" and data.get(key) == []
        if (not isinstance(data.get(key), list) or not data[key]) and not empty_ok:
            state = "missing" if key not in data else "empty or not a list"
            raise DataError(f"annotation file {path} has no {key} ('{key}' is {state}): expected COCO-WholeBody json")
    check_records(data["images"], ("id", "file_name", "width", "height"), path, "image")
    ann_keys = ("id", "image_id", "bbox") + (("category_id",) if "categories" in data else ())
    check_records(data["annotations"], ann_keys, path, "annotation")


def check_keypoint_fields(ann: dict[str, Any], path: str) -> None:
    """Raise :class:`DataError` unless a non-crowd annotation has all 5 keypoint lists and ``num_keypoints``."""
    aid = ann["id"]
    for name, length in FIELD_LENGTHS.items():
        kp = ann.get(name)
        if not isinstance(kp, list) or len(kp) != length:
            got = "missing" if kp is None else f"of length {len(kp)}" if isinstance(kp, list) else repr(kp)
            raise DataError(
                f"{path}: annotation id {aid} field '{name}' is {got}; expected a list of {length} numbers "
                f"({length // 3} keypoints x (x, y, v))"
            )
    if "num_keypoints" not in ann:
        raise DataError(f"{path}: annotation id {aid} has no field 'num_keypoints'")


def bbox_check(bbox: Any, path: str, what: str) -> None:
    """Raise :class:`DataError` naming ``what`` unless ``bbox`` is a list of four values."""
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        raise DataError(f"{path}: {what} field 'bbox' must be [x, y, w, h], got {bbox!r}")


def load_coco(ann_file: str | os.PathLike, *, allow_empty: bool = False) -> Any:
    """Read a COCO(-WholeBody) annotation json into xtcocotools' ``COCO`` (prints silenced), checking its shape.

    Args:
        ann_file: the json file.
        allow_empty: accept an empty ``annotations`` list (the metric scores it as undefined, -1; a dataset
            cannot train or evaluate on it).

    Raises:
        DataError: a missing file, invalid json, or a missing/malformed field (the message names file and record).
    """
    from xtcocotools.coco import COCO  # the reference evaluation only

    path = str(ann_file)
    data = read_json(path, "annotation file")
    check_top_level(data, path, allow_empty=allow_empty)
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(annotation_file=path, ann_data=data)

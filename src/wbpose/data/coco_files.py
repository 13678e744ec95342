"""Reading COCO(-WholeBody) json files: one loader for the dataset and the metric, with errors that name the file.

Torch-free (``scripts/score_results.py`` scores a results file without importing torch).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any

from xtcocotools.coco import COCO

from wbpose.data.errors import DataError

__all__ = ["check_records", "load_coco", "read_json"]


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Load a json file, raising :class:`DataError` naming the file when it is missing or not valid json."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} is not valid json: {e}") from e


def check_records(records: list, keys: tuple[str, ...], path: str, kind: str) -> None:
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: {kind} #{i} is a {type(rec).__name__}, expected an object")
        for key in keys:
            if key not in rec:
                rid = rec.get("id", "?")
                raise DataError(f"{path}: {kind} #{i} (id {rid}) has no field '{key}'")


def load_coco(ann_file: str | os.PathLike, allow_empty: bool = False) -> COCO:
    """Read a COCO(-WholeBody) annotation json into xtcocotools' ``COCO`` (prints silenced), checking its shape.

    Args:
        ann_file: the json file.
        allow_empty: accept an empty ``annotations`` list (the metric scores it as undefined, -1; a dataset
            cannot train or evaluate on it).

    Raises:
        DataError: a missing file, invalid json, or a missing/malformed field (the message names file and record).
    """
    path = str(ann_file)
    data = read_json(path, "annotation file")
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
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(annotation_file=path, ann_data=data)

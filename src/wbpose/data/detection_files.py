"""COCO detection-results json (person boxes) read into arrays: :func:`parse_detection_file`.

Well-formed files are decoded by ``msgspec`` into typed records; anything else goes through ``json`` objects and
the shared record checks (:mod:`wbpose.data.coco_json`), whose :class:`~wbpose.data.errors.DataError` names the
file, the record and the field. Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgspec
import numpy as np

from wbpose.data.coco_json import bbox_check, check_records, paused_gc, read_bytes, read_json
from wbpose.data.errors import DataError

__all__ = ["DetectionArrays", "parse_detection_file"]


@dataclass
class DetectionArrays:
    """A COCO detection-results json as arrays (file order). ``image_ids``/``category_ids`` (N,) int64, ``bbox``
    (N, 4) float64 xywh, ``scores`` (N,) float64."""

    image_ids: np.ndarray
    category_ids: np.ndarray
    bbox: np.ndarray
    scores: np.ndarray
    source: str = ""


class _Det(msgspec.Struct, gc=False):
    image_id: int
    category_id: int
    bbox: list[float]
    score: float


def parse_detection_file(det_file: str | os.PathLike) -> DetectionArrays:
    """Parse a COCO detection-results json (``[{image_id, category_id, bbox, score}, ...]``) into arrays.

    Raises:
        DataError: a missing file, invalid json, or a malformed record (the message names file and record).
    """
    path = str(det_file)
    raw = read_bytes(path, "detection file")
    with paused_gc():
        return _detection_arrays(raw, path)


def _detection_arrays(raw: bytes, path: str) -> DetectionArrays:
    try:
        typed = msgspec.json.decode(raw, type=list[_Det])
    except msgspec.DecodeError:
        typed = None
    if typed is not None and all(len(d.bbox) == 4 for d in typed):
        n = len(typed)
        return DetectionArrays(
            np.asarray([d.image_id for d in typed], np.int64).reshape(n),
            np.asarray([d.category_id for d in typed], np.int64).reshape(n),
            np.asarray([d.bbox for d in typed], np.float64).reshape(n, 4),
            np.asarray([d.score for d in typed], np.float64).reshape(n),
            path,
        )
    dets = read_json(path, "detection file")
    if not isinstance(dets, list):
        raise DataError(
            f"detection file {path}: expected a json list of {{image_id, category_id, bbox, score}} records, "
            f"got a {type(dets).__name__}"
        )
    check_records(dets, ("image_id", "category_id", "bbox", "score"), path, "detection")
    for i, d in enumerate(dets):
        bbox_check(d["bbox"], path, f"detection #{i}")
    n = len(dets)
    try:
        return DetectionArrays(
            np.asarray([d["image_id"] for d in dets], np.int64).reshape(n),
            np.asarray([d["category_id"] for d in dets], np.int64).reshape(n),
            np.asarray([d["bbox"] for d in dets], np.float64).reshape(n, 4),
            np.asarray([d["score"] for d in dets], np.float64).reshape(n),
            path,
        )
    except (TypeError, ValueError) as e:
        raise DataError(f"detection file {path}: non-numeric field ({e})") from e

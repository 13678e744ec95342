"""Reading COCO(-WholeBody) json files: one loader for the dataset and the metric, with errors that name the file.

Two readers:

- :func:`parse_annotation_file` / :func:`parse_detection_file` turn a file straight into numpy arrays
  (:class:`CocoArrays`, :class:`DetectionArrays`), which is what the dataset, the cache (:mod:`wbpose.data.cache`)
  and the fast metric use. ``msgspec`` decodes the file once into typed records that keep only the fields read
  here (the ``segmentation`` polygons, part boxes and ``*_valid`` flags are skipped unparsed), with each keypoint
  list left as its raw text; then, in chunks, all-zero lists (unlabelled parts: most faces and hands) are
  recognised by their text and the others decoded together into preallocated arrays. Peak memory is the file's
  bytes plus the arrays plus a small record per annotation and one chunk of numbers, instead of a Python object
  per number (``json.load`` of the 748 MB train file holds about 6 GB); figures in the README.
- :func:`load_coco` builds xtcocotools' ``COCO`` (the reference evaluation, ``engine="xtcocotools"``).

Well-formed files take the fast path. Anything it cannot decode (a missing field, a wrong type, an empty list)
sends the file down the plain path (``json`` objects + the same checks as before), which raises a
:class:`~wbpose.data.errors.DataError` naming the file, the record and the field, or, for a file that is unusual
but valid (say an integer written as ``1.0``), converts it the slow way. Torch-free (``scripts/score_results.py``
scores a results file without importing torch).
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from wbpose.data.errors import DataError
from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES

__all__ = [
    "FIELD_LENGTHS",
    "CocoArrays",
    "DetectionArrays",
    "check_records",
    "load_coco",
    "parse_annotation_file",
    "parse_detection_file",
    "paused_gc",
    "read_json",
]

#: Expected list length of each keypoint field (3 numbers per keypoint), in concatenation order.
FIELD_LENGTHS: dict[str, int] = {PART_FIELDS[p]: 3 * (sl.stop - sl.start) for p, sl in PART_SLICES.items()}
#: Annotations whose keypoint lists are decoded together (at most 1.6 million numbers in flight as Python floats).
CHUNK = 4096


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


def _read_bytes(path: str | os.PathLike, what: str) -> bytes:
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        return f.read()


def check_records(records: list, keys: tuple[str, ...], path: str, kind: str) -> None:
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: {kind} #{i} is a {type(rec).__name__}, expected an object")
        for key in keys:
            if key not in rec:
                rid = rec.get("id", "?")
                raise DataError(f"{path}: {kind} #{i} (id {rid}) has no field '{key}'")


def _check_top_level(data: Any, path: str, allow_empty: bool) -> None:
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


def load_coco(ann_file: str | os.PathLike, allow_empty: bool = False) -> Any:
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
    _check_top_level(data, path, allow_empty)
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(annotation_file=path, ann_data=data)


# ------------------------------------------------------------------------------------------------- arrays
@dataclass
class CocoArrays:
    """A COCO-WholeBody annotation file as arrays: M images (sorted by id), C categories, N annotations (file order).

    Attributes:
        image_ids: (M,) int64, ascending.
        file_names: (M,) str.
        image_wh: (M, 2) int64 (width, height).
        category_ids: (C,) int64, ascending (empty when the file has no ``categories``).
        ann_ids: (N,) int64 annotation ``id``.
        ann_image_ids: (N,) int64 ``image_id``.
        ann_category_ids: (N,) int64 ``category_id`` (1 when absent).
        iscrowd: (N,) bool.
        num_keypoints: (N,) int64 (the body count; 0 for crowd people).
        bbox: (N, 4) float64 ``[x, y, w, h]`` as given.
        area: (N,) float64, NaN when absent.
        keypoints: (N, 133, 3) float64 ``x, y, v`` as given (zeros for a crowd person without keypoint fields).
        source: the file it was read from.
    """

    image_ids: np.ndarray
    file_names: np.ndarray
    image_wh: np.ndarray
    category_ids: np.ndarray
    ann_ids: np.ndarray
    ann_image_ids: np.ndarray
    ann_category_ids: np.ndarray
    iscrowd: np.ndarray
    num_keypoints: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    keypoints: np.ndarray
    source: str = ""

    def image_rows(self, image_ids: np.ndarray) -> np.ndarray:
        """Row in :attr:`image_ids` of each id (the ids must exist)."""
        return np.searchsorted(self.image_ids, np.asarray(image_ids, dtype=np.int64))

    def unknown_images(self, image_ids: np.ndarray) -> np.ndarray:
        """The distinct ids of ``image_ids`` that are not images of this file."""
        ids = np.unique(np.asarray(image_ids, dtype=np.int64))
        rows = np.minimum(np.searchsorted(self.image_ids, ids), max(len(self.image_ids) - 1, 0))
        return ids[self.image_ids[rows] != ids] if len(self.image_ids) else ids


@dataclass
class DetectionArrays:
    """A COCO detection-results json as arrays (file order). ``image_ids``/``category_ids`` (N,) int64, ``bbox``
    (N, 4) float64 xywh, ``scores`` (N,) float64."""

    image_ids: np.ndarray
    category_ids: np.ndarray
    bbox: np.ndarray
    scores: np.ndarray
    source: str = ""


_NO_FIELD = msgspec.Raw(b"")
_NULL = msgspec.Raw(b"null")


def _zero_texts() -> dict[str, dict[int, tuple[msgspec.Raw, ...]]]:
    out: dict[str, dict[int, tuple[msgspec.Raw, ...]]] = {}
    for name, length in FIELD_LENGTHS.items():
        by_length = out.setdefault(name, {})
        for text in (b"[" + sep.join([zero] * length) + b"]" for zero in (b"0", b"0.0") for sep in (b",", b", ")):
            by_length[len(text)] = (*by_length.get(len(text), ()), msgspec.Raw(text))
    return out


#: Per keypoint field, its all-zero texts as json writers print them (``0``/``0.0``, ``,``/``, ``), by length: an
#: unlabelled part (most faces and hands of the real files) is recognised by comparing bytes, not parsing numbers.
_ZERO_TEXTS = _zero_texts()
_LISTS_DECODER = msgspec.json.Decoder(list[list[float]])


class _Image(msgspec.Struct, gc=False):
    id: int
    file_name: str
    width: int
    height: int


class _Category(msgspec.Struct, gc=False):
    id: int


class _Ann(msgspec.Struct, gc=False):
    id: int
    image_id: int
    bbox: list[float]
    category_id: int | None = None
    iscrowd: bool | int = 0
    area: float | None = None
    num_keypoints: int | None = None
    # the keypoint lists as their json text (empty when absent), decoded by _fill_keypoints
    keypoints: msgspec.Raw = _NO_FIELD
    foot_kpts: msgspec.Raw = _NO_FIELD
    face_kpts: msgspec.Raw = _NO_FIELD
    lefthand_kpts: msgspec.Raw = _NO_FIELD
    righthand_kpts: msgspec.Raw = _NO_FIELD


class _File(msgspec.Struct, gc=False):
    images: list[_Image] | None = None
    annotations: list[_Ann] | None = None
    categories: list[_Category] | None = None


class _Det(msgspec.Struct, gc=False):
    image_id: int
    category_id: int
    bbox: list[float]
    score: float


class _SlowPath(Exception):
    """The streaming parser met something it does not handle: use the plain json path (exact error messages)."""


def _chunks(items: list, size: int = CHUNK) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _image_arrays(ids: list[int], names: list[str], wh: list[tuple[int, int]]) -> tuple[np.ndarray, ...]:
    """Images sorted by id; a repeated id keeps its last record (as xtcocotools' ``imgs`` dict)."""
    ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    last = len(ids_arr) - 1 - np.unique(ids_arr[::-1], return_index=True)[1]  # last occurrence, ascending id
    names_arr = np.asarray(names, dtype=str).reshape(-1)
    return ids_arr[last], names_arr[last], np.asarray(wh, dtype=np.int64).reshape(-1, 2)[last]


def _fill_annotations(anns: list[dict], out: dict[str, np.ndarray], start: int) -> None:
    """Copy a chunk of annotations (dicts, on the plain path) into the output arrays."""
    n = len(anns)
    sl = slice(start, start + n)
    rows = []
    for a in anns:
        parts = [a.get(name) for name in FIELD_LENGTHS]
        if any(p is None for p in parts) or [len(p) for p in parts] != list(FIELD_LENGTHS.values()):
            if not a.get("iscrowd", 0):
                raise _SlowPath
            rows.append([0.0] * (NUM_KEYPOINTS * 3))
            continue
        rows.append(parts[0] + parts[1] + parts[2] + parts[3] + parts[4])
    try:
        out["keypoints"][sl] = np.asarray(rows, dtype=np.float64).reshape(n, NUM_KEYPOINTS, 3)
    except (TypeError, ValueError) as e:
        raise _SlowPath from e
    del rows
    _fill_scalars(anns, out, start, typed=False)


def _fill_scalars(anns: list, out: dict[str, np.ndarray], start: int, typed: bool) -> None:
    """Copy the ids, flags, areas and boxes of a chunk of annotations into the output arrays."""
    sl = slice(start, start + len(anns))
    get = getattr if typed else (lambda a, k, d=None: a.get(k, d))
    out["ann_ids"][sl] = [get(a, "id") for a in anns]
    out["ann_image_ids"][sl] = [get(a, "image_id") for a in anns]
    out["ann_category_ids"][sl] = [c if (c := get(a, "category_id", None)) is not None else 1 for a in anns]
    out["iscrowd"][sl] = [bool(get(a, "iscrowd", 0)) for a in anns]
    out["num_keypoints"][sl] = [0 if get(a, "iscrowd", 0) else get(a, "num_keypoints") for a in anns]
    out["area"][sl] = [np.nan if (v := get(a, "area", None)) is None else v for a in anns]
    boxes = [get(a, "bbox") for a in anns]
    if any(not isinstance(b, list | tuple) or len(b) != 4 for b in boxes):
        raise _SlowPath
    out["bbox"][sl] = boxes


def _fill_keypoints(anns: list[_Ann], out: np.ndarray) -> None:
    """Decode the keypoint fields of a chunk of ``_Ann`` records into ``out`` (n, 399): all-zero texts are recognised
    as such, the others are decoded together per field (one list of floats per record) and copied in one go.

    A crowd record may lack keypoint fields (or have ones of another length): its row stays zero. Any other record
    with a missing, null or wrong-length field, or a non-number, raises ``_SlowPath`` (the plain path names it).
    """
    n = len(anns)
    bad = np.zeros(n, bool)
    col = 0
    for name, length in FIELD_LENGTHS.items():
        zeros = _ZERO_TEXTS[name]
        texts = [getattr(a, name) for a in anns]
        todo = [j for j, t in enumerate(texts) if t not in zeros.get(len(t), ())]
        absent = [j for j in todo if len(texts[j]) == 0 or texts[j] == _NULL]
        if absent:
            bad[absent] = True
            todo = [j for j in todo if not bad[j]]
        if todo:
            try:
                lists = _LISTS_DECODER.decode(b"[" + b",".join([texts[j] for j in todo]) + b"]")
            except msgspec.DecodeError as e:
                raise _SlowPath from e
            right = [j for j, values in zip(todo, lists) if len(values) == length]
            if len(right) < len(todo):
                bad[[j for j, values in zip(todo, lists) if len(values) != length]] = True
                lists = [values for values in lists if len(values) == length]
            values = np.fromiter(itertools.chain.from_iterable(lists), np.float64, len(right) * length)
            out[right, col : col + length] = values.reshape(len(right), length)
        col += length
    if bad.any():
        crowd = np.fromiter((bool(a.iscrowd) for a in anns), bool, n)
        if not crowd[bad].all():
            raise _SlowPath
        out[bad] = 0.0  # a crowd region without (complete) keypoint fields


def _empty_annotation_arrays(n: int) -> dict[str, np.ndarray]:
    return {
        "ann_ids": np.zeros(n, np.int64),
        "ann_image_ids": np.zeros(n, np.int64),
        "ann_category_ids": np.zeros(n, np.int64),
        "iscrowd": np.zeros(n, bool),
        "num_keypoints": np.zeros(n, np.int64),
        "bbox": np.zeros((n, 4)),
        "area": np.zeros(n),
        "keypoints": np.zeros((n, NUM_KEYPOINTS, 3)),
    }


def _fast_annotation_arrays(raw: bytes, path: str, allow_empty: bool) -> CocoArrays:
    try:
        top = msgspec.json.decode(raw, type=_File)
    except msgspec.DecodeError as e:
        raise _SlowPath from e
    if not top.images or top.annotations is None or (not top.annotations and not allow_empty):
        raise _SlowPath
    image_ids, file_names, image_wh = _image_arrays(
        [im.id for im in top.images], [im.file_name for im in top.images], [(im.width, im.height) for im in top.images]
    )
    n = len(top.annotations)
    out = _empty_annotation_arrays(n)
    has_categories = top.categories is not None
    for start, anns in _chunks(top.annotations):
        if has_categories and any(a.category_id is None for a in anns):
            raise _SlowPath
        if any(a.num_keypoints is None and not a.iscrowd for a in anns):
            raise _SlowPath
        _fill_keypoints(anns, out["keypoints"][start : start + len(anns)].reshape(len(anns), 3 * NUM_KEYPOINTS))
        _fill_scalars(anns, out, start, typed=True)
    del top.annotations
    categories = [c.id for c in top.categories] if has_categories else []
    return CocoArrays(image_ids, file_names, image_wh, np.unique(np.asarray(categories, np.int64)), **out, source=path)


def _check_keypoint_fields(ann: dict[str, Any], path: str) -> None:
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


def _bbox_check(bbox: Any, path: str, what: str) -> None:
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        raise DataError(f"{path}: {what} field 'bbox' must be [x, y, w, h], got {bbox!r}")


def _plain_annotation_arrays(path: str, allow_empty: bool) -> CocoArrays:
    """The plain path: ``json`` objects, every check with its message, then the same arrays."""
    data = read_json(path, "annotation file")
    _check_top_level(data, path, allow_empty)
    images, anns = data["images"], data["annotations"]
    image_ids, file_names, image_wh = _image_arrays(
        [im["id"] for im in images], [im["file_name"] for im in images], [(im["width"], im["height"]) for im in images]
    )
    known = set(image_ids.tolist())
    for ann in anns:
        aid = ann["id"]
        if ann["image_id"] not in known:
            raise DataError(f"{path}: annotation id {aid} has image_id {ann['image_id']}, which is not in 'images'")
        _bbox_check(ann["bbox"], path, f"annotation id {aid}")
        if not ann.get("iscrowd", 0):
            _check_keypoint_fields(ann, path)
            for name in FIELD_LENGTHS:
                if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in ann[name]):
                    bad = next(v for v in ann[name] if not isinstance(v, int | float) or isinstance(v, bool))
                    raise DataError(f"{path}: annotation id {aid} has non-numeric keypoint values: {bad!r}")
    out = _empty_annotation_arrays(len(anns))
    try:
        for start, chunk in _chunks(anns):
            _fill_annotations(chunk, out, start)
    except (_SlowPath, TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed annotation field ({e!r})") from e
    categories = [c["id"] for c in data.get("categories", []) if isinstance(c, dict) and "id" in c]
    return CocoArrays(image_ids, file_names, image_wh, np.unique(np.asarray(categories, np.int64)), **out, source=path)


def _check_annotation_arrays(arrays: CocoArrays, path: str) -> None:
    """Checks that need all the annotations: known image ids, unique annotation ids."""
    unknown = arrays.unknown_images(arrays.ann_image_ids)
    if len(unknown):
        first = int(np.flatnonzero(np.isin(arrays.ann_image_ids, unknown))[0])
        raise DataError(
            f"{path}: annotation id {int(arrays.ann_ids[first])} has image_id {int(arrays.ann_image_ids[first])}, "
            "which is not in 'images'"
        )
    if len(np.unique(arrays.ann_ids)) != len(arrays.ann_ids):
        raise DataError(f"{path}: annotation ids are not unique")


def parse_annotation_file(ann_file: str | os.PathLike, allow_empty: bool = False) -> CocoArrays:
    """Parse a COCO-WholeBody annotation json into :class:`CocoArrays` (streaming; see the module docstring).

    Args:
        ann_file: the json file.
        allow_empty: accept an empty ``annotations`` list (the metric scores it as undefined).

    Raises:
        DataError: a missing file, invalid json, or a missing/malformed field (the message names file and record).
    """
    path = str(ann_file)
    raw = _read_bytes(path, "annotation file")
    with paused_gc():
        try:
            arrays = _fast_annotation_arrays(raw, path, allow_empty)
        except _SlowPath:
            del raw
            arrays = _plain_annotation_arrays(path, allow_empty)
    _check_annotation_arrays(arrays, path)
    return arrays


def parse_detection_file(det_file: str | os.PathLike) -> DetectionArrays:
    """Parse a COCO detection-results json (``[{image_id, category_id, bbox, score}, ...]``) into arrays.

    Raises:
        DataError: a missing file, invalid json, or a malformed record (the message names file and record).
    """
    path = str(det_file)
    raw = _read_bytes(path, "detection file")
    with paused_gc():
        return _detection_arrays(raw, path)


def _detection_arrays(raw: bytes, path: str) -> DetectionArrays:
    try:
        dets = msgspec.json.decode(raw, type=list[_Det])
        if any(len(d.bbox) != 4 for d in dets):
            raise _SlowPath
        n = len(dets)
        return DetectionArrays(
            np.asarray([d.image_id for d in dets], np.int64).reshape(n),
            np.asarray([d.category_id for d in dets], np.int64).reshape(n),
            np.asarray([d.bbox for d in dets], np.float64).reshape(n, 4),
            np.asarray([d.score for d in dets], np.float64).reshape(n),
            path,
        )
    except (msgspec.DecodeError, _SlowPath):
        pass
    dets = read_json(path, "detection file")
    if not isinstance(dets, list):
        raise DataError(
            f"detection file {path}: expected a json list of {{image_id, category_id, bbox, score}} records, "
            f"got a {type(dets).__name__}"
        )
    check_records(dets, ("image_id", "category_id", "bbox", "score"), path, "detection")
    for i, d in enumerate(dets):
        _bbox_check(d["bbox"], path, f"detection #{i}")
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

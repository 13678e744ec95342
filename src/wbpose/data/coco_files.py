"""COCO-WholeBody annotation files read straight into numpy arrays (:class:`CocoArrays`), for the dataset, the
cache (:mod:`wbpose.data.cache`) and the fast metric.

``msgspec`` decodes the file once into typed records that keep only the fields read here (the ``segmentation``
polygons, part boxes and ``*_valid`` flags are skipped unparsed), with each keypoint list left as its raw text;
then, in chunks, all-zero lists (unlabelled parts: most faces and hands) are recognised by their text and the
others decoded together into preallocated arrays. Peak memory is the file's bytes plus the arrays plus a small
record per annotation and one chunk of numbers, instead of a Python object per number (``json.load`` of the
748 MB train file holds about 6 GB); figures in docs/benchmarks.md.

Well-formed files take the fast path. Anything it cannot decode (a missing field, a wrong type, an empty list)
sends the file down the plain path (``json`` objects + the checks of :mod:`wbpose.data.coco_json`), which raises
a :class:`~wbpose.data.errors.DataError` naming the file, the record and the field, or, for a file that is unusual
but valid (say an integer written as ``1.0``), converts it the slow way. Detection files:
:mod:`wbpose.data.detection_files`; xtcocotools' ``COCO``: :func:`wbpose.data.coco_json.load_coco`. Torch-free
(``scripts/score.py`` scores a results file without importing torch).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import numpy as np

from wbpose.data.coco_json import (
    FIELD_LENGTHS,
    bbox_check,
    check_keypoint_fields,
    check_top_level,
    paused_gc,
    read_bytes,
    read_json,
)
from wbpose.data.errors import DataError
from wbpose.keypoints import NUM_KEYPOINTS

__all__ = ["CocoArrays", "parse_annotation_file"]

#: Annotations whose keypoint lists are decoded together (at most 1.6 million numbers in flight as Python floats).
CHUNK = 4096


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


def _fill_scalars(anns: list, out: dict[str, np.ndarray], start: int, *, typed: bool) -> None:
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


def _plain_annotation_arrays(path: str, allow_empty: bool) -> CocoArrays:
    """The plain path: ``json`` objects, every check with its message, then the same arrays."""
    data = read_json(path, "annotation file")
    check_top_level(data, path, allow_empty=allow_empty)
    images, anns = data["images"], data["annotations"]
    image_ids, file_names, image_wh = _image_arrays(
        [im["id"] for im in images], [im["file_name"] for im in images], [(im["width"], im["height"]) for im in images]
    )
    known = set(image_ids.tolist())
    for ann in anns:
        aid = ann["id"]
        if ann["image_id"] not in known:
            raise DataError(f"{path}: annotation id {aid} has image_id {ann['image_id']}, which is not in 'images'")
        bbox_check(ann["bbox"], path, f"annotation id {aid}")
        if not ann.get("iscrowd", 0):
            check_keypoint_fields(ann, path)
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
    raw = read_bytes(path, "annotation file")
    with paused_gc():
        try:
            arrays = _fast_annotation_arrays(raw, path, allow_empty)
        except _SlowPath:
            del raw
            arrays = _plain_annotation_arrays(path, allow_empty)
    _check_annotation_arrays(arrays, path)
    return arrays

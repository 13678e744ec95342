"""The COCO-WholeBody results json: build it, write it, read it (as dicts or straight into arrays).

- Results files are written atomically and readable by others (mode 0666 less the umask, as ``open`` gives).
- Every float keeps full precision (shortest round-trip repr), so a direct xtcocotools run on the file gives the
  same numbers. Arrays are encoded with ``orjson`` (each part's (N, 3k) block at once); lists of dicts with
  ``orjson`` too.
- Reading: :func:`read_results_file` gives checked dicts (the reference engine's input);
  :func:`read_results_arrays` decodes a well-formed file into :class:`~wbpose.metrics.cocoeval.KeypointResults`
  in pieces cut between results (no Python object per result survives a piece), and falls back to the checked
  path for anything unusual, whose errors name the file, the result and the field.
"""

from __future__ import annotations

import io
import itertools
import json
import mmap
import os
import re
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import orjson

from wbpose.data.coco_json import paused_gc
from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES
from wbpose.metrics.files import write_atomic
from wbpose.metrics.keypoint_results import KeypointResults

#: Result fields kept when reading a results file (MMPose 0.x adds center/scale; part scores are optional).
_RESULT_FIELDS = ("image_id", "category_id", *PART_FIELDS.values(), "score")
_PART_SCORE_FIELDS = ("foot_score", "face_score", "lefthand_score", "righthand_score", "wholebody_score")


def build_results(
    image_ids: np.ndarray, keypoints: np.ndarray, keypoint_scores: np.ndarray, scores: np.ndarray
) -> list[dict]:
    """Results in the official COCO-WholeBody format (MMPose 1.x fields), one dict per instance.

    Shape:
        image_ids: (N,); keypoints: (N, 133, 2) image px; keypoint_scores: (N, 133); scores: (N,).
    """
    n = len(image_ids)
    triples = np.concatenate(
        [np.asarray(keypoints, np.float64), np.asarray(keypoint_scores, np.float64)[..., None]], -1
    )
    fields = list(PART_FIELDS.values())
    parts = [triples[:, sl].reshape(n, 3 * (sl.stop - sl.start)).tolist() for sl in PART_SLICES.values()]
    rows = zip(np.asarray(image_ids).tolist(), *parts, np.asarray(scores, np.float64).tolist())
    return [{"image_id": r[0], "category_id": 1, **dict(zip(fields, r[1:6])), "score": r[6]} for r in rows]


def dumps_results(results: list[dict]) -> bytes:
    """Encode results as compact json (full float precision: ``orjson`` writes the shortest round-trip repr)."""
    return orjson.dumps(results, option=orjson.OPT_SERIALIZE_NUMPY)


def write_results(path: str | Path, results: list[dict]) -> Path:
    """Write the results json atomically (temporary file in the same folder, then ``os.replace``)."""
    return write_atomic(path, dumps_results(results))


def read_results_file(results_json: str | Path) -> list[dict]:
    """Read a results json (wbpose, MMPose 0.x or 1.x, official format) and normalise it.

    Only the fields xtcocotools reads are kept (``image_id``, ``category_id``, the five keypoint fields, ``score``
    and any ``<part>_score``): MMPose 0.x's ``center``/``scale`` are dropped, a missing ``category_id`` becomes 1,
    and a stray ``bbox`` cannot send ``loadRes`` down its box branch.

    Raises:
        ValueError: A missing field, a keypoint list of the wrong length, or a non-finite number.
    """
    with open(results_json) as f:
        raw = json.load(f)
    if not isinstance(raw, list):
        raise ValueError(f"{results_json}: expected a json list of results, got {type(raw).__name__}")
    results = []
    for i, entry in enumerate(raw):
        missing = [k for k in _RESULT_FIELDS if k not in entry and k != "category_id"]
        if missing:
            raise ValueError(f"{results_json}: result #{i} lacks {missing}")
        kept = {k: entry[k] for k in (*_RESULT_FIELDS, *_PART_SCORE_FIELDS) if k in entry}
        kept.setdefault("category_id", 1)
        results.append(kept)
    for part, field in PART_FIELDS.items():
        length = 3 * (PART_SLICES[part].stop - PART_SLICES[part].start)
        bad = [i for i, r in enumerate(results) if len(r[field]) != length]
        if bad:
            raise ValueError(f"{results_json}: '{field}' must hold {length} numbers (result #{bad[0]})")
        values = np.asarray([r[field] for r in results], dtype=np.float64).reshape(len(results), length)
        if not np.isfinite(values).all():
            first = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
            raise ValueError(f"{results_json}: non-finite number (NaN/inf) in '{field}' of result #{first}")
    return results


#: Results per piece of the results json written from arrays (a few MB of text each).
JSON_CHUNK_RESULTS = 8192


def _row_views(text: bytes) -> list[memoryview]:
    """The rows of ``orjson``'s text of a 2-D array (``[[..],[..]]``), without brackets, as views of ``text``."""
    ends = np.flatnonzero(np.frombuffer(text, np.uint8) == ord("]"))[:-1]  # numbers hold no "]"
    starts = np.concatenate([[2], ends[:-1] + 3])
    view = memoryview(text)
    return [view[a:b] for a, b in zip(starts.tolist(), ends.tolist())]


def _results_json_pieces(results: KeypointResults) -> Iterator[bytes]:
    """The results json of arrays (the format of :func:`build_results`) in pieces of :data:`JSON_CHUNK_RESULTS`
    results: each part's (n, 3k) block is encoded by ``orjson`` at once (shortest round-trip floats), its rows are
    taken as views and put in the record template; no Python object per number."""
    n = len(results)
    yield b"["
    if n == 0:
        yield b"]"
        return
    option = orjson.OPT_SERIALIZE_NUMPY
    ids = orjson.dumps(np.asarray(results.image_ids, np.int64), option=option)[1:-1].split(b",")
    cats = [b"%d" % c for c in results.categories().tolist()] if results.category_ids is not None else [b"1"] * n
    scores = orjson.dumps(np.asarray(results.scores, np.float64), option=option)[1:-1].split(b",")
    f = [name.encode() for name in PART_FIELDS.values()]
    template = (
        b'{"image_id":%b,"category_id":%b,"' + f[0] + b'":[%b],"' + f[1] + b'":[%b],"' + f[2] + b'":[%b],"' + f[3]
        + b'":[%b],"' + f[4] + b'":[%b],"score":%b}'
    )  # fmt: skip
    for s in range(0, n, JSON_CHUNK_RESULTS):
        stop = min(n, s + JSON_CHUNK_RESULTS)
        triples = np.concatenate(
            [np.asarray(results.keypoints[s:stop], np.float64), np.asarray(results.keypoint_scores[s:stop])[..., None]],
            -1,
            dtype=np.float64,
        )
        texts = [
            orjson.dumps(np.ascontiguousarray(triples[:, sl].reshape(stop - s, -1)), option=option)
            for sl in PART_SLICES.values()
        ]
        parts = [_row_views(text) for text in texts]
        if s:
            yield b","
        yield b",".join([template % row for row in zip(ids[s:stop], cats[s:stop], *parts, scores[s:stop])])
        del parts
    yield b"]"


def dumps_results_arrays(results: KeypointResults) -> bytes:
    """The results json of arrays (the format of :func:`build_results`), without a Python dict per result."""
    return b"".join(_results_json_pieces(results))


def write_results_arrays(path: str | Path, results: KeypointResults) -> Path:
    """Write the results json of arrays atomically (temporary file in the same folder, then ``os.replace``), piece
    by piece (the 0.7 GB text of the full val set is never held whole)."""
    return write_atomic(path, _results_json_pieces(results))


class _Result(msgspec.Struct, gc=False):
    image_id: int
    keypoints: list[float]
    foot_kpts: list[float]
    face_kpts: list[float]
    lefthand_kpts: list[float]
    righthand_kpts: list[float]
    score: float
    category_id: int = 1
    foot_score: float | None = None
    face_score: float | None = None
    lefthand_score: float | None = None
    righthand_score: float | None = None
    wholebody_score: float | None = None


def _results_to_arrays(rows: list, n: int, out: dict[str, np.ndarray], start: int, *, typed: bool) -> None:
    get = getattr if typed else (lambda r, k, d=None: r.get(k, d))
    sl = slice(start, start + len(rows))
    fields = list(PART_FIELDS.values())
    f0, f1, f2, f3, f4 = fields
    flat = np.asarray([get(r, f0) + get(r, f1) + get(r, f2) + get(r, f3) + get(r, f4) for r in rows], dtype=np.float64)
    flat = flat.reshape(len(rows), NUM_KEYPOINTS, 3)
    out["keypoints"][sl] = flat[..., :2]
    out["keypoint_scores"][sl] = flat[..., 2]
    out["image_ids"][sl] = [get(r, "image_id") for r in rows]
    out["category_ids"][sl] = [get(r, "category_id", 1) for r in rows]
    out["scores"][sl] = [get(r, "score") for r in rows]
    for key in _PART_SCORE_FIELDS:
        values = [get(r, key, None) for r in rows]
        if any(v is not None for v in values):
            column = out.setdefault(key, np.full(n, np.nan))
            column[sl] = [np.nan if v is None else v for v in values]


#: Bytes of results-file text decoded at once by the array parser.
RESULTS_CHUNK_BYTES = 8 << 20
#: Where one result ends and the next begins (results hold no nested objects; a wrong cut fails to decode).
_BOUNDARY = re.compile(rb"\}\s*,\s*\{")
_LIST_START = re.compile(rb"\s*\[")
_LIST_END = re.compile(rb"\]\s*\Z")
_RESULTS_DECODER = msgspec.json.Decoder(list[_Result])


def _result_spans(raw: bytes | mmap.mmap, chunk_bytes: int) -> list[tuple[int, int]] | None:
    """The top-level list's text cut between results into spans of about ``chunk_bytes``; ``None`` if ``raw`` is
    not a json list. Each span holds whole results separated by commas, unless a cut fell inside a nested value
    or a string, and then decoding that span fails (its text cannot close): the caller then parses the file
    whole."""
    first, last = _LIST_START.match(raw), _LIST_END.search(raw, max(0, len(raw) - 4096))
    if first is None or last is None:
        return None
    lo, hi = first.end(), last.start()
    if hi < lo:
        return None
    spans, start = [], lo
    while hi - start > chunk_bytes:
        cut = _BOUNDARY.search(raw, start + chunk_bytes, hi)
        if cut is None:
            break
        spans.append((start, cut.start() + 1))
        start = cut.end() - 1
    spans.append((start, hi))
    return spans


class _SpanSource:
    """The text of the file's spans as json lists (``[`` + span + ``]``), in one reused buffer: read from the open
    file (no page faults of a fresh buffer or of a mapping per piece) or copied from ``raw``."""

    def __init__(self, raw: bytes | mmap.mmap, file: io.BufferedReader | None = None) -> None:
        self.raw, self.file, self.buffer = raw, file, bytearray()

    def text(self, start: int, stop: int) -> memoryview:
        n = stop - start
        if len(self.buffer) < n + 2:
            self.buffer = bytearray(n + 2)
        view = memoryview(self.buffer)[: n + 2]
        view[0], view[n + 1] = ord("["), ord("]")
        if self.file is None:
            view[1 : n + 1] = memoryview(self.raw)[start:stop]
        else:
            self.file.seek(start)
            got = 0
            while got < n:
                read = self.file.readinto(view[1 + got : n + 1])
                if not read:
                    raise ValueError(f"{self.file.name}: changed while it was read")
                got += read
        return view


def _decode_span(source: _SpanSource, start: int, stop: int) -> tuple[list, dict[str, np.ndarray]] | None:
    """The results of the span ``start:stop`` (whole results separated by commas): their keypoint lists in file
    order (five per result, each of its part's length) and ``image_ids``, ``category_ids``, ``scores`` and any
    ``<part>_score`` column (NaN where a result has none); ``None`` if anything is unusual (the caller takes the
    plain path)."""
    with source.text(start, stop) as text:
        try:
            rows = _RESULTS_DECODER.decode(text)  # holds no reference to the (reused) text
        except msgspec.DecodeError:
            return None
        part_scores = source.buffer.find(b'_score"', 0, len(text)) >= 0  # "<part>_score": fields to read
    n = len(rows)
    lengths = [3 * (sl.stop - sl.start) for sl in PART_SLICES.values()]
    for r in rows:
        if [len(r.keypoints), len(r.foot_kpts), len(r.face_kpts), len(r.lefthand_kpts), len(r.righthand_kpts)] != (
            lengths
        ):
            return None
    lists = [x for r in rows for x in (r.keypoints, r.foot_kpts, r.face_kpts, r.lefthand_kpts, r.righthand_kpts)]
    out = {
        "image_ids": np.fromiter((r.image_id for r in rows), np.int64, n),
        "category_ids": np.fromiter((r.category_id for r in rows), np.int64, n),
        "scores": np.fromiter((r.score for r in rows), np.float64, n),
    }
    for key in _PART_SCORE_FIELDS if part_scores else ():
        column = [getattr(r, key) for r in rows]
        if any(v is not None for v in column):
            out[key] = np.array([np.nan if v is None else v for v in column], dtype=np.float64)
    return lists, out


def _fast_results_arrays(raw: bytes | mmap.mmap, file: io.BufferedReader | None = None) -> dict[str, np.ndarray] | None:
    """Streaming parse of a well-formed results file; ``None`` when anything is unusual (use the plain path).

    The triples of every result go straight into one (N, 133, 3) array, sized from the first piece's results per
    byte (and grown if that falls short), so no second copy of the 0.3 GB of numbers is made.
    """
    spans = _result_spans(raw, RESULTS_CHUNK_BYTES)
    if spans is None:
        return None
    source = _SpanSource(raw, file)
    width = 3 * NUM_KEYPOINTS
    flat, done, columns = np.zeros((0, width)), 0, []
    for start, stop in spans:
        decoded = _decode_span(source, start, stop)
        if decoded is None:  # unusual, or a cut inside a value: the file in one piece
            return None if len(spans) == 1 else _fast_results_arrays_whole(source, (spans[0][0], spans[-1][1]))
        lists, part = decoded
        n = len(part["scores"])
        if done + n > len(flat):  # sized from this piece's density over the rest of the file, plus 5%
            rest = spans[-1][1] - start
            capacity = done + int(np.ceil(n * rest / max(1, stop - start) * 1.05)) + 16
            grown = np.empty((max(capacity, done + n), width))
            grown[:done] = flat[:done]
            flat = grown
        flat[done : done + n] = np.fromiter(itertools.chain.from_iterable(lists), np.float64, n * width).reshape(
            n, width
        )
        del lists
        done += n
        columns.append(part)
    return _assemble(flat[:done], columns)


def _fast_results_arrays_whole(source: _SpanSource, span: tuple[int, int]) -> dict[str, np.ndarray] | None:
    decoded = _decode_span(source, *span)
    if decoded is None:
        return None
    lists, part = decoded
    n = len(part["scores"])
    flat = np.fromiter(itertools.chain.from_iterable(lists), np.float64, n * 3 * NUM_KEYPOINTS)
    return _assemble(flat.reshape(n, 3 * NUM_KEYPOINTS), [part])


def _assemble(flat: np.ndarray, columns: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of the results: keypoints and keypoint scores as views of the (N, 133, 3) triples, as in the
    file; the other columns concatenated over the pieces."""
    triples = flat.reshape(-1, NUM_KEYPOINTS, 3)
    out = {
        "image_ids": np.concatenate([p["image_ids"] for p in columns]),
        "category_ids": np.concatenate([p["category_ids"] for p in columns]),
        "keypoints": triples[..., :2],
        "keypoint_scores": triples[..., 2],
        "scores": np.concatenate([p["scores"] for p in columns]),
    }
    for key in _PART_SCORE_FIELDS:
        if any(key in p for p in columns):
            out[key] = np.concatenate([p.get(key, np.full(len(p["scores"]), np.nan)) for p in columns])
    return out


def read_results_arrays(results_json: str | Path) -> KeypointResults:
    """Read a results json (wbpose, MMPose 0.x or 1.x, official format) into :class:`KeypointResults`.

    Well-formed files are decoded straight into arrays in pieces of :data:`RESULTS_CHUNK_BYTES` (cut between
    results); parsing the floats is most of the time of scoring a file (a
    second process sharing the pieces did not shorten it on the shared 2-core machine, and forking a large process
    costs copy-on-write faults). Anything else goes through :func:`read_results_file`, whose checks name the
    problem. Optional ``<part>_score`` fields are kept (NaN where a result has none).

    Raises:
        ValueError: A missing field, a keypoint list of the wrong length, or a non-finite number.
    """
    with open(results_json, "rb") as f:
        # a large file is mapped to find the cuts between results (which touches a few pages) and read piece by
        # piece into one reused buffer
        large = os.fstat(f.fileno()).st_size >= RESULTS_CHUNK_BYTES
        raw = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if large else f.read()
        try:
            with paused_gc():
                out = _fast_results_arrays(raw, f if large else None)
        finally:
            if large:
                raw.close()
            del raw
    if out is not None:
        finite = all(np.isfinite(out[k]).all() for k in ("keypoints", "keypoint_scores", "scores"))
        finite = finite and all(np.isfinite(v[~np.isnan(v)]).all() for k, v in out.items() if k.endswith("_score"))
        if not finite:
            out = None  # the plain path names the result and the field
    if out is None:
        with paused_gc():
            rows = read_results_file(results_json)
        n = len(rows)
        out = {
            "image_ids": np.zeros(n, np.int64),
            "category_ids": np.zeros(n, np.int64),
            "keypoints": np.zeros((n, NUM_KEYPOINTS, 2)),
            "keypoint_scores": np.zeros((n, NUM_KEYPOINTS)),
            "scores": np.zeros(n),
        }
        for start in range(0, n, 4096):
            _results_to_arrays(rows[start : start + 4096], n, out, start, typed=False)
    part_scores = {k: out.pop(k) for k in list(out) if k in _PART_SCORE_FIELDS}
    return KeypointResults(**out, part_scores=part_scores)

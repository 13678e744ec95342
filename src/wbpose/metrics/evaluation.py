"""The six COCO-WholeBody evaluations, the results json, and the seed-table row.

Two engines give the same numbers (``tests/metrics/test_cocoeval.py`` checks them equal on every case):

- ``"fast"`` (the default): :mod:`wbpose.metrics.cocoeval`, xtcocotools' algorithm vectorised in numpy on arrays
  (ground truth as :class:`~wbpose.data.coco_files.CocoArrays`, results as
  :class:`~wbpose.metrics.cocoeval.KeypointResults`), so no Python object is made per prediction; results files
  are parsed with the streaming array parser and written straight from arrays with ``orjson``;
- ``"xtcocotools"``: the reference itself, as below.

What the reference runs is exactly what MMPose runs: for each of body, foot, face, lefthand, righthand and
wholebody, ``COCOeval(coco_gt, coco_dt, 'keypoints_<part>', sigmas[part], use_area=True)`` with
``params.useSegm = None``, then ``evaluate()``, ``accumulate()``, ``summarize()``; the ten ``stats`` are returned
as ``<part>_{ap, ap50, ap75, apm, apl, ar, ar50, ar75, arm, arl}``. "Hand" is the mean of lefthand and righthand
(the dataset author's definition; docs/conventions.md#evaluation).

Decisions:

- ``-1`` is kept where xtcocotools gives it: a part or area range without any (non-ignored) ground truth, e.g.
  ``*_apm`` when nobody is of medium size or ``lefthand_*`` when no left hand is labelled. It means "undefined",
  which 0 would hide. ``hand_*`` is the mean of the defined sides (-1 if neither is); with both defined, as on the
  real data, that is the plain mean.
- No predictions at all is not an error: the real evaluation runs on an empty result set and gives 0 wherever
  ground truth exists.
- Speed: the six runs use worker processes, fresh interpreters started with ``subprocess`` (never a plain fork
  of the caller: forking a process with threads, such as a trainer with loader, logger or OpenMP threads, can
  leave the child stuck on a lock held by a thread that no longer exists, and a spawned or fork-server child
  would re-run the caller's main script). Each worker receives the ground truth and results once (pickled on
  its stdin), evaluates its share of the parts and returns their stats; the parent writes the results json
  meanwhile. Workers capture xtcocotools' prints, which are shown only when ``verbose``. The default is as many
  workers as usable cores (per local rank, at most 6); ``num_procs=1`` runs them in this process (also the
  fallback for the parts of a worker that fails).
- Results files are written atomically and readable by others (mode 0666 less the umask, as ``open`` gives).
- The results json keeps every float at full precision (shortest round-trip repr), so a direct xtcocotools run on
  the file gives the same numbers. The fast path encodes arrays with ``orjson`` (each part's (N, 3k) block at
  once); the list-of-dicts path with ``pydantic_core.to_json`` when importable, else with ``json``.
- The fast engine evaluates the six parts together in this process (they share the pairs and OKS terms); with
  ``num_procs`` > 1 the results json is written by a thread meanwhile. Results files are decoded into arrays
  in pieces (no Python object per result survives a piece).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import mmap
import os
import pickle
import re
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import orjson

from wbpose.data import cache
from wbpose.data.coco_files import CocoArrays, load_coco, parse_annotation_file, paused_gc
from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES, sigmas_array
from wbpose.metrics import cocoeval
from wbpose.metrics.cocoeval import KeypointResults
from wbpose.metrics.files import write_atomic

if TYPE_CHECKING:  # the reference engine's objects; xtcocotools is imported where that engine runs
    from xtcocotools.coco import COCO

try:  # optional fast encoder; the output parses to exactly the same floats as json.dumps
    from pydantic_core import to_json as _fast_to_json
except ImportError:  # pragma: no cover - depends on the environment
    _fast_to_json = None

#: Evaluated parts in the order MMPose runs them, with their keypoint ranges.
EVAL_PARTS: dict[str, slice] = {**PART_SLICES, "wholebody": slice(0, 133)}
#: All reported parts (``hand`` = mean of lefthand and righthand).
REPORTED_PARTS: tuple[str, ...] = ("body", "foot", "face", "lefthand", "righthand", "hand", "wholebody")
#: Names of the ten ``COCOeval.stats`` of a keypoint evaluation, in order.
STAT_NAMES: tuple[str, ...] = ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")
#: Submission order of the worker pool: longest first (wholebody, face), so the workers finish together.
POOL_ORDER: tuple[str, ...] = ("wholebody", "face", "lefthand", "righthand", "foot", "body")
#: Result fields kept when reading a results file (MMPose 0.x adds center/scale; part scores are optional).
_RESULT_FIELDS = ("image_id", "category_id", *PART_FIELDS.values(), "score")
_PART_SCORE_FIELDS = ("foot_score", "face_score", "lefthand_score", "righthand_score", "wholebody_score")


@contextlib.contextmanager
def _quiet():
    """Silence xtcocotools' prints and its "'<part>_score' not found" warning; yields the captured text."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield buffer


def load_coco_gt(ann_file: str | Path) -> COCO:
    """Load a COCO-WholeBody annotation file into an xtcocotools ``COCO`` object, quietly, with the dataset's
    checks (:func:`wbpose.data.coco_files.load_coco`: a missing or malformed file names the file and record)."""
    with _quiet():
        return load_coco(ann_file, allow_empty=True)


def default_num_procs() -> int:
    """Worker processes for the six evaluations: usable cores shared among local ranks, at most 6."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    if local_ranks <= 0:
        dist = sys.modules.get("torch.distributed")  # not imported: no process group (and no torch import here)
        local_ranks = dist.get_world_size() if dist is not None and dist.is_initialized() else 1
    return max(1, min(len(EVAL_PARTS), cores // local_ranks))


def evaluate_part(coco_gt: COCO, coco_dt: COCO, part: str, use_area: bool = True) -> tuple[np.ndarray, str]:
    """Run one xtcocotools keypoint evaluation as MMPose does.

    Returns:
        The ten ``stats`` (float64) and the text ``summarize()`` printed.
    """
    with _quiet() as out:
        from xtcocotools.cocoeval import COCOeval

        coco_eval = COCOeval(coco_gt, coco_dt, f"keypoints_{part}", sigmas_array()[EVAL_PARTS[part]], use_area)
        coco_eval.params.useSegm = None
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return np.asarray(coco_eval.stats, dtype=np.float64), out.getvalue()


#: What a worker interpreter runs (``python -c``); a test replaces it to simulate a dying worker.
_WORKER_CODE = "from wbpose.metrics.evaluation import _worker_main; _worker_main()"


def _worker_main() -> None:
    """Worker entry point (a fresh interpreter): read ``(coco_gt, coco_dt, use_area)`` pickled on stdin, evaluate
    the parts named in ``argv[2:]`` and pickle ``{part: (stats, text)}`` to the file ``argv[1]``."""
    coco_gt, coco_dt, use_area = pickle.load(sys.stdin.buffer)
    out = {part: evaluate_part(coco_gt, coco_dt, part, use_area) for part in sys.argv[2:]}
    with open(sys.argv[1], "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)


def _worker_parts(workers: int) -> list[list[str]]:
    """:data:`POOL_ORDER` (longest first) dealt to ``workers`` in a snake order, so their loads come out even."""
    groups: list[list[str]] = [[] for _ in range(workers)]
    for i, part in enumerate(POOL_ORDER):
        row, col = divmod(i, workers)
        groups[col if row % 2 == 0 else workers - 1 - col].append(part)
    return [g for g in groups if g]


def _evaluate_in_workers(
    coco_gt: COCO, coco_dt: COCO, workers: int, use_area: bool, background: Callable[[], object] | None
) -> dict[str, tuple[np.ndarray, str]]:
    """Evaluate the parts in ``workers`` fresh interpreters (``subprocess``: fork and exec at once, so nothing of
    this process -- its threads, their locks -- is carried over); ``background()`` runs here meanwhile. Returns
    what the workers delivered (a failed worker's parts are missing, with a warning)."""
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding wbpose/: importable as here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    payload = pickle.dumps((coco_gt, coco_dt, use_area), protocol=pickle.HIGHEST_PROTOCOL)
    outputs: dict[str, tuple[np.ndarray, str]] = {}
    failures = []
    with tempfile.TemporaryDirectory(prefix="wbpose_eval_") as tmp:
        procs = []
        for k, parts in enumerate(_worker_parts(workers)):
            out = Path(tmp) / f"worker{k}.pkl"
            cmd = [sys.executable, "-c", _WORKER_CODE, str(out), *parts]
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
                procs.append((proc, out, parts))
                proc.stdin.write(payload)
                proc.stdin.close()
            except OSError as err:  # e.g. a worker that died before reading its input
                failures.append(f"{parts}: {err!r}")
        try:
            if background is not None:
                background()
        finally:
            for proc, out, parts in procs:
                code = proc.wait()
                if code == 0 and out.is_file():
                    with open(out, "rb") as f:
                        outputs.update(pickle.load(f))
                elif not any(str(parts) in failure for failure in failures):
                    failures.append(f"{parts}: exit status {code}")
    if failures:
        warnings.warn(
            f"evaluation workers failed ({'; '.join(failures)}); running the remaining parts sequentially",
            stacklevel=3,
        )
    return outputs


def evaluate_parts(
    coco_gt: COCO,
    coco_dt: COCO,
    num_procs: int | None = None,
    use_area: bool = True,
    verbose: bool = False,
    background: Callable[[], object] | None = None,
) -> dict[str, np.ndarray]:
    """Run the six evaluations, in worker processes (fresh interpreters) when ``num_procs`` > 1.

    Args:
        coco_gt: Ground truth.
        coco_dt: Results (``coco_gt.loadRes(...)``).
        num_procs: Worker processes; ``None`` = :func:`default_num_procs`, 1 = sequential in this process.
        use_area: Passed to ``COCOeval`` (MMPose: True).
        verbose: Print xtcocotools' tables (in part order).
        background: Called in this process while the workers run (e.g. writing the results json).

    Returns:
        ``{part: stats (10,)}`` for the six evaluated parts.
    """
    num_procs = default_num_procs() if num_procs is None else max(1, int(num_procs))
    outputs: dict[str, tuple[np.ndarray, str]] = {}
    if num_procs > 1:
        outputs = _evaluate_in_workers(coco_gt, coco_dt, min(num_procs, len(EVAL_PARTS)), use_area, background)
        background = None
    if background is not None:
        background()
    for part in EVAL_PARTS:
        if part not in outputs:
            outputs[part] = evaluate_part(coco_gt, coco_dt, part, use_area)
    if verbose:
        for part in EVAL_PARTS:
            print(f"== keypoints_{part} ==\n{outputs[part][1]}", end="")
    return {part: outputs[part][0] for part in EVAL_PARTS}


def summarize_parts(stats: dict[str, np.ndarray]) -> dict[str, float]:
    """Name the stats ``<part>_<stat>`` and add ``hand`` = mean of the defined lefthand/righthand values."""
    left, right = stats["lefthand"], stats["righthand"]
    defined = (left >= 0).astype(np.float64) + (right >= 0)
    hand_sum = np.where(left >= 0, left, 0.0) + np.where(right >= 0, right, 0.0)
    hand = np.divide(hand_sum, defined, out=np.full_like(hand_sum, -1.0), where=defined > 0)
    table = {**stats, "hand": hand}
    return {f"{part}_{name}": float(table[part][i]) for part in REPORTED_PARTS for i, name in enumerate(STAT_NAMES)}


def check_image_ids(coco_gt: COCO, image_ids: np.ndarray | list[int], ann_file: str | Path = "") -> None:
    """Raise ``ValueError`` naming (a few of) the prediction image ids that the annotations do not have."""
    unknown = np.setdiff1d(np.unique(np.asarray(image_ids, dtype=np.int64)), np.asarray(coco_gt.getImgIds()))
    if len(unknown):
        shown = ", ".join(str(i) for i in unknown[:5].tolist()) + (", ..." if len(unknown) > 5 else "")
        raise ValueError(
            f"predictions for {len(unknown)} image id(s) absent from the annotations {ann_file or '(in memory)'}: "
            f"{shown}"
        )


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
    """Encode results as compact json (full float precision)."""
    if _fast_to_json is not None:
        return _fast_to_json(results)
    return json.dumps(results, separators=(",", ":")).encode()


def write_results(path: str | Path, results: list[dict]) -> Path:
    """Write the results json atomically (temporary file in the same folder, then ``os.replace``)."""
    return write_atomic(path, dumps_results(results))


def load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """``coco_gt.loadRes`` on shallow copies (loadRes adds ``id``/``area``/``bbox`` to each dict), quietly."""
    anno_file = list(coco_gt.anno_file)
    with _quiet():
        coco_dt = coco_gt.loadRes("<in-memory results>", resData=[dict(r) for r in results])
    coco_gt.anno_file = anno_file  # loadRes appends the results name to the ground truth's list
    return coco_dt


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
        length = 3 * (EVAL_PARTS[part].stop - EVAL_PARTS[part].start)
        bad = [i for i, r in enumerate(results) if len(r[field]) != length]
        if bad:
            raise ValueError(f"{results_json}: '{field}' must hold {length} numbers (result #{bad[0]})")
        values = np.asarray([r[field] for r in results], dtype=np.float64).reshape(len(results), length)
        if not np.isfinite(values).all():
            first = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
            raise ValueError(f"{results_json}: non-finite number (NaN/inf) in '{field}' of result #{first}")
    return results


def evaluate_results(
    coco_gt: COCO,
    results: list[dict],
    ann_file: str | Path = "",
    results_file: str | Path | None = None,
    num_procs: int | None = None,
    use_area: bool = True,
    verbose: bool = False,
) -> dict[str, float]:
    """Score in-memory results against loaded ground truth; optionally write them to ``results_file`` meanwhile.

    Returns:
        ``{f"{part}_{stat}": value}`` for the parts of :data:`REPORTED_PARTS` and :data:`STAT_NAMES`.
    """
    check_image_ids(coco_gt, [r["image_id"] for r in results], ann_file)
    coco_dt = load_results(coco_gt, results)
    background = None if results_file is None else (lambda: write_results(results_file, results))
    stats = evaluate_parts(coco_gt, coco_dt, num_procs, use_area, verbose, background)
    return summarize_parts(stats)


def evaluate_results_file(
    ann_file: str | Path,
    results_json: str | Path,
    num_procs: int | None = None,
    verbose: bool = False,
    engine: str = "fast",
    cache_dir: str | Path | None = None,
) -> dict[str, float]:
    """Score a results json file against a COCO-WholeBody annotation file.

    Args:
        ann_file: The annotation json.
        results_json: The results json (wbpose, MMPose 0.x / 1.x, official format).
        num_procs: Worker processes of the xtcocotools engine (``None``: usable cores, at most 6; 1: this process
            only). The fast engine runs in this process.
        verbose: Print xtcocotools-style tables.
        engine: "fast" (numpy, the default) or "xtcocotools" (the reference); the numbers are the same.
        cache_dir: Parsed-file cache folder for the ground truth (fast engine; ``None``: the default, if set).

    Returns:
        ``{f"{part}_{stat}": value}`` (keys without prefix, e.g. ``body_ap``, ``hand_ar``, ``wholebody_ap``).
    """
    if engine == "fast":
        gt = load_gt_arrays(ann_file, cache_dir)
        return evaluate_arrays(gt, read_results_arrays(results_json), ann_file, None, num_procs, True, verbose)
    if engine != "xtcocotools":
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    results = read_results_file(results_json)
    return evaluate_results(load_coco_gt(ann_file), results, ann_file, None, num_procs, True, verbose)


# ----------------------------------------------------------------------------------------------- fast engine
#: Evaluation engines: "fast" (numpy, the default) or "xtcocotools" (the reference).
ENGINES = ("fast", "xtcocotools")


def load_gt_arrays(ann_file: str | Path, cache_dir: str | Path | None = None) -> CocoArrays:
    """The ground truth as arrays: from the parsed-file cache when a cache folder is given or set
    (:func:`wbpose.data.cache.resolve_cache_dir`), else parsed (streaming). Bad files raise ``DataError``."""
    folder = cache.resolve_cache_dir(cache_dir)
    if folder is not None:
        return cache.annotation_arrays(ann_file, folder)
    return parse_annotation_file(ann_file, allow_empty=True)


def check_image_ids_arrays(gt: CocoArrays, image_ids: np.ndarray, ann_file: str | Path = "") -> None:
    """Raise ``ValueError`` naming (a few of) the prediction image ids that the annotations do not have."""
    unknown = gt.unknown_images(np.asarray(image_ids, dtype=np.int64))
    if len(unknown):
        shown = ", ".join(str(i) for i in unknown[:5].tolist()) + (", ..." if len(unknown) > 5 else "")
        raise ValueError(
            f"predictions for {len(unknown)} image id(s) absent from the annotations {ann_file or '(in memory)'}: "
            f"{shown}"
        )


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


def _results_to_arrays(rows: list, n: int, out: dict[str, np.ndarray], start: int, typed: bool) -> None:
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


def _summary_text(stats: np.ndarray) -> str:
    """xtcocotools' ``summarize()`` print of the ten keypoint stats."""
    lines = []
    spec = [(1, None, "all"), (1, 0.5, "all"), (1, 0.75, "all"), (1, None, "medium"), (1, None, "large")]
    spec += [(0, None, "all"), (0, 0.5, "all"), (0, 0.75, "all"), (0, None, "medium"), (0, None, "large")]
    for value, (ap, thr, area) in zip(stats.tolist(), spec):
        title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
        iou = "0.50:0.95" if thr is None else f"{thr:0.2f}"
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={20:>3d} ] = {value: 0.3f}")
    return "\n".join(lines) + "\n"


class _Writer(threading.Thread):
    """Writes the results json in a thread (the arrays are shared, nothing is copied); keeps the error, if any."""

    def __init__(self, path: str | Path, results: KeypointResults) -> None:
        super().__init__(name="wbpose-results-writer", daemon=True)
        self.path, self.results, self.error = path, results, None

    def run(self) -> None:
        try:
            _write_shared_results(self.path, self.results)
        except BaseException as err:  # reported (and the file written again) by the caller
            self.error = err


def _write_shared_results(path: str | Path, results: KeypointResults) -> None:
    """The writer thread's work: the results json of ``results`` at ``path``."""
    write_results_arrays(path, results)


def evaluate_fast(
    gt: CocoArrays,
    results: KeypointResults,
    num_procs: int | None = None,
    use_area: bool = True,
    results_file: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """The six evaluations with the fast engine (``{part: stats (10,)}``), writing ``results_file`` meanwhile.

    The six parts are evaluated together in this process (they share the results' pairs with the ground truth and
    the point-wise OKS terms). With ``num_procs`` > 1 the results json is written by a thread meanwhile (it shares
    the arrays; its file writes release the GIL; if it fails, the json is written here); ``None`` or 1 writes it
    here afterwards. No process is forked: the caller may be a trainer with threads, whose forked child can hang on
    a lock one of them held. (Two threads splitting the OKS and matching by image did not shorten them on the
    shared 2-core machine: numpy's many small operations hold the GIL.)
    """
    workers = 1 if num_procs is None else max(1, int(num_procs))
    writer = None
    if results_file is not None and workers > 1:
        writer = _Writer(results_file, results)
        writer.start()
    stats = cocoeval.evaluate_parts(gt, results, tuple(EVAL_PARTS), use_area)
    if writer is not None:
        writer.join()
        if writer.error is not None:
            warnings.warn(f"results json writer failed ({writer.error!r}); writing it here", stacklevel=2)
            writer = None
    if results_file is not None and writer is None:
        write_results_arrays(results_file, results)
    return {part: stats[part] for part in EVAL_PARTS}


def evaluate_arrays(
    gt: CocoArrays,
    results: KeypointResults,
    ann_file: str | Path = "",
    results_file: str | Path | None = None,
    num_procs: int | None = None,
    use_area: bool = True,
    verbose: bool = False,
) -> dict[str, float]:
    """Score results held as arrays against ground truth held as arrays (the fast engine); optionally write the
    results json meanwhile.

    Returns:
        ``{f"{part}_{stat}": value}`` for the parts of :data:`REPORTED_PARTS` and :data:`STAT_NAMES`.
    """
    check_image_ids_arrays(gt, results.image_ids, ann_file or gt.source)
    stats = evaluate_fast(gt, results, num_procs, use_area, results_file)
    if verbose:
        for part in EVAL_PARTS:
            print(f"== keypoints_{part} ==\n{_summary_text(stats[part])}", end="")
    return summarize_parts(stats)

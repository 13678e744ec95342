"""The six COCO-WholeBody evaluations behind one front door, which picks the engine and logs which one ran.

Two engines give the same numbers (``tests/metrics/test_cocoeval.py`` checks them equal on every case):

- ``"fast"`` (the default): :mod:`wbpose.metrics.cocoeval`, xtcocotools' algorithm vectorised in numpy on arrays
  (ground truth as :class:`~wbpose.data.coco_files.CocoArrays`, results as
  :class:`~wbpose.metrics.cocoeval.KeypointResults`), so no Python object is made per prediction; it evaluates
  the six parts together in this process (they share the pairs and OKS terms); with ``num_procs`` > 1 the
  results json is written by a thread meanwhile;
- ``"xtcocotools"``: the reference itself, run as MMPose runs it (:mod:`wbpose.metrics.reference`).

Reading and writing the results json is :mod:`wbpose.metrics.results_io`. The ten ``stats`` of each part are
returned as ``<part>_{ap, ap50, ap75, apm, apl, ar, ar50, ar75, arm, arl}``. "Hand" is the mean of lefthand and
righthand (the dataset author's definition; docs/conventions.md#evaluation).

Decisions:

- ``-1`` is kept where xtcocotools gives it: a part or area range without any (non-ignored) ground truth, e.g.
  ``*_apm`` when nobody is of medium size or ``lefthand_*`` when no left hand is labelled. It means "undefined",
  which 0 would hide. ``hand_*`` is the mean of the defined sides (-1 if neither is); with both defined, as on the
  real data, that is the plain mean.
- No predictions at all is not an error: the real evaluation runs on an empty result set and gives 0 wherever
  ground truth exists.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wbpose.data import cache
from wbpose.data.coco_files import CocoArrays, parse_annotation_file
from wbpose.metrics import cocoeval
from wbpose.metrics.keypoint_results import EVAL_PARTS, KeypointResults
from wbpose.metrics.reference import check_image_ids, evaluate_parts_reference, load_coco_gt, load_results
from wbpose.metrics.results_io import read_results_arrays, read_results_file, write_results, write_results_arrays

if TYPE_CHECKING:  # the reference engine's objects
    from xtcocotools.coco import COCO

log = logging.getLogger(__name__)

#: Evaluation engines: "fast" (numpy, the default) or "xtcocotools" (the reference).
ENGINES = ("fast", "xtcocotools")
#: All reported parts (``hand`` = mean of lefthand and righthand).
REPORTED_PARTS: tuple[str, ...] = ("body", "foot", "face", "lefthand", "righthand", "hand", "wholebody")
#: Names of the ten ``COCOeval.stats`` of a keypoint evaluation, in order.
STAT_NAMES: tuple[str, ...] = ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")


def summarize_parts(stats: dict[str, np.ndarray]) -> dict[str, float]:
    """Name the stats ``<part>_<stat>`` and add ``hand`` = mean of the defined lefthand/righthand values."""
    left, right = stats["lefthand"], stats["righthand"]
    defined = (left >= 0).astype(np.float64) + (right >= 0)
    hand_sum = np.where(left >= 0, left, 0.0) + np.where(right >= 0, right, 0.0)
    hand = np.divide(hand_sum, defined, out=np.full_like(hand_sum, -1.0), where=defined > 0)
    table = {**stats, "hand": hand}
    return {f"{part}_{name}": float(table[part][i]) for part in REPORTED_PARTS for i, name in enumerate(STAT_NAMES)}


def evaluate_results(
    coco_gt: COCO,
    results: list[dict],
    *,
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
    log.info("scoring %d results with the xtcocotools engine", len(results))
    stats = evaluate_parts_reference(
        coco_gt, coco_dt, num_procs=num_procs, use_area=use_area, verbose=verbose, background=background
    )
    return summarize_parts(stats)


def evaluate_results_file(
    ann_file: str | Path,
    results_json: str | Path,
    *,
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
        results = read_results_arrays(results_json)
        return evaluate_arrays(gt, results, ann_file=ann_file, num_procs=num_procs, verbose=verbose)
    if engine != "xtcocotools":
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    rows = read_results_file(results_json)
    return evaluate_results(load_coco_gt(ann_file), rows, ann_file=ann_file, num_procs=num_procs, verbose=verbose)


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


def _evaluate_fast_writing(
    gt: CocoArrays,
    results: KeypointResults,
    *,
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
    stats = cocoeval.evaluate_parts_fast(gt, results, tuple(EVAL_PARTS), use_area=use_area)
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
    *,
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
    log.info("scoring %d results with the fast engine", len(results))
    stats = _evaluate_fast_writing(gt, results, num_procs=num_procs, use_area=use_area, results_file=results_file)
    if verbose:
        for part in EVAL_PARTS:
            print(f"== keypoints_{part} ==\n{_summary_text(stats[part])}", end="")
    return summarize_parts(stats)

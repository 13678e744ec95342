"""The reference engine: xtcocotools' ``COCOeval`` run exactly as MMPose runs it, in worker processes.

For each of body, foot, face, lefthand, righthand and wholebody, ``COCOeval(coco_gt, coco_dt,
'keypoints_<part>', sigmas[part], use_area=True)`` with ``params.useSegm = None``, then ``evaluate()``,
``accumulate()``, ``summarize()``; the ten ``stats`` per part are returned.

Speed: the six runs use worker processes, fresh interpreters started with ``subprocess`` (never a plain fork of
the caller: forking a process with threads, such as a trainer with loader, logger or OpenMP threads, can leave
the child stuck on a lock held by a thread that no longer exists, and a spawned or fork-server child would re-run
the caller's main script). Each worker receives the ground truth and results once (pickled on its stdin),
evaluates its share of the parts and returns their stats; the parent runs ``background`` (e.g. writing the
results json) meanwhile. Workers capture xtcocotools' prints, which are shown only when ``verbose``. The default
is as many workers as usable cores (per local rank, at most 6); ``num_procs=1`` runs them in this process (also
the fallback for the parts of a worker that fails).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wbpose.data.coco_json import load_coco
from wbpose.keypoints import sigmas_array
from wbpose.metrics.keypoint_results import EVAL_PARTS

if TYPE_CHECKING:  # xtcocotools is imported where this engine runs
    from xtcocotools.coco import COCO

#: Submission order of the worker pool: longest first (wholebody, face), so the workers finish together.
POOL_ORDER: tuple[str, ...] = ("wholebody", "face", "lefthand", "righthand", "foot", "body")


@contextlib.contextmanager
def _quiet():
    """Silence xtcocotools' prints and its "'<part>_score' not found" warning; yields the captured text."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield buffer


def load_coco_gt(ann_file: str | Path) -> COCO:
    """Load a COCO-WholeBody annotation file into an xtcocotools ``COCO`` object, quietly, with the dataset's
    checks (:func:`wbpose.data.coco_json.load_coco`: a missing or malformed file names the file and record)."""
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


def evaluate_part_reference(
    coco_gt: COCO, coco_dt: COCO, part: str, *, use_area: bool = True
) -> tuple[np.ndarray, str]:
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
_WORKER_CODE = "from wbpose.metrics.reference import _worker_main; _worker_main()"


def _worker_main() -> None:
    """Worker entry point (a fresh interpreter): read ``(coco_gt, coco_dt, use_area)`` pickled on stdin, evaluate
    the parts named in ``argv[2:]`` and pickle ``{part: (stats, text)}`` to the file ``argv[1]``."""
    coco_gt, coco_dt, use_area = pickle.load(sys.stdin.buffer)
    out = {part: evaluate_part_reference(coco_gt, coco_dt, part, use_area=use_area) for part in sys.argv[2:]}
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
    coco_gt: COCO, coco_dt: COCO, workers: int, *, use_area: bool, background: Callable[[], object] | None
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


def evaluate_parts_reference(
    coco_gt: COCO,
    coco_dt: COCO,
    *,
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
        outputs = _evaluate_in_workers(
            coco_gt, coco_dt, min(num_procs, len(EVAL_PARTS)), use_area=use_area, background=background
        )
        background = None
    if background is not None:
        background()
    for part in EVAL_PARTS:
        if part not in outputs:
            outputs[part] = evaluate_part_reference(coco_gt, coco_dt, part, use_area=use_area)
    if verbose:
        for part in EVAL_PARTS:
            print(f"== keypoints_{part} ==\n{outputs[part][1]}", end="")
    return {part: outputs[part][0] for part in EVAL_PARTS}


def load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """``coco_gt.loadRes`` on shallow copies (loadRes adds ``id``/``area``/``bbox`` to each dict), quietly."""
    anno_file = list(coco_gt.anno_file)
    with _quiet():
        coco_dt = coco_gt.loadRes("<in-memory results>", resData=[dict(r) for r in results])
    coco_gt.anno_file = anno_file  # loadRes appends the results name to the ground truth's list
    return coco_dt


def check_image_ids(coco_gt: COCO, image_ids: np.ndarray | list[int], ann_file: str | Path = "") -> None:
    """Raise ``ValueError`` naming (a few of) the prediction image ids that the annotations do not have."""
    unknown = np.setdiff1d(np.unique(np.asarray(image_ids, dtype=np.int64)), np.asarray(coco_gt.getImgIds()))
    if len(unknown):
        shown = ", ".join(str(i) for i in unknown[:5].tolist()) + (", ..." if len(unknown) > 5 else "")
        raise ValueError(
            f"predictions for {len(unknown)} image id(s) absent from the annotations {ann_file or '(in memory)'}: "
            f"{shown}"
        )

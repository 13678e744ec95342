"""Benchmark of ``CocoWholeBodyMetric.compute()`` against a naive MMPose-style pipeline on the same data.

Data: synthetic COCO-WholeBody ground truth with 5 people per image and detector-like predictions (7 per image:
5 noisy true people + 2 false ones), for 200 and 1,000 images. Phases: rescoring + OKS-NMS, results json
(build + write), the six xtcocotools evaluations; "compute" is the metric end to end (json written while the
evaluations run). The baseline does what MMPose does: per-instance Python rescoring, per-pair OKS-NMS,
``json.dump(indent=4, sort_keys=True)``, ``loadRes`` from the file and six sequential ``COCOeval`` runs. Both
pipelines must give identical numbers (asserted). The floor is xtcocotools itself: see the "evals, 1 proc" row.

Timing (``benchmarks/timing.py``): wall clock, the median over ``--repeat`` interleaved runs after one warm-up run,
with the range. Wall times on a shared machine are noisy, so median CPU seconds (this process + evaluation
workers) are printed too, and an idle-machine estimate of compute(): the in-process CPU before the pool plus the
slowest worker's share of the per-part evaluation CPU. Peak memory: tracemalloc peak of Python/numpy allocations in
this process (a separate, untimed pass; forked workers are not traced) and the maxrss of the process and of the
largest worker.

Usage: ``python benchmarks/metric.py [--images 200 1000] [--repeat 3] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared test helpers

from helpers.annotations import make_wholebody_gt, write_json  # noqa: E402
from helpers.predictions import detector_like_predictions  # noqa: E402
from helpers.references import mmpose_oks, ref_oks_nms, ref_rescore  # noqa: E402
from wbpose.keypoints import PART_FIELDS, PART_SLICES  # noqa: E402
from wbpose.metrics import CocoWholeBodyMetric  # noqa: E402
from wbpose.metrics.evaluation import summarize_parts  # noqa: E402
from wbpose.metrics.keypoint_results import EVAL_PARTS  # noqa: E402
from wbpose.metrics.oks import oks_nms, rescore  # noqa: E402
from wbpose.metrics.reference import (  # noqa: E402
    POOL_ORDER,
    default_num_procs,
    evaluate_part_reference,
    evaluate_parts_reference,
    load_coco_gt,
    load_results,
)
from wbpose.metrics.results_io import build_results, write_results  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import Timing, add_json_argument  # noqa: E402
from timing import write_json as write_table_json  # noqa: E402


# ----------------------------------------------------------------------------------------------- naive baseline
class Laps:
    """Wall and CPU seconds (this process + reaped children, i.e. the evaluation workers) per named phase."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._mark = (time.perf_counter(), cpu_seconds())

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), cpu_seconds())
        self.wall[name], self.cpu[name] = now[0] - self._mark[0], now[1] - self._mark[1]
        self._mark = now


def naive_pipeline(coco_gt, preds: dict[str, np.ndarray], out: Path) -> tuple[dict, Laps]:
    """Rescoring + NMS, json and six sequential evaluations the slow way; returns (metrics, laps).

    MMPose 1.x style: a Python loop per instance and keypoint to rescore, then per image a greedy OKS-NMS with one
    numpy OKS per (kept, remaining) pair (``helpers.references``, checked against the plain references by the tests).
    """
    laps = Laps()
    scores = ref_rescore(preds["keypoint_scores"], preds["bbox_scores"])
    kept = ref_oks_nms(preds["keypoints"], scores, preds["areas"], preds["image_ids"], oks=mmpose_oks)
    laps.lap("rescore+nms")
    results = []
    for i in kept:
        triples = np.concatenate([preds["keypoints"][i], preds["keypoint_scores"][i][:, None]], -1)
        entry = {"image_id": int(preds["image_ids"][i]), "category_id": 1, "score": scores[i]}
        for part, field in PART_FIELDS.items():
            entry[field] = triples[PART_SLICES[part]].reshape(-1).tolist()
        results.append(entry)
    with open(out, "w") as f:
        json.dump(results, f, indent=4, sort_keys=True)
    laps.lap("json")
    with open(out) as f:
        coco_dt = load_results(coco_gt, json.load(f))
    stats = {part: evaluate_part_reference(coco_gt, coco_dt, part)[0] for part in EVAL_PARTS}
    laps.lap("evals")
    return summarize_parts(stats), laps


# ----------------------------------------------------------------------------------------------- wbpose
def wbpose_phases(coco_gt, preds: dict[str, np.ndarray], out: Path, num_procs: int) -> Laps:
    """The metric's steps one after the other (no overlap), to split the time."""
    laps = Laps()
    scores = rescore(preds["keypoint_scores"], preds["bbox_scores"])
    keep = oks_nms(preds["keypoints"], scores, preds["areas"], preds["image_ids"])
    laps.lap("rescore+nms")
    results = build_results(
        preds["image_ids"][keep], preds["keypoints"][keep], preds["keypoint_scores"][keep], scores[keep]
    )
    laps.lap("json build")
    write_results(out, results)
    laps.lap("json write")
    coco_dt = load_results(coco_gt, results)
    laps.lap("loadRes")
    evaluate_parts_reference(coco_gt, coco_dt, num_procs=num_procs)
    laps.lap("evals")
    return laps


def per_part_cpu(coco_gt, preds: dict[str, np.ndarray]) -> dict[str, float]:
    """CPU seconds of each xtcocotools evaluation, run in this process."""
    scores = rescore(preds["keypoint_scores"], preds["bbox_scores"])
    keep = oks_nms(preds["keypoints"], scores, preds["areas"], preds["image_ids"])
    results = build_results(
        preds["image_ids"][keep], preds["keypoints"][keep], preds["keypoint_scores"][keep], scores[keep]
    )
    coco_dt = load_results(coco_gt, results)
    out = {}
    for part in POOL_ORDER:
        start = time.process_time()
        evaluate_part_reference(coco_gt, coco_dt, part)
        out[part] = time.process_time() - start
    return out


def lpt_makespan(costs: list[float], workers: int) -> float:
    """Finish time of the pool's schedule (tasks in submission order to the first free worker) on idle cores."""
    free = [0.0] * workers
    for cost in costs:
        free[free.index(min(free))] += cost
    return max(free)


def make_metric(ann_path: Path, preds: dict[str, np.ndarray], out: Path, batch: int = 64) -> CocoWholeBodyMetric:
    metric = CocoWholeBodyMetric(ann_path, outfile=out)
    _ = metric.coco_gt  # loaded once per metric object, as in training; not part of compute()
    n = len(preds["instance_ids"])
    for s in range(0, n, batch):
        metric.update(**{k: torch.as_tensor(v[s : s + batch]) for k, v in preds.items()})
    return metric


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the evaluation workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def traced_peak(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def median_of(runs: list[Laps], warmup: int) -> tuple[dict[str, Timing], dict[str, float]]:
    """Per phase: the wall :class:`Timing` over the runs and the median CPU seconds."""
    wall = {k: Timing.of([r.wall[k] for r in runs], warmup) for k in runs[0].wall}
    cpu = {k: Timing.of([r.cpu[k] for r in runs], warmup).median for k in runs[0].cpu}
    return wall, cpu


def summed(a: Timing, b: Timing) -> Timing:
    """Two phases' timings added (median + median, ranges added: an upper bound of the spread)."""
    return Timing(a.median + b.median, a.min + b.min, a.max + b.max, a.n, a.warmup)


def run_case(num_images: int, repeat: int, warmup: int, tmp: Path) -> tuple[list[list], list[str]]:
    gt = make_wholebody_gt(num_images, 5, seed=0)
    ann_path = write_json(tmp / f"gt_{num_images}.json", gt)
    preds = detector_like_predictions(gt, seed=1)
    coco_gt = load_coco_gt(ann_path)
    procs = default_num_procs()

    naive_runs, ours_runs, seq_runs, total_runs = [], [], [], []
    for _ in range(warmup + repeat):  # interleaved: load from other jobs hits both pipelines alike
        naive_metrics, laps = naive_pipeline(coco_gt, preds, tmp / "naive.json")
        naive_runs.append(laps)
        ours_runs.append(wbpose_phases(coco_gt, preds, tmp / "phases.json", procs))
        seq_runs.append(wbpose_phases(coco_gt, preds, tmp / "seq.json", 1))
        metric = make_metric(ann_path, preds, tmp / "metric.json")  # fresh: compute() caches its result
        laps = Laps()
        computed = metric.compute()
        laps.lap("total")
        total_runs.append(laps)
    ours_metrics = {k.split("/", 1)[1]: float(v) for k, v in computed.items()}
    diff = max(abs(ours_metrics[k] - naive_metrics[k]) for k in naive_metrics)
    assert diff == 0.0, f"wbpose and the naive pipeline disagree by {diff}"

    naive_runs, ours_runs, seq_runs, total_runs = (r[warmup:] for r in (naive_runs, ours_runs, seq_runs, total_runs))
    naive_wall, naive_cpu = median_of(naive_runs, warmup)
    naive_wall["total"] = Timing.of([sum(r.wall.values()) for r in naive_runs], warmup)
    naive_cpu["total"] = Timing.of([sum(r.cpu.values()) for r in naive_runs], warmup).median
    ours_wall, ours_cpu = median_of(ours_runs, warmup)
    ours_wall["json"] = summed(ours_wall["json build"], ours_wall["json write"])
    ours_cpu["json"] = ours_cpu["json build"] + ours_cpu["json write"]
    ours_wall["evals"] = summed(ours_wall["evals"], ours_wall["loadRes"])
    ours_cpu["evals"] += ours_cpu["loadRes"]
    total_wall, total_cpu = median_of(total_runs, warmup)
    ours_wall["total"], ours_cpu["total"] = total_wall["total"], total_cpu["total"]
    seq_wall, seq_cpu = median_of(seq_runs, warmup)
    part_cpu = per_part_cpu(coco_gt, preds)
    makespan = lpt_makespan([part_cpu[p] for p in POOL_ORDER], procs)
    # On idle cores compute() = rescore+nms, json build and loadRes in this process, then the pool (json written
    # meanwhile), whose wall is the slowest worker's CPU, scaled by the pool's measured overhead (fork,
    # copy-on-write of the inherited objects) relative to the same evaluations run in this process.
    overhead = (ours_cpu["evals"] - ours_cpu["loadRes"]) / seq_cpu["evals"]
    ideal = ours_cpu["rescore+nms"] + ours_cpu["json build"] + ours_cpu["loadRes"] + makespan * overhead

    mem_naive = traced_peak(lambda: naive_pipeline(coco_gt, preds, tmp / "naive.json"))
    mem_ours = traced_peak(make_metric(ann_path, preds, tmp / "metric.json").compute)

    n_kept = len(json.loads((tmp / "metric.json").read_text()))
    statistic = naive_wall["total"].statistic
    case = f"{num_images} images, {len(preds['instance_ids'])} predictions ({n_kept} after OKS-NMS)"
    rows = []
    evals = f"evals: xtcocotools on {procs} procs (compute() runs the fast engine instead)"
    labels = [("rescore+nms", "rescore+nms"), ("json", "json (build+write)"), ("evals", evals)]
    for key, label in [*labels, ("total", "**compute() total**")]:
        nw, ow = naive_wall[key], ours_wall[key]
        rows.append([case, label, nw.text(3), ow.text(3), f"{nw.median / ow.median:.1f}x",
                     f"{naive_cpu[key]:.3f}", f"{ours_cpu[key]:.3f}"])  # fmt: skip
    ev = summed(seq_wall["evals"], seq_wall["loadRes"])
    rows.append([case, "evals, 1 proc (xtcocotools floor)", naive_wall["evals"].text(3), ev.text(3), "", "",
                 f"{seq_cpu['evals'] + seq_cpu['loadRes']:.3f}"])  # fmt: skip
    rows.append([case, "peak traced MiB", f"{mem_naive:.0f}", f"{mem_ours:.0f}", "", "", ""])
    parts = ", ".join(f"{p} {c:.2f}" for p, c in part_cpu.items())
    notes = [
        f"{case}, {procs} eval procs; body/wholebody AP {ours_metrics['body_ap']:.3f}/"
        f"{ours_metrics['wholebody_ap']:.3f}, all 70 numbers identical to the naive pipeline. Wall s: {statistic}.",
        f"Idle-machine estimate with the xtcocotools engine on {procs} procs: per-part eval CPU s ({parts}); slowest "
        f"worker {makespan:.3f} s x pool overhead {overhead:.2f}; ~ {ideal:.3f} s vs naive CPU "
        f"{naive_cpu['total']:.3f} s -> {naive_cpu['total'] / ideal:.1f}x.",
    ]
    print("\n" + "\n".join(notes))
    for r in rows:
        print("| " + " | ".join(r[1:]) + " |")
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (cases over 200 images: 1)")
    add_json_argument(parser)
    args = parser.parse_args()
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for num_images in args.images:
            small = num_images <= 200
            case_rows, case_notes = run_case(num_images, args.repeat if small else 1, 1 if small else 0, Path(tmp))
            rows += case_rows
            notes += case_notes
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    notes.append(f"maxrss: this process {rss:.0f} MiB, largest worker {rss_children:.0f} MiB.")
    print(notes[-1])
    columns = ["case", "phase", "naive wall s", "wbpose wall s", "x naive", "naive CPU s", "wbpose CPU s"]
    write_table_json(args.json, "metric", columns, rows, notes)


if __name__ == "__main__":
    main()

"""Benchmark of ``CocoWholeBodyMetric.compute()`` against a naive MMPose-style pipeline on the same data.

Data: synthetic COCO-WholeBody ground truth with 5 people per image and detector-like predictions (7 per image:
5 noisy true people + 2 false ones), for 200 and 1,000 images. Phases: rescoring + OKS-NMS, results json
(build + write), the six xtcocotools evaluations; "compute" is the metric end to end (json written while the
evaluations run). The baseline does what MMPose does: per-instance Python rescoring, per-pair OKS-NMS,
``json.dump(indent=4, sort_keys=True)``, ``loadRes`` from the file and six sequential ``COCOeval`` runs. Both
pipelines must give identical numbers (asserted). The floor is xtcocotools itself: see the "evals, 1 proc" row.

Wall times on a shared machine are noisy, so CPU seconds (this process + evaluation workers) are printed too, and
an idle-machine estimate of compute(): the in-process CPU before the pool plus the slowest worker's share of the
per-part evaluation CPU. Peak memory: tracemalloc peak of Python/numpy allocations in this process (a separate,
untimed pass; forked workers are not traced) and the maxrss of the process and of the largest worker.

Usage: ``python benchmarks/metric.py [--images 200 1000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
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


def best_of(runs: list[Laps]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-phase minimum wall and CPU over repeated runs."""
    wall = {k: min(r.wall[k] for r in runs) for k in runs[0].wall}
    cpu = {k: min(r.cpu[k] for r in runs) for k in runs[0].cpu}
    return wall, cpu


def run_case(num_images: int, repeat: int, tmp: Path) -> None:
    gt = make_wholebody_gt(num_images, 5, seed=0)
    ann_path = write_json(tmp / f"gt_{num_images}.json", gt)
    preds = detector_like_predictions(gt, seed=1)
    coco_gt = load_coco_gt(ann_path)
    procs = default_num_procs()

    naive_runs, ours_runs, seq_runs, total_runs = [], [], [], []
    for _ in range(repeat):  # interleaved, best of `repeat`: the machine is shared
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

    naive_wall, naive_cpu = best_of(naive_runs)
    naive_wall["total"], naive_cpu["total"] = sum(naive_wall.values()), sum(naive_cpu.values())
    ours_wall, ours_cpu = best_of(ours_runs)
    for d in (ours_wall, ours_cpu):
        d["json"] = d["json build"] + d["json write"]
        d["evals"] += d["loadRes"]
    total_wall, total_cpu = best_of(total_runs)
    ours_wall["total"], ours_cpu["total"] = total_wall["total"], total_cpu["total"]
    seq_wall, seq_cpu = best_of(seq_runs)
    part_cpu = per_part_cpu(coco_gt, preds)
    makespan = lpt_makespan([part_cpu[p] for p in POOL_ORDER], procs)
    # On idle cores compute() = rescore+nms, json build and loadRes in this process, then the pool (json written
    # meanwhile), whose wall is the slowest worker's CPU, scaled by the pool's measured overhead (fork,
    # copy-on-write of the inherited objects) relative to the same evaluations run in this process.
    overhead = ours_cpu["evals"] / seq_cpu["evals"]
    ideal = ours_cpu["rescore+nms"] + ours_cpu["json build"] + ours_cpu["loadRes"] + makespan * overhead

    mem_naive = traced_peak(lambda: naive_pipeline(coco_gt, preds, tmp / "naive.json"))
    mem_ours = traced_peak(make_metric(ann_path, preds, tmp / "metric.json").compute)

    n_kept = len(json.loads((tmp / "metric.json").read_text()))
    print(
        f"\n### {num_images} images, {len(preds['instance_ids'])} predictions ({n_kept} after OKS-NMS), "
        f"{procs} eval procs, best of {repeat}; body/wholebody AP {ours_metrics['body_ap']:.3f}/"
        f"{ours_metrics['wholebody_ap']:.3f}, all 70 numbers identical to the naive pipeline"
    )
    print("| phase | naive wall s | wbpose wall s | speed-up | naive CPU s | wbpose CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("rescore+nms", "rescore+nms"), ("json", "json (build+write)"), ("evals", f"evals ({procs} procs)")]
    for key, label in [*rows, ("total", "**compute() total**")]:
        nw, ow, nc, oc = naive_wall[key], ours_wall[key], naive_cpu[key], ours_cpu[key]
        print(f"| {label} | {nw:.3f} | {ow:.3f} | {nw / ow:.1f}x | {nc:.3f} | {oc:.3f} |")
    ev_w, ev_c = seq_wall["evals"] + seq_wall["loadRes"], seq_cpu["evals"] + seq_cpu["loadRes"]
    print(f"| evals, 1 proc (xtcocotools floor) | {naive_wall['evals']:.3f} | {ev_w:.3f} | | | {ev_c:.3f} |")
    print(f"| peak traced MiB | {mem_naive:.0f} | {mem_ours:.0f} | | | |")
    parts = ", ".join(f"{p} {c:.2f}" for p, c in part_cpu.items())
    print(
        f"Idle-machine estimate: per-part eval CPU s ({parts}); slowest of {procs} workers {makespan:.3f} s "
        f"x pool overhead {overhead:.2f}; "
        f"compute() ~ {ideal:.3f} s vs naive CPU {naive_cpu['total']:.3f} s -> {naive_cpu['total'] / ideal:.1f}x. "
        f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for num_images in args.images:
            run_case(num_images, args.repeat if num_images <= 200 else 1, Path(tmp))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\nmaxrss: this process {rss:.0f} MiB, largest worker {rss_children:.0f} MiB")


if __name__ == "__main__":
    main()

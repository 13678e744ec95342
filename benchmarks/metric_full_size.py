"""The COCO-WholeBody metric at full val size: in-process ``compute()`` and scoring a results file, against
MMPose's pipeline and other engines in the same run.

Data: the full-size val stand-in (``wbpose-synthetic --full-size --out ROOT --splits val``: 5,000
images, 11,004 people, 104,125 detector boxes). One prediction per detector box is simulated as a model gives it
(the matched person's keypoints plus noise of a few OKS sigmas, heatmap-like scores; boxes on nobody get a posed
skeleton in the box and low scores), keypoints and scores as float32 tensors (what the engine passes to
``update()``), in batches of 256; areas are the padded, aspect-fixed box areas.

Rows:

- ``compute()`` of ``CocoWholeBodyMetric`` (fast engine) on the 104,125 predictions, without and with the results
  json (with ``num_procs=2`` a forked worker writes it while this process evaluates): wall time, CPU time (this
  process and its workers) and peak memory (tracemalloc peak of this process's allocations);
- the results file the metric writes (post OKS-NMS) scored by ``wbpose-score``'s function (fast
  engine) end to end (parse the ground truth and the results, six evaluations), and with the ground truth loaded
  first (parse the results, six evaluations) before and after MMPose's pipeline: ``json.load`` of the results,
  ``loadRes``, six sequential xtcocotools evaluations, its ground truth ``COCO`` loaded first (untimed, as MMPose's
  metric loads it once at construction); and, when importable (``--engines PATH`` adds a folder to ``sys.path``),
  by xthotcoco (hotcoco's Rust engine);
- every engine's 60 numbers are compared with xtcocotools' (max abs difference).

Each step runs once (seconds to minutes each; ``benchmarks/timing.py`` with one repeat and no warm-up).

Usage: ``python benchmarks/metric_full_size.py --root /tmp/wbpose_full [--skip-xtcocotools] [--engines DIR]
[--json PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import torch

from wbpose.data.coco_files import parse_annotation_file
from wbpose.data.detection_files import parse_detection_file
from wbpose.keypoints import NUM_KEYPOINTS, sigmas_array
from wbpose.metrics import CocoWholeBodyMetric
from wbpose.metrics.evaluation import evaluate_arrays, evaluate_results_file, load_gt_arrays
from wbpose.metrics.keypoint_results import EVAL_PARTS
from wbpose.metrics.results_io import read_results_arrays
from wbpose.synthetic.full_size import LAYOUT, TEMPLATE

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import add_json_argument, measure, write_json  # noqa: E402


def simulate_predictions(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """One model-like prediction per detector box (see the module docstring)."""
    gt = parse_annotation_file(root / LAYOUT["ann"].format(split="val"))
    dets = parse_detection_file(root / LAYOUT["det"])
    rng = np.random.default_rng(seed)
    n = len(dets.scores)
    box = dets.bbox
    # match each box to the most overlapping person with keypoints of its image (IoU > 0.5)
    has_kp = (gt.num_keypoints > 0) & ~gt.iscrowd
    people = np.flatnonzero(has_kp)
    order = np.argsort(gt.ann_image_ids[people], kind="stable")
    people = people[order]
    p_img = gt.ann_image_ids[people]
    lo, hi = np.searchsorted(p_img, dets.image_ids, "left"), np.searchsorted(p_img, dets.image_ids, "right")
    match = np.full(n, -1)
    best = np.zeros(n)
    for k in range(int((hi - lo).max(initial=0))):
        cand = lo + k < hi
        idx = np.flatnonzero(cand)
        g = people[lo[idx] + k]
        gb = gt.bbox[g]
        x1 = np.maximum(box[idx, 0], gb[:, 0])
        y1 = np.maximum(box[idx, 1], gb[:, 1])
        x2 = np.minimum(box[idx, 0] + box[idx, 2], gb[:, 0] + gb[:, 2])
        y2 = np.minimum(box[idx, 1] + box[idx, 3], gb[:, 1] + gb[:, 3])
        inter = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
        iou = inter / (box[idx, 2] * box[idx, 3] + gb[:, 2] * gb[:, 3] - inter)
        better = (iou > 0.5) & (iou > best[idx])
        best[idx[better]], match[idx[better]] = iou[better], g[better]
    xy = box[:, None, :2] + (TEMPLATE[None] + rng.normal(0, 0.04, (n, NUM_KEYPOINTS, 2))) * box[:, None, 2:]
    matched = np.flatnonzero(match >= 0)
    g = match[matched]
    gkp = np.asarray(gt.keypoints[g])
    scale = np.sqrt(np.maximum(gt.area[g], 1.0))[:, None, None]
    c = rng.uniform(0.1, 0.8, (len(g), 1, 1))
    noisy = gkp[..., :2] + rng.normal(0, 1, (len(g), NUM_KEYPOINTS, 2)) * c * 2 * sigmas_array()[None, :, None] * scale
    xy[matched] = np.where(gkp[..., 2:] > 0, noisy, xy[matched])
    scores = rng.beta(2, 5, (n, NUM_KEYPOINTS))
    scores[matched] = rng.beta(6, 2, (len(g), NUM_KEYPOINTS))
    w, h = box[:, 2], box[:, 3]
    aspect = 192 / 256
    w_fixed = np.where(w > aspect * h, w, h * aspect)
    h_fixed = np.where(w > aspect * h, w / aspect, h)
    return {
        "instance_ids": np.arange(n, dtype=np.int64),
        "image_ids": dets.image_ids.astype(np.int64),
        "keypoints": xy.astype(np.float32),  # a model's outputs: float32, as the engine passes them to update()
        "keypoint_scores": scores.astype(np.float32),
        "bbox_scores": dets.scores,
        "areas": (w_fixed * 1.25) * (h_fixed * 1.25),
    }


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    """One run (a full-size step takes seconds to minutes): its result, wall seconds and CPU seconds."""
    result, cpu = [], cpu_seconds()
    wall = measure(lambda: result.append(fn()), warmup=0, repeats=1).median
    return result[0], wall, cpu_seconds() - cpu


def make_metric(ann: Path, preds: dict, outfile: Path | None, batch: int = 256, **kw) -> CocoWholeBodyMetric:
    metric = CocoWholeBodyMetric(ann, outfile=outfile, **kw)
    _ = metric.gt_arrays  # loaded once per run (the ground truth of every epoch), as in training
    for s in range(0, len(preds["instance_ids"]), batch):
        metric.update(**{k: torch.as_tensor(v[s : s + batch]) for k, v in preds.items()})
    return metric


def mmpose_pipeline(ann: Path, results: Path) -> dict[str, np.ndarray]:
    """MMPose 1.x ``CocoWholeBodyMetric._do_python_keypoint_eval`` after ``results2json``: load + six runs."""
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco = COCO(str(ann))
        start = time.perf_counter()
        coco_dt = coco.loadRes(str(results))
        out = {}
        for part, sl in EVAL_PARTS.items():
            ev = COCOeval(coco, coco_dt, f"keypoints_{part}", sigmas_array()[sl], use_area=True)
            ev.params.useSegm = None
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[part] = np.asarray(ev.stats)
    return out, time.perf_counter() - start


def xthotcoco_pipeline(ann: Path, results: Path) -> tuple[dict[str, np.ndarray], float]:
    import xthotcoco

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco = xthotcoco.COCO(str(ann))
        start = time.perf_counter()
        dt = coco.loadRes(str(results))
        out = {}
        for part, sl in EVAL_PARTS.items():
            iou_type = "keypoints" if part == "body" else f"keypoints_{part}"  # its name for the body part
            ev = xthotcoco.COCOeval(coco, dt, iou_type, sigmas_array()[sl], use_area=True)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[part] = np.asarray(ev.stats)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/wbpose_full"))
    parser.add_argument("--skip-xtcocotools", action="store_true", help="skip the (slow) MMPose pipeline")
    parser.add_argument("--engines", type=Path, default=None, help="folder with xthotcoco/hotcoco installed")
    add_json_argument(parser)
    args = parser.parse_args()
    if args.engines is not None:
        sys.path.append(str(args.engines))
    ann = args.root / LAYOUT["ann"].format(split="val")
    preds = simulate_predictions(args.root)
    n = len(preds["instance_ids"])
    print(f"### Full-size val metric: {n} predictions on {len(np.unique(preds['image_ids']))} images; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        # 1. in-process compute(), without and with the results json, with the default (1) and 2 workers
        cases = (("compute() (no results json, the val metric)", None, None),
                 ("compute() + results json (the test metric)", tmp / "results.json", None),
                 ("compute() + results json, num_procs=2 (json written by a forked worker meanwhile)",
                  tmp / "results2.json", 2))  # fmt: skip
        outputs = []
        for label, outfile, procs in cases:
            metric = make_metric(ann, preds, outfile, num_procs=procs)
            out, wall, cpu = timed(metric.compute)
            outputs.append({k: float(v) for k, v in out.items()})
            rows.append((label, wall, cpu))
        metrics = outputs[0]
        same_numbers = all(o == metrics for o in outputs)
        kept = len(read_results_arrays(tmp / "results.json"))
        same_json = (tmp / "results.json").read_bytes() == (tmp / "results2.json").read_bytes()
        metric = make_metric(ann, preds, None)
        tracemalloc.start()
        metric.compute()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()

        # 2. the results file: end to end (score_results), and with the ground truth loaded first (as MMPose's row),
        # before and after MMPose's pipeline (the load of the shared machine changes during its minutes)
        results = tmp / "results.json"
        size = results.stat().st_size / 2**20
        fast, wall, cpu = timed(lambda: evaluate_results_file(ann, results, engine="fast"))
        rows.append((f"score_results.py end to end (parse GT + {size:.0f} MB results + six evaluations)", wall, cpu))
        gt = load_gt_arrays(ann)
        loaded, wall, cpu = timed(lambda: evaluate_arrays(gt, read_results_arrays(results), ann_file=ann))
        rows.append(("fast engine, GT loaded first: parse the results + six evaluations", wall, cpu))
        fast_stats = {p: np.array([fast[f"{p}_{s}"] for s in STATS]) for p in EVAL_PARTS}
        compare = {}
        if not args.skip_xtcocotools:
            ref, wall_ref = mmpose_pipeline(ann, results)
            rows.append(("MMPose: loadRes(json.load) + six sequential xtcocotools runs (GT loaded first)", wall_ref,
                         None))  # fmt: skip
            _, wall, cpu = timed(lambda: evaluate_arrays(gt, read_results_arrays(results), ann_file=ann))
            rows.append(("fast engine, GT loaded first, again after MMPose's pipeline", wall, cpu))
            compare["fast engine"] = max(np.abs(fast_stats[p] - ref[p]).max() for p in EVAL_PARTS)
            in_process = {k.split("/", 1)[1]: float(v) for k, v in metrics.items()}
            compare["compute()"] = max(abs(in_process[f"{p}_{s}"] - ref[p][i]) for p in EVAL_PARTS
                                       for i, s in enumerate(STATS))  # fmt: skip
            try:
                hot, wall_hot = xthotcoco_pipeline(ann, results)
                rows.append(("xthotcoco 0.1 (hotcoco 1.3 Rust engine): load + six runs", wall_hot, None))
                compare["xthotcoco"] = max(np.abs(hot[p] - ref[p]).max() for p in EVAL_PARTS)
            except Exception as err:  # noqa: BLE001 - an optional comparison must not lose the run
                print(f"(xthotcoco failed or is not importable: {err!r})")
    print(f"results file: {kept} results after OKS-NMS, {size:.0f} MB (the same bytes with num_procs=2: "
          f"{same_json}); peak traced memory of compute(): {peak:.0f} MiB (this process)")  # fmt: skip
    print(f"the compute() runs give the same numbers: {same_numbers}; score_results and the GT-first run too: "
          f"{loaded == fast}; load at the end {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| step | wall s | CPU s (incl. workers) |")
    print("|---|---:|---:|")
    for label, wall, cpu in rows:
        print(f"| {label} | {wall:.2f} | {'' if cpu is None else f'{cpu:.2f}'} |")
    if not args.skip_xtcocotools:
        ref_wall = next(w for lbl, w, _ in rows if lbl.startswith("MMPose"))
        for label, wall, _ in rows:
            if label.startswith(("score_results", "fast engine")):
                print(f"MMPose's pipeline / ({label}), same run: {ref_wall / wall:.1f}x")
        for name, diff in compare.items():
            print(f"max |{name} - xtcocotools| over the 60 numbers: {diff:.3g}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"maxrss: this process {rss:.0f} MiB (includes the MMPose pipeline), largest worker {kids:.0f} MiB")
    cells = [[label, f"{wall:.2f}", "" if cpu is None else f"{cpu:.2f}"] for label, wall, cpu in rows]
    notes = [
        f"{n} simulated predictions, {kept} results after OKS-NMS, results file {size:.0f} MB; one run per step "
        f"(median of 1, no warm-up); peak traced memory of compute() {peak:.0f} MiB.",
        f"Same numbers across the compute() runs: {same_numbers}; " + "; ".join(
            f"max |{name} - xtcocotools| {diff:.3g}" for name, diff in compare.items()),
    ]  # fmt: skip
    write_json(args.json, "metric_full_size", ["step", "wall s", "CPU s (incl. workers)"], cells, notes)


STATS = ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")

if __name__ == "__main__":
    main()

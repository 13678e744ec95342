"""Frames/s of the video path (read -> boxes -> pose -> tracking -> draw -> encode) next to the network-only floor.

A synthetic video (``wbpose.synthetic.video``: 2 people per frame, 480x640, moving and overlapping) goes
through ``wbpose.inference.pipeline.run`` exactly as ``scripts/predict.py --source video.mp4 --boxes TRUE_BOXES
--track --det-every 5`` runs it (frames read in a background thread, drawing and encoding in another), with the flip
test, on CPU with ``torch.set_num_threads(2)``. In the same run, the *network-only floor* runs the same crops (the
crops the pipeline cut, prepared beforehand) through ``Predictor.heatmaps`` (the forward pass with the mirrored crops
and the flip averaging) and nothing else, and the *pose-only* run is the same loop (boxes, crops, network, heatmap
decoding, tracking, results json) on the video's frames already decoded in memory, with drawing and encoding off.

Overhead vs floor = pipeline time / floor time - 1, split in two parts, both as a fraction of the floor:

* I/O and drawing = (pipeline - pose-only) / floor: reading and decoding the video, drawing, encoding and the
  threads that do them, as far as the network did not hide them. The issue's target: < 15 % of the network time.
* pose work outside the network = (pose-only - floor) / floor: crops, heatmap decoding, tracking and results, which
  run on the main thread between two forward passes (the next frame's boxes need this frame's poses).

Where the tiny model's time goes on a 2-core machine (idle, one network thread): the network ~10 ms a frame; on
the main thread between two forward passes ~2.4 ms of pose work (two crops, DARK decoding of 2 x 133 maps ~1 ms of
numpy/torch call overhead on tiny arrays, tracking, results); in the reader and writer threads ~5 ms of CPU (video
decoding, drawing, MPEG-4 encoding; a study script split it per stage: git show 8d1a4fc:benchmarks/video_cpu_split.py),
hidden when a core is
free for them. With as many network threads as cores they have none: spinning OpenMP workers get preempted, passive
ones slow the network itself. The pose work cannot simply move to the writer thread: every op of the eager network
re-takes the GIL, so Python work in another thread delays it by about as much as it would save.

Pipeline, pose-only run and floor alternate ``--reps`` times after one warm-up of each pipeline run; each is
reported as the median with the range (``benchmarks/timing.py``; this machine is shared and noisy), the thread split
from the run closest to the pipeline's median; the load average is printed: figures taken at a load above ~2 (other
jobs on the two cores) scatter widely.

Models: the tiny HRNet at 128x96 (the demo checkpoint ``outputs/demo/checkpoints/best_epoch029.ckpt`` when it
exists, else random BN-calibrated weights) and HRNet-W32 at 256x192 (random BN-calibrated weights: speed does not
depend on the values, and calibrated statistics keep them free of denormals and overflow); ``tiny-onnx`` and
``w32-onnx`` run the same networks exported to ONNX (flip test folded in) in ONNX Runtime.

Usage:
    python benchmarks/video.py [--archs tiny w32 tiny-onnx w32-onnx] [--frames 20 8] [--reps 4] [--threads 2]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# As scripts/predict.py: idle OpenMP workers sleep instead of spinning (on this shared 2-core machine spinning
# workers made every timing scatter by 10x); a value in the environment wins, and OMP_WAIT_POLICY=default runs with
# the OpenMP runtime's own default (spin a while, then sleep).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if os.environ["OMP_WAIT_POLICY"].lower() == "default":
    del os.environ["OMP_WAIT_POLICY"]

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared test helpers

from helpers.fakes import calibrated_model, mmpose_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import Timing, add_json_argument, write_json  # noqa: E402
from wbpose.inference import Predictor, make_codec  # noqa: E402
from wbpose.inference.boxes import DetectionFile  # noqa: E402
from wbpose.inference.pipeline import run  # noqa: E402
from wbpose.inference.sources import Frame, FrameSource, VideoFile  # noqa: E402
from wbpose.inference.tracking import PoseTracker  # noqa: E402
from wbpose.synthetic.video import make_synthetic_video  # noqa: E402

DEMO_CKPT = Path(__file__).resolve().parents[1] / "outputs/demo/checkpoints/best_epoch029.ckpt"
SIZES = {"tiny": (128, 96), "w32": (256, 192)}
ARCHS = ("tiny", "w32", "tiny-onnx", "w32-onnx")


def build_predictor(arch: str, folder: Path) -> tuple[Predictor, str]:
    """The model of a row; ``<arch>-onnx`` is the same network exported (flip test folded in), in ONNX Runtime."""
    base, onnx = arch.removesuffix("-onnx"), arch.endswith("-onnx")
    if base == "tiny" and DEMO_CKPT.is_file():
        predictor, weights = Predictor.from_checkpoint(DEMO_CKPT, device="cpu"), "demo checkpoint"
        source = DEMO_CKPT
    else:
        hw = SIZES[base]
        codec = make_codec("dark" if base == "tiny" else "msra", hw)
        model = calibrated_model(base, hw=hw)
        predictor, weights = Predictor(model, codec, codec.input_wh, device="cpu"), "random, BN-calibrated"
        name = f"hrnet_{base}_coco_wholebody_{hw[0]}x{hw[1]}.pth" if base != "tiny" else "tiny_dark.pth"
        source = mmpose_file(model, folder / name)
    if not onnx:
        return predictor, weights
    from wbpose.inference.export import export_onnx

    hw = None if source == DEMO_CKPT else SIZES[base]
    codec = None if source == DEMO_CKPT else ("dark" if base == "tiny" else "msra")
    path = export_onnx(source, folder / f"{arch}.onnx", flip_test=True, image_hw=hw, codec=codec, verify=False).path
    return Predictor.from_onnx(path), weights + ", ONNX Runtime (flip folded in)"


class FramesInMemory(FrameSource):
    """A video's frames, decoded once and then served from memory (the pose-only run: no reading, no decoding)."""

    def __init__(self, path: Path) -> None:
        source = VideoFile(path)
        try:
            self.frames: list[Frame] = list(source)
        finally:
            source.close()
        self.kind, self.name, self.fps, self.frame_wh = source.kind, source.name, source.fps, source.frame_wh
        self.num_frames, self.skipped = len(self.frames), []

    def __iter__(self):
        return iter(self.frames)


def pipeline_once(
    predictor: Predictor, video, out: Path, det_every: int, frames: FramesInMemory | None = None
) -> tuple[float, dict, int, list]:
    """One run of the video path; returns (seconds, timings, people, per-frame crops for the floor).

    ``timings["network"]`` is the time the pipeline spent in ``Predictor.heatmaps`` (the network with the flip
    test), measured inside the run. With ``frames`` (the video decoded in memory) it is the *pose-only* run: the same
    loop, tracker and results json on frames already in memory, with drawing and encoding off.
    """
    crops: list[np.ndarray] = []
    network = [0.0]
    original_crops, original_heatmaps = predictor.crops, predictor.heatmaps

    def recording_crops(image, boxes, **options):  # keep each frame's crops for the floor (outside the timed floor)
        result = original_crops(image, boxes, **options)
        crops.append(result[0].copy())
        return result

    def timed_heatmaps(images):
        start = time.perf_counter()
        out = original_heatmaps(images)
        network[0] += time.perf_counter() - start
        return out

    predictor.crops, predictor.heatmaps = recording_crops, timed_heatmaps  # type: ignore[method-assign]
    try:
        tracker = PoseTracker(DetectionFile(video.boxes), det_every=det_every)
        source = VideoFile(video.video) if frames is None else frames
        result = run(predictor, source, tracker, out, progress=False, draw=frames is None)
    finally:
        del predictor.crops, predictor.heatmaps
    return result.seconds, {**result.timings, "network": network[0]}, result.people, crops


def floor_once(predictor: Predictor, crops: list[np.ndarray]) -> float:
    """The network alone on the same crops, frame by frame: forward (with the mirrored crops) + flip averaging."""
    tensors = [torch.from_numpy(c) for c in crops]
    start = time.perf_counter()
    for x in tensors:
        if len(x):
            predictor.heatmaps(x)
    return time.perf_counter() - start


def bench(arch: str, frames: int, reps: int, det_every: int, folder: Path) -> dict:
    (folder / arch).mkdir(parents=True, exist_ok=True)
    video = make_synthetic_video(folder / arch, num_frames=frames, frame_hw=(480, 640), num_people=2, seed=7)
    predictor, weights = build_predictor(arch, folder)
    if weights.startswith("random"):
        # Random weights put no keypoint on the person, so no box survives between detections: ask the true boxes
        # every frame (the tracker still matches ids every frame). The crops per frame, hence the work, are those
        # of a trained model with det_every=5; the box source itself costs < 0.1 ms a frame either way.
        det_every = 1
    frames_in_memory = FramesInMemory(video.video)
    pipeline_once(predictor, video, folder / f"{arch}_warm", det_every)  # warm-up (allocator, kernels, files)
    pipeline_once(predictor, video, folder / f"{arch}_warm", det_every, frames_in_memory)
    pipe, pose, floor, runs, people = [], [], [], [], 0
    for _ in range(reps):
        seconds, t, people, crops = pipeline_once(predictor, video, folder / f"{arch}_out", det_every)
        pipe.append(seconds)
        runs.append(t)
        pose.append(pipeline_once(predictor, video, folder / f"{arch}_pose", det_every, frames_in_memory)[0])
        floor.append(floor_once(predictor, crops))
    pipe_t, pose_t, floor_t = (Timing.of(v, 1) for v in (pipe, pose, floor))
    timings = runs[int(np.argmin(np.abs(np.asarray(pipe) - pipe_t.median)))]
    size = "x".join(map(str, SIZES[arch.removesuffix("-onnx")]))
    return {"arch": arch, "weights": weights, "input": size, "frames": frames, "people": people, "det_every": det_every,
            "pipe_s": pipe_t.median, "pose_s": pose_t.median, "floor_s": floor_t.median, "timings": timings,
            "pipe": pipe_t, "pose": pose_t, "floor": floor_t}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--archs", nargs="+", default=["tiny", "w32"], choices=ARCHS)
    parser.add_argument("--frames", nargs="+", type=int, default=[20, 8], help="frames per arch (same order)")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--det-every", type=int, default=5)
    add_json_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    frames = dict(zip(args.archs, args.frames + args.frames[-1:] * len(args.archs)))
    rows = []
    start_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            rows.append(bench(arch, frames[arch], args.reps, args.det_every, Path(tmp)))
    policy = os.environ.get("OMP_WAIT_POLICY", "default (unset)")
    print(f"\nvideo path, CPU, {args.threads} threads, 480x640 synthetic video, 2 people per frame, flip test, "
          f"tracking (true boxes every N frames), drawing + mp4v encoding on; OMP_WAIT_POLICY="
          f"{policy}; load average at the start {start_load:.1f}")  # fmt: skip
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} (2 cores; above ~2 other jobs share the cores and timings scatter)")
    columns = [
        "model", "weights", "frames", "pipeline frames/s", "pose-only frames/s", "network-only floor frames/s",
        "overhead vs floor", "of which I/O + drawing (pipeline - pose-only, target < 15 % of the floor)",
        "of which pose work outside the network (pose-only - floor)", "network share of the pipeline's wall time",
        "main thread (s): read wait / boxes / pose (network) / track / write wait", "writer thread busy (s)",
    ]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    cells = []
    for r in rows:
        t = r["timings"]
        split = " / ".join(f"{t[k]:.2f}" for k in ("wait_read", "boxes"))
        split += f" / {t['pose']:.2f} ({t['network']:.2f}) / {t['track']:.2f} / {t['wait_write']:.2f}"
        overhead = r["pipe_s"] / r["floor_s"] - 1
        io_draw = (r["pipe_s"] - r["pose_s"]) / r["floor_s"]
        pose_work = (r["pose_s"] - r["floor_s"]) / r["floor_s"]
        n = r["frames"]
        fps = [r[k].rate(n).text(2) for k in ("pipe", "pose", "floor")]
        cells.append([f"{r['arch']} {r['input']}", f"{r['weights']}, boxes every {r['det_every']}",
                      f"{n} ({r['people']} people)", *fps, f"{100 * overhead:+.1f} %",
                      f"{100 * io_draw:+.1f} % {'(met)' if io_draw < 0.15 else '(NOT met)'}",
                      f"{100 * pose_work:+.1f} %", f"{100 * t['network'] / r['pipe_s']:.0f} %", split,
                      f"{t.get('draw_write', 0):.2f}"])  # fmt: skip
        print("| " + " | ".join(cells[-1]) + " |")
    statistic = rows[0]["pipe"].statistic if rows else ""
    notes = [
        f"CPU, {args.threads} network threads, OMP_WAIT_POLICY={policy}; 1-min load {start_load:.1f} at the start, "
        f"{load:.1f} at the end.",
        f"frames/s: frames / wall seconds of one pass, {statistic}; the percentages use the medians.",
    ]
    write_json(args.json, "video", columns, cells, notes)
    return rows


if __name__ == "__main__":
    main()

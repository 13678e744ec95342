"""CPU-time split of the video path (robust to load): per-stage thread CPU ms/frame, process CPU of pipeline vs floor.

Usage: ``python benchmarks/video_cpu_split.py [tiny|w32] [reps]`` (the figures of docs/benchmarks.md#video-path).
"""
# ruff: noqa: E402, E501, E701, B007  (a measuring script kept as it was run; see docs/benchmarks.md#video-path)

import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path

import numpy as np
import torch

_REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO / "tests"))
sys.path.insert(0, str(_REPO / "benchmarks"))
torch.set_num_threads(2)
import video as vb
from wbpose.inference import Predictor
from wbpose.inference import pipeline as pl
from wbpose.inference.boxes import DetectionFile
from wbpose.inference.sources import VideoFile
from wbpose.inference.tracking import PoseTracker
from wbpose.synthetic.video import make_synthetic_video

arch = sys.argv[1] if len(sys.argv) > 1 else "tiny"
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
tmp = Path(tempfile.mkdtemp())
N = 20
v = make_synthetic_video(tmp, num_frames=N, frame_hw=(480, 640), num_people=2, seed=7)
pred, _ = vb.build_predictor(arch, tmp)
acc = {}


def timed(name, fn):
    def w(*a, **k):
        s = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            acc[name] = acc.get(name, 0.0) + time.thread_time() - s

    return w


pred.crops = timed("main: crops", pred.crops)
pred.heatmaps = timed("main: network (main thread cpu only)", pred.heatmaps)
pred.codec.decode = timed("main: decode", pred.codec.decode)
orig_predict = Predictor.predict
pred.predict = timed("main: predict total", lambda *a, **k: orig_predict(pred, *a, **k))
orig_task = pl._draw_task


def draw_task(*a, **k):
    return timed("writer: draw+encode", orig_task(*a, **k))


pl._draw_task = draw_task
orig_iter = VideoFile.__iter__


def it(self):
    g = orig_iter(self)
    while True:
        s = time.thread_time()
        try:
            f = next(g)
        except StopIteration:
            return
        finally:
            acc["reader: decode+cvt"] = acc.get("reader: decode+cvt", 0.0) + time.thread_time() - s
        yield f


VideoFile.__iter__ = it
rows = []
for r in range(reps + 1):
    acc.clear()
    c0, w0 = time.process_time(), time.perf_counter()
    res = pl.run(pred, VideoFile(v.video), PoseTracker(DetectionFile(v.boxes), det_every=5), tmp / "o", progress=False)
    pcpu, pwall = time.process_time() - c0, time.perf_counter() - w0
    snap = dict(acc)
    # floor: same crops
    crops = [torch.from_numpy(pred.crops(f.image, DetectionFile(v.boxes)(f).xywh)[0]) for f in VideoFile(v.video)]
    acc.clear()
    c0, w0 = time.process_time(), time.perf_counter()
    for x in crops:
        pred.heatmaps(x)
    fcpu, fwall = time.process_time() - c0, time.perf_counter() - w0
    if r:
        rows.append((pcpu, pwall, fcpu, fwall, snap))
print(f"arch {arch} load {os.getloadavg()[0]:.1f}")
for pcpu, pwall, fcpu, fwall, snap in rows:
    print(
        f"  pipeline cpu {1e3 * pcpu / N:.1f} ms/f wall {1e3 * pwall / N:.1f} | floor cpu {1e3 * fcpu / N:.1f} wall {1e3 * fwall / N:.1f} | cpu overhead {100 * (pcpu / fcpu - 1):+.0f}% wall overhead {100 * (pwall / fwall - 1):+.0f}%"
    )
print("  per-stage thread CPU ms/frame (median over reps):")
for k in rows[0][4]:
    print(f"    {k:40s} {1e3 * np.median([s[4].get(k, 0) for s in rows]) / N:6.2f}")

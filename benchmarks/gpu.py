"""One-command GPU check: W32 training end to end with the real loader in the fastest step mode, the step modes on
in-memory batches with their difference from the eager step, the full val protocol with its split, MMPose's own step
and pipeline on the same machine, the loader per worker against the machine's floor, the GPU tests, and the
numerics of the GPU paths. Prints one markdown table, last.

Goals it measures (issue 23, one H100/H200): W32 256x192 bf16 training end to end with the real loader over the
full-size fixture at >= 3,000 images/s at batch 512 and >= 1,500 at batch 64; the full val protocol (104,125 detector
boxes, flip test, DARK) within 60 s; loader images/s per worker next to this machine's per-core floor; the fast
step equal to the eager step on the same batch.

Sections, most important first. Each runs in its own process (a process group, killed whole at its cap: a hang,
a crash or running out of GPU memory ends that section alone), under its own time cap and the run's budget
(``--budget`` seconds): a section that cannot start with its minimum left is skipped, and its row says so. Every
row is printed as it is measured, so a section stopped at its cap keeps the rows it finished; the table at the end
holds whatever completed, then one row with each section's seconds.

1. ``checks``: DARK on the device vs the CPU (max px difference), bf16 vs fp32 heatmaps; the fixture's annotation
   cache (every later section reads it); the device crops (``data.decode_on=gpu``: ``affine_grid``/``grid_sample``)
   against ``cv2.warpAffine`` on the fixture's JPEGs (share within one grey level), and nvJPEG's decode against
   OpenCV's (mean and max difference: the two JPEG decoders may differ; the crop test excludes the decode).
2. ``steps``: one optimiser step of W32 256x192 (bf16 autocast, channels_last, MSE loss, fused Adam: the one-GPU
   recipe) on in-memory batches at batch 512 and 64 in each step mode (``module.step_mode``: ``eager``,
   ``cuda_graph``; ``compile`` with ``--compile``, since inductor compiles for minutes), through
   ``benchmarks/train_throughput.py``'s ``step_mode_rows``: images/s, the speed-up over eager, the first step's
   seconds (autotuning, capture, compilation), and the first step's difference from the eager step on the same
   batch (loss, gradients, weights, BatchNorm statistics; for eager, a second eager run: the device's own
   run-to-run floor).
3. ``train``: the same step end to end with the real loader over the full-size fixture (``--workers`` workers), at
   batch 512 and 64: the fastest mode of ``steps`` (by in-memory images/s at that batch) with the crops made on the
   GPU (``decode_on=gpu``), then by the CPU workers (``decode_on=cpu``), then the other modes with the GPU crops.
4. ``val``: ``Trainer.validate`` of W32 256x192 DARK with the flip test (one batched pass of the crops and their
   mirrors) over the full-size val fixture's detector boxes with ``decode_on=gpu`` (random weights: the wall time
   does not depend on them), split into loader wait, device crops, network, decode, metric
   (``wbpose.engine.timing.StageTimer``, synchronised per call).
5. ``mmpose``: ``benchmarks/mmpose_step.py`` (``--mmpose-site``: MMPose's step at batch 64 and 512, fp32 and bf16;
   its pipeline per process and per loader worker on the same fixture).
6. ``loader``: the floor (one core, one process: ``cv2.imread`` + one ``cv2.warpAffine`` to 192x256 per training
   sample, OpenCV and torch on one thread, samples/s), then the training loader alone (batch 64, ``--workers``
   workers and 1 worker), images/s after every worker has started and delivered (start-up excluded: ``3 x workers``
   batches drained first), and per worker next to the floor (``per worker / floor``), ``decode_on=cpu`` (workers
   decode, warp, normalise, render heatmaps) and ``decode_on=gpu`` (workers send the files, warps and target
   profiles; the GPU decodes, warps, renders).
7. ``tests``: ``pytest -m gpu`` over the test files with GPU tests (the real CUDA-graph capture against the eager
   step, the Lightning run of each fast mode, the device decode, crops and predictor; the ``compile`` ones only
   with ``--compile``); the counts from pytest's junit xml, the failures by name.
8. ``video``: ``benchmarks/video.py`` (CPU, 2 network threads; ``--video``), its rows read back from its json.

``--smoke`` runs every section on CPU at toy sizes (tiny HRNet, 64x64, a tiny synthetic root, no budget): the
``cuda_graph`` mode through its CPU stand-in (``RerunCapture``: the same static buffers and gradient tensors,
the captured function re-run), ``compile`` with ``--compile --compile-backend eager``, MMPose when ``--mmpose-site``
is given, the GPU tests collected and skipped. The tests run it.

Timing (``benchmarks/timing.py``): images/s from the median step after the warm-up steps, with the range; a
loader alone is timed as batches over wall time after its warm-up.

Usage: ``bash benchmarks/gpu.sh`` (installs the carried wheels, makes the full-size fixture, logs into ``$OUT``),
or ``python benchmarks/gpu.py --root /tmp/wbpose_full [--mmpose-site DIR] [--video] [--compile] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from wbpose.codecs import make_codec
from wbpose.engine.fast_step import OptimizerStep, RerunCapture, TrainStep
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py, train_throughput.py
from timing import Timing, add_json_argument, measure, write_json  # noqa: E402
from train_throughput import step_mode_rows  # noqa: E402

HERE = Path(__file__).resolve().parent
#: input -> (image_hw, heatmap_hw, sigma)
INPUT = ((256, 192), (64, 48), 2.0)
SMOKE_INPUT = ((64, 64), (16, 16), 1.0)
#: The test files holding ``@pytest.mark.gpu`` tests (the ``tests`` section runs ``pytest -m gpu`` over them).
GPU_TEST_FILES = (
    "tests/engine/test_fast_step.py",
    "tests/engine/test_module.py",
    "tests/codecs/test_codecs.py",
    "tests/data/test_gpu_pixels.py",
    "tests/inference/test_predictor.py",
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate_text(t: Timing) -> str:
    return f"{t.median:.0f} img/s ({t.min:.0f}-{t.max:.0f})"


class Rows:
    """The table: each row printed as soon as it is measured and, with ``path``, appended to that json-lines file
    (a section's process writes there; the run's process reads them back, also after a section was stopped)."""

    def __init__(self, path: Path | None = None) -> None:
        self.rows: list[tuple[str, str]] = []
        self.path = path
        self.failures = 0

    def fail(self, label: str, error: BaseException) -> None:
        """A row that broke: its traceback into the log, ``FAILED`` with the error in the table; the rest goes on."""
        traceback.print_exception(error)
        self.failures += 1
        self.add(label, f"FAILED ({type(error).__name__}: {str(error).strip()[:160]})")

    def add(self, label: str, value: str) -> None:
        self.rows.append((label, value))
        print(f"{label}: {value}", flush=True)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps([label, value]) + "\n")


class Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def spent(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.spent()


# ----------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Section:
    """One part of the run: ``cap`` seconds at most, started only with ``least`` seconds of the budget left."""

    name: str
    cap: float
    least: float


#: The sections in the order they run, most important first; caps sized for one H100/H200 (docs/benchmarks.md#gpu).
SECTIONS = (
    Section("checks", cap=60, least=20),
    Section("steps", cap=100, least=40),
    Section("train", cap=130, least=40),
    Section("val", cap=130, least=40),
    Section("mmpose", cap=120, least=40),
    Section("loader", cap=60, least=25),
    Section("tests", cap=60, least=25),
    Section("video", cap=90, least=40),
)
#: --compile: inductor's compilation of the W32 step, twice (batch 512 and 64).
COMPILE_STEPS_CAP = 420


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (a section and what it started: loader workers, subprocesses)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class SectionRunner:
    """Runs each section's command in a new process group under ``min(cap, budget left - reserve)`` seconds, skips
    a section with less than its ``least`` left, and keeps the rows the sections wrote to ``rows_file``.

    ``seconds`` holds each section's wall time and how it ended (``done``, ``failed``, ``stopped``, ``skipped``).
    """

    def __init__(self, rows: Rows, budget: Budget, rows_file: Path, reserve: float = 5.0) -> None:
        self.rows, self.budget, self.rows_file, self.reserve = rows, budget, rows_file, reserve
        self.ended: list[tuple[str, str, float]] = []
        self._read = 0

    def _collect(self) -> None:
        """Take the rows the sections wrote since the last call into the table (not printed again)."""
        if not self.rows_file.is_file():
            return
        lines = self.rows_file.read_text().splitlines()
        for line in lines[self._read :]:
            try:
                label, value = json.loads(line)
            except ValueError:  # a line cut short by the kill
                continue
            self.rows.rows.append((str(label), str(value)))
        self._read = len(lines)

    def run(self, section: Section, cmd: list[str], env: dict | None = None,
            after: Callable[[int], None] | None = None) -> int | None:  # fmt: skip
        """Run ``cmd`` for ``section``: its exit code, ``None`` when skipped or stopped at its cap. ``after`` gets
        the exit code of a section that ended by itself (to read back what it wrote)."""
        left = self.budget.left() - self.reserve
        if left < section.least:
            self.ended.append((section.name, "skipped", 0.0))
            self.rows.add(f"section {section.name}",
                          f"skipped (time budget: {max(left, 0):.0f} s left, needs {section.least:.0f})")  # fmt: skip
            return None
        timeout = min(section.cap, left)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            kill_group(proc.pid)  # also what it left behind when it ended by itself
            proc.wait()
        seconds = time.perf_counter() - start
        self._collect()
        if code is None:
            self.ended.append((section.name, "stopped", seconds))
            text = f"stopped after {seconds:.0f} s (cap {section.cap:.0f} s, budget left {left:.0f} s)"
            self.rows.add(f"section {section.name}", text + "; the rows above are what it finished")
            return None
        self.ended.append((section.name, "done" if code == 0 else "failed", seconds))
        if code != 0:
            self.rows.add(f"section {section.name}", f"FAILED (exit {code} after {seconds:.0f} s; see the log)")
        if after is not None:
            after(code)
        return code

    def summary(self) -> str:
        return ", ".join(f"{name} {s:.0f}" + ("" if how == "done" else f" ({how})") for name, how, s in self.ended)

    @property
    def failed(self) -> bool:
        return any(how == "failed" for _, how, _ in self.ended)


@dataclass
class Context:
    """What a section's process needs: the device, sizes and folders (shared by every section of one run)."""

    device: torch.device
    arch: str
    input_: tuple
    root: Path
    batches: list[int]
    iters: int
    workers: int
    val_batch: int
    floor_n: int
    state: Path
    smoke: bool
    modes: list[str]
    compile_backend: str | None

    @property
    def cache_dir(self) -> Path:
        return self.state / "cache"

    @property
    def precision(self) -> str:
        return "bf16-mixed" if self.device.type == "cuda" else "32-true"

    def capture(self):
        """The ``cuda_graph`` capture: a CUDA graph on a GPU, its CPU stand-in elsewhere (``None``: the default)."""
        return None if self.device.type == "cuda" else RerunCapture(warmup=2)

    def mode_label(self, mode: str) -> str:
        if mode == "cuda_graph" and self.device.type != "cuda":
            return "cuda_graph (CPU stand-in: RerunCapture)"
        if mode == "compile" and self.compile_backend:
            return f"compile (backend {self.compile_backend})"
        return mode


# ----------------------------------------------------------------------------------------------- data modules
def datamodule(root: Path, batch: int, workers: int, cache_dir: Path, device: torch.device, decode_on: str,
               codec_name: str = "msra", val_batch: int = 64, input_=INPUT, prefetch: int | None = None):  # fmt: skip
    from wbpose.engine.datamodule import WholeBodyDataModule

    image_hw, heatmap_hw, sigma = input_
    codec = make_codec(codec_name, image_hw, sigma=sigma, heatmap_hw=heatmap_hw)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    dm = WholeBodyDataModule(root, image_hw=image_hw, codec=codec, batch_size=batch, val_batch_size=val_batch,
                             num_workers=workers, pin_memory=device.type == "cuda", cache_dir=cache_dir,
                             drop_last=True, decode_on=decode_on, image_dtype=dtype,
                             prefetch_factor=prefetch)  # fmt: skip
    dm.prepare_data()
    return dm


def forever(loader):
    while True:
        yield from loader


def to_step_inputs(dm, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, heatmaps, weights) on the device: through the data module's transfer (crops made there with
    ``decode_on=gpu``), as Lightning moves a batch."""
    batch = dm.transfer_batch_to_device(dm.on_before_batch_transfer(batch, 0), device, 0)
    return batch["image"], batch["heatmaps"], batch["weights"]


def loader_rate(dm, device: torch.device, timed: int, transfer: bool) -> float:
    """Images/s of the training loader alone after start-up (every worker delivered and its prefetch drained), with
    the batches made into device crops (``transfer``) or left as the workers send them."""
    loader = dm.train_dataloader()
    it = forever(loader)
    workers = max(1, loader.num_workers)
    batch = loader.batch_sampler.batch_size
    for k in range(3 * workers + timed):
        if k == 3 * workers:
            sync(device)
            start = time.perf_counter()
        b = next(it)
        if transfer:
            to_step_inputs(dm, b, device)
    sync(device)
    rate = timed * batch / (time.perf_counter() - start)
    it.close()
    return rate


def step_rate(step: Callable, batches, warmup: int, iters: int, device: torch.device) -> Timing:
    """Images/s of ``step`` on the next ``(images, heatmaps, weights)`` of ``batches`` per call."""
    sizes = []

    def one() -> None:
        images, heatmaps, weights = next(batches)
        step(images, heatmaps, weights)
        sizes.append(images.shape[0])

    return measure(one, warmup=warmup, repeats=iters, sync=lambda: sync(device)).rate(sizes[-1] if sizes else 1)


def loader_batches(dm, device: torch.device):
    for batch in forever(dm.train_dataloader()):
        yield to_step_inputs(dm, batch, device)


def free(device: torch.device) -> None:
    """Drop what the last step held: compiled graphs, CUDA graph pools, cached blocks."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- checks
def decode_checks(device: torch.device, image_hw, heatmap_hw, sigma) -> tuple[float, float]:
    """(max |device - CPU| px, max |bf16 - fp32| px) of DARK decoding on target-like heatmaps."""
    codec = make_codec("dark", image_hw, sigma=sigma, heatmap_hw=heatmap_hw)
    g = torch.Generator().manual_seed(0)
    b, k = 32, 133
    h, w = heatmap_hw
    mu = torch.rand(b, k, 2, generator=g) * torch.tensor([w - 8.0, h - 8.0]) + 4
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    maps = torch.exp(-((xs - mu[..., 0, None, None]) ** 2 + (ys - mu[..., 1, None, None]) ** 2) / (2 * sigma**2))
    maps = maps + 0.01 * torch.rand(maps.shape, generator=g)
    cpu, _ = codec.decode(maps)
    dev, _ = codec.decode(maps.to(device))
    half, _ = codec.decode(maps.to(device).to(torch.bfloat16).float())
    return float((dev.cpu() - cpu).abs().max()), float((half.cpu() - dev.cpu()).abs().max())


def fixture_samples(dm, count: int) -> tuple[list[str], list[np.ndarray]]:
    """(image paths, crop matrices image -> crop) of the first ``count`` training samples, as the CPU path warps
    them (augmentation included)."""
    ds = dm.train_dataset
    paths, matrices = [], []
    for i in range(min(count, len(ds))):
        sample = ds.prepare(ds.load_sample(i, read_image=False), index=i)
        paths.append(ds.image_path(i))
        matrices.append(sample.warp)
    return paths, matrices


def crop_parity(paths: list[str], matrices: list[np.ndarray], out_wh, device: torch.device) -> str:
    """The device warp (``warp_crops`` on ``device``) against ``cv2.warpAffine`` on the same decoded images."""
    from wbpose.data.gpu_pixels import pad_images, warp_crops

    images = [cv2.imread(p, cv2.IMREAD_COLOR) for p in paths]
    padded = pad_images([torch.from_numpy(x).permute(2, 0, 1) for x in images])
    inverse = torch.from_numpy(np.stack([cv2.invertAffineTransform(m) for m in matrices]))
    crops = warp_crops(padded.to(device), torch.arange(len(images), device=device), inverse.to(device), out_wh)
    got = crops.permute(0, 2, 3, 1).cpu().numpy()
    expected = np.stack([cv2.warpAffine(x, m, out_wh, flags=cv2.INTER_LINEAR) for x, m in zip(images, matrices)])
    diff = np.abs(got - expected)
    within = float((diff <= 1).mean())
    ok = "ok" if within >= 0.999 else "FAIL"
    return f"{100 * within:.3f} % within 1 grey level, max {diff.max():.0f} ({len(images)} crops, {ok})"


def nvjpeg_parity(paths: list[str], device: torch.device) -> str:
    """nvJPEG (torchvision on CUDA) against OpenCV's decode of the same files."""
    if device.type != "cuda":
        return "skipped (no CUDA device)"
    try:
        import torchvision.io as tv_io
    except ImportError as error:
        return f"skipped (no torchvision: {error})"
    files = sorted(set(paths))[:16]
    datas = [torch.from_numpy(np.fromfile(p, np.uint8)) for p in files]
    gpu = tv_io.decode_jpeg(datas, mode=tv_io.ImageReadMode.RGB, device=device)
    diffs = []
    for p, g in zip(files, gpu):
        ref = cv2.imread(p, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)[:, :, ::-1]
        diffs.append(np.abs(g.permute(1, 2, 0).cpu().numpy().astype(np.int16) - ref.astype(np.int16)))
    d = np.concatenate([x.ravel() for x in diffs])
    return (f"mean {d.mean():.2f}, max {d.max()}, {100 * (d <= 1).mean():.1f} % within 1 grey level "
            f"({len(files)} files)")  # fmt: skip


def floor_rate(paths: list[str], matrices: list[np.ndarray], out_wh, rounds: int = 3) -> Timing:
    """Samples/s of one core: ``cv2.imread`` + one ``cv2.warpAffine`` per sample, OpenCV and torch on one thread."""
    threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        samples = []
        for r in range(rounds + 1):
            start = time.perf_counter()
            for p, m in zip(paths, matrices):
                cv2.warpAffine(cv2.imread(p, cv2.IMREAD_COLOR), m, out_wh, flags=cv2.INTER_LINEAR)
            if r:
                samples.append((time.perf_counter() - start) / len(paths))
    finally:
        cv2.setNumThreads(threads[0])
        torch.set_num_threads(threads[1])
    return Timing.of(samples, 1).rate(1)


# ----------------------------------------------------------------------------------------------- section bodies
def section_checks(ctx: Context, rows: Rows) -> None:
    device, (image_hw, heatmap_hw, sigma) = ctx.device, ctx.input_
    out_wh = (image_hw[1], image_hw[0])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows.add("device", f"{name}, torch {torch.__version__}, OpenCV {cv2.__version__}, {os.cpu_count()} CPU cores")
    cuda_px, bf16_px = decode_checks(device, image_hw, heatmap_hw, sigma)
    rows.add("decode DARK: max |device - CPU| px", f"{cuda_px:.2e} ({'ok' if cuda_px <= 1e-3 else 'FAIL'})")
    rows.add("decode DARK: max |bf16 - fp32| px", f"{bf16_px:.3f} ({'ok' if bf16_px <= 0.05 else 'FAIL'})")
    start = time.perf_counter()
    dm = datamodule(ctx.root, ctx.batches[-1], 0, ctx.cache_dir, device, "cpu", input_=ctx.input_)
    dm.setup("fit")
    rows.add("fixture: annotation cache + train set", f"{time.perf_counter() - start:.1f} s, "
             f"{len(dm.train_dataset)} training people")  # fmt: skip
    paths, matrices = fixture_samples(dm, 32)
    rows.add("device crops vs cv2.warpAffine (fixture)", crop_parity(paths, matrices, out_wh, device))
    try:
        rows.add("nvJPEG vs OpenCV decode (fixture files)", nvjpeg_parity(paths, device))
    except Exception as error:
        rows.fail("nvJPEG vs OpenCV decode (fixture files)", error)


def step_label(ctx: Context, batch: int) -> str:
    (h, w), precision = ctx.input_[0], "bf16" if ctx.device.type == "cuda" else "fp32"
    return f"{ctx.arch} {h}x{w} b{batch} {precision} channels_last"


def section_steps(ctx: Context, rows: Rows) -> None:
    """The step modes on in-memory batches (``train_throughput.step_mode_rows``); their images/s go to
    ``step_rates.json`` for the ``train`` section."""
    cuda = ctx.device.type == "cuda"
    options = {"backend": ctx.compile_backend} if ctx.compile_backend else None
    rates: dict[str, dict[str, float]] = {}
    for batch in ctx.batches:
        got: dict[str, float] = {}
        table = step_mode_rows(ctx.arch, batch, ctx.precision, True, ctx.modes, ctx.device, ctx.iters,
                               fused_adam=cuda, compile_options=options, settings=ctx.input_, capture=ctx.capture,
                               rates=got)  # fmt: skip
        for row in table:
            label = f"step {step_label(ctx, batch)} memory step_mode={ctx.mode_label(row[5])}"
            if row[6] == "out of memory":
                rows.add(label, f"out of memory ({row[9]})")
            elif row[6] == "failed":
                rows.failures += 1
                rows.add(label, f"FAILED ({row[9]}; traceback in the log)")
            else:
                rows.add(label, f"{row[6]} img/s, {row[7]} x eager, first step {row[8]} s; vs eager: {row[9]}")
        rates[str(batch)] = got
        (ctx.state / "step_rates.json").write_text(json.dumps(rates))


def modes_by_speed(ctx: Context, batch: int) -> tuple[list[str], bool]:
    """The step modes, fastest first by the ``steps`` section's in-memory images/s at ``batch`` (modes it did not
    time last, fast modes first); whether any was timed."""
    path = ctx.state / "step_rates.json"
    rates = json.loads(path.read_text()).get(str(batch), {}) if path.is_file() else {}
    default = [m for m in ("cuda_graph", "compile", "eager") if m in ctx.modes]
    ordered = sorted(ctx.modes, key=lambda m: (0, -rates[m]) if m in rates else (1, default.index(m)))
    return ordered, bool(rates)


def make_step(ctx: Context, mode: str) -> OptimizerStep:
    """The training step of the one-GPU recipe: channels_last, bf16 autocast on CUDA, fused Adam on CUDA."""
    from wbpose.engine.fast_step import autocast_dtype

    cuda = ctx.device.type == "cuda"
    model = build_pose_model(ctx.arch).to(device=ctx.device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True if cuda else None)
    options = {"backend": ctx.compile_backend} if mode == "compile" and ctx.compile_backend else None
    step = TrainStep(model, KeypointMSELoss(), mode, autocast=autocast_dtype(ctx.precision), channels_last=True,
                     compile_options=options, capture=ctx.capture() if mode == "cuda_graph" else None)  # fmt: skip
    return OptimizerStep(step, optimizer)


def section_train(ctx: Context, rows: Rows) -> None:
    """End to end with the real loader: the fastest mode with the GPU crops at each batch, then with the CPU
    crops, then the other modes with the GPU crops."""
    plan: list[tuple[int, str, str, bool]] = []
    others = []
    for batch in ctx.batches:
        modes, timed = modes_by_speed(ctx, batch)
        plan.append((batch, modes[0], "gpu", timed))
        others += [(batch, mode, "gpu", False) for mode in modes[1:]]
    plan += [(batch, mode, "cpu", fastest) for batch, mode, _, fastest in list(plan)]
    for batch, mode, decode_on, fastest in plan + others:
        label = (f"train {step_label(ctx, batch)} step_mode={ctx.mode_label(mode)} loader decode_on={decode_on} "
                 f"({ctx.workers} workers)")  # fmt: skip
        step = batches = None
        try:
            step = make_step(ctx, mode)
            dm = datamodule(ctx.root, batch, ctx.workers, ctx.cache_dir, ctx.device, decode_on, input_=ctx.input_,
                            prefetch=1 if batch > 64 else None)  # fmt: skip
            dm.setup("fit")
            batches = loader_batches(dm, ctx.device)
            timing = step_rate(step, batches, 2 * max(1, ctx.workers) + 1, ctx.iters, ctx.device)
            rows.add(label, rate_text(timing) + (" (the fastest step mode in memory)" if fastest else ""))
        except torch.OutOfMemoryError as error:
            rows.add(label, f"out of memory ({str(error).splitlines()[0][:80]})")
        except Exception as error:  # a mode that breaks with the loader: the other rows still run
            rows.fail(label, error)
        finally:
            if batches is not None:
                batches.close()
            step = batches = None
            free(ctx.device)


def section_val(ctx: Context, rows: Rows) -> None:
    t = val_protocol(ctx.root, ctx.arch, ctx.input_, ctx.val_batch, ctx.workers, ctx.cache_dir, ctx.device, "gpu")
    split = ", ".join(f"{k} {v:.1f}" for k, v in t["split"].items() if k != "loading")
    rows.add(f"val protocol {ctx.arch} flip DARK decode_on=gpu b{ctx.val_batch}, {t['boxes']} boxes: wall s",
             f"{t['wall']:.1f} (+ loading {t['loading']:.1f}; {split})")  # fmt: skip


def section_loader(ctx: Context, rows: Rows) -> None:
    image_hw = ctx.input_[0]
    out_wh = (image_hw[1], image_hw[0])
    dm = datamodule(ctx.root, 64, 0, ctx.cache_dir, ctx.device, "cpu", input_=ctx.input_)
    dm.setup("fit")
    paths, matrices = fixture_samples(dm, ctx.floor_n)
    del dm
    floor = floor_rate(paths, matrices, out_wh, rounds=1 if ctx.smoke else 3)
    rows.add("floor: imread + warpAffine, 1 core", f"{floor.median:.0f} samples/s ({floor.min:.0f}-{floor.max:.0f})")
    loader_rows(rows, ctx, 4 if ctx.smoke else 64, floor)


SECTION_BODIES = {"checks": section_checks, "steps": section_steps, "train": section_train, "val": section_val,
                  "loader": section_loader}  # fmt: skip


def loader_rows(rows: Rows, ctx: Context, batch: int, floor: Timing) -> None:
    for decode_on, worker_counts in (("cpu", sorted({ctx.workers, 1}, reverse=True)), ("gpu", [ctx.workers])):
        for w in worker_counts:
            label = f"loader decode_on={decode_on} b{batch} {w} workers"
            try:
                dm = datamodule(ctx.root, batch, w, ctx.cache_dir, ctx.device, decode_on, input_=ctx.input_)
                dm.setup("fit")
                timed = max(10, 2 * w)
                alone = loader_rate(dm, ctx.device, timed, transfer=False)
                per_worker = alone / max(1, w)
                text = (f"{alone:.0f} img/s, {per_worker:.0f} per worker = {per_worker / floor.median:.2f}x the "
                        f"floor ({timed} batches after {3 * max(1, w)})")  # fmt: skip
                if decode_on == "gpu":
                    crops = loader_rate(dm, ctx.device, timed, transfer=True)
                    text += f"; with the device crops {crops:.0f} img/s"
                rows.add(label, text)
            except Exception as error:
                rows.fail(label, error)


def val_protocol(root: Path, arch: str, input_, batch: int, workers: int, cache_dir: Path, device: torch.device,
                 decode_on: str) -> dict:  # fmt: skip
    import pytorch_lightning as pl

    from wbpose.engine.module import TopdownPoseModule
    from wbpose.engine.timing import StageTimer
    from wbpose.metrics import CocoWholeBodyMetric

    image_hw, heatmap_hw, sigma = input_
    dm = datamodule(root, batch, workers, cache_dir, device, decode_on, codec_name="dark", val_batch=batch,
                    input_=input_)  # fmt: skip
    dm.prepare_train = False
    codec = dm.codec
    metric = CocoWholeBodyMetric(dm.val_ann_file, prefix="val", cache_dir=cache_dir)
    module = TopdownPoseModule(build_pose_model(arch), codec, KeypointMSELoss(), val_metric=metric, flip_test=True,
                               num_vis_images=0, input_hw=image_hw, channels_last=True)  # fmt: skip
    timer = StageTimer()
    pixels = {"s": 0.0}
    transfer = dm.transfer_batch_to_device

    def timed_transfer(batch, dev, idx):
        start = time.perf_counter()
        out = transfer(batch, dev, idx)
        sync(device)
        pixels["s"] += time.perf_counter() - start
        return out

    dm.transfer_batch_to_device = timed_transfer
    trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                         precision="bf16-mixed" if device.type == "cuda" else "32-true")  # fmt: skip
    start = time.perf_counter()
    dm.prepare_data()
    dm.setup("validate")
    loading = time.perf_counter() - start
    start = time.perf_counter()
    trainer.validate(module, datamodule=dm, verbose=False)
    wall = time.perf_counter() - start
    split = dict(timer.seconds)
    split["crops on device"] = pixels["s"]
    split["loader wait"] = max(0.0, split.pop("crops") - pixels["s"])
    return {"wall": wall, "loading": loading, "boxes": len(dm.val_dataset), "split": split}


# ----------------------------------------------------------------------------------------------- the run's process
def mmpose_section(runner: SectionRunner, section: Section, site: Path, ctx: Context) -> None:
    """``benchmarks/mmpose_step.py`` with MMPose's folder first on its path; its rows read back from its json."""
    out = ctx.state / "mmpose.json"
    cmd = [sys.executable, str(HERE / "mmpose_step.py"), "--json", str(out)]
    cmd += ["--smoke"] if ctx.smoke else ["--root", str(ctx.root), "--cache-dir", str(ctx.cache_dir), "--device",
                                          ctx.device.type, "--workers", str(ctx.workers), "--warmup", "2", "--steps",
                                          "6"]  # fmt: skip
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join([str(site), src, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])

    def read(code: int) -> None:
        if code == 0 and out.is_file():
            for label, value, detail in json.loads(out.read_text())["rows"]:
                runner.rows.add(f"mmpose {label}", f"{value} {detail}")

    runner.run(section, cmd, env, read)


def tests_section(runner: SectionRunner, section: Section, ctx: Context, with_compile: bool) -> None:
    """``pytest -m gpu`` over :data:`GPU_TEST_FILES`; one row with the counts of its junit xml."""
    report = ctx.state / "pytest_gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", *GPU_TEST_FILES, "-q", "-p", "no:cacheprovider",
           f"--junitxml={report}", "--rootdir", str(HERE.parent)]  # fmt: skip
    if not with_compile:
        cmd += ["-k", "not compile"]

    def read(code: int) -> None:
        label = f"tests: pytest -m gpu ({len(GPU_TEST_FILES)} files{'' if with_compile else ', not compile'})"
        if not report.is_file():
            runner.rows.add(label, f"no report (pytest exit {code})")
            return
        runner.rows.add(label, junit_summary(report))

    runner.run(section, cmd, dict(os.environ), read)


def junit_summary(path: Path) -> str:
    """``N passed, N failed, N errors, N skipped in S s`` from pytest's junit xml, and the failures by name."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    seconds = sum(float(s.get("time", 0)) for s in suites)
    passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
    text = (f"{passed} passed, {count['failures']} failed, {count['errors']} errors, {count['skipped']} skipped "
            f"in {seconds:.1f} s")  # fmt: skip
    bad = [f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}" for case in root.iter("testcase")
           if case.find("failure") is not None or case.find("error") is not None]  # fmt: skip
    return text + (f"; failed: {', '.join(bad[:6])}" if bad else "")


def video_section(runner: SectionRunner, section: Section, out: Path | None, state: Path) -> None:
    """``benchmarks/video.py`` (CPU: tiny and W32, 2 network threads); its rows read back from its json (``out``,
    else a file of this run)."""
    out = out or state / "video.json"
    cmd = [sys.executable, str(HERE / "video.py"), "--archs", "tiny", "w32", "--frames", "40", "8", "--reps", "3",
           "--threads", "2", "--json", str(out)]  # fmt: skip

    def read(code: int) -> None:
        if code == 0 and out.is_file():
            data = json.loads(out.read_text())
            for row in data["rows"]:
                runner.rows.add(f"video (CPU) {row[0]}",
                                ", ".join(f"{c}: {v}" for c, v in zip(data["columns"][1:], row[1:])))  # fmt: skip

    runner.run(section, cmd, dict(os.environ), read)


def smoke_root(tmp: Path) -> Path:
    from wbpose.synthetic.full_size import generate_full_size

    generate_full_size(tmp / "root", scale=0.0004, seed=0)
    return tmp / "root"


def context(args: argparse.Namespace, state: Path, root: Path) -> Context:
    modes = ["eager", "cuda_graph"] + (["compile"] if args.compile else [])
    if args.smoke:
        return Context(torch.device("cpu"), "tiny", SMOKE_INPUT, root, [4], 2, 1, 8, 16, state, True, modes,
                       args.compile_backend)  # fmt: skip
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Context(device, "w32", INPUT, root, args.batches, args.iters, args.workers, args.val_batch, 256, state,
                   False, modes, args.compile_backend)  # fmt: skip


def sections(smoke: bool, with_compile: bool) -> dict[str, Section]:
    """The sections of this run: :data:`SECTIONS`, the steps' cap raised with ``--compile``; generous caps and no
    minimum for ``--smoke`` (a shared CPU machine: the tests' own timeout bounds it)."""
    out = {}
    for s in SECTIONS:
        if smoke:
            s = Section(s.name, cap=900, least=0)
        elif s.name == "steps" and with_compile:
            s = Section(s.name, cap=COMPILE_STEPS_CAP, least=s.least)
        out[s.name] = s
    return out


def run_all(args: argparse.Namespace) -> int:
    budget = Budget(args.budget if args.budget is not None else (math.inf if args.smoke else 420.0))
    rows = Rows()
    with tempfile.TemporaryDirectory(prefix="wbpose_gpu_") as tmp:
        state = Path(tmp)
        root = smoke_root(state) if args.smoke else args.root
        # the run's process creates no CUDA context: the sections' processes own the GPU, one at a time
        ctx = context(args, state, root)
        runner = SectionRunner(rows, budget, state / "rows.jsonl")
        steps = sections(args.smoke, args.compile)
        common = [sys.executable, str(Path(__file__).resolve()), "--root", str(root), "--state", str(state),
                  "--workers", str(args.workers), "--iters", str(args.iters), "--val-batch", str(args.val_batch),
                  "--batches", *map(str, args.batches)]  # fmt: skip
        common += ["--smoke"] * args.smoke + ["--compile"] * args.compile
        common += ["--compile-backend", args.compile_backend] if args.compile_backend else []
        for name in ("checks", "steps", "train", "val"):
            runner.run(steps[name], [*common, "--section", name])
        if args.mmpose_site is None:
            rows.add("mmpose", "skipped (no --mmpose-site: bash benchmarks/fetch_mmpose_wheels.sh, then gpu.sh)")
        else:
            mmpose_section(runner, steps["mmpose"], args.mmpose_site, ctx)
        runner.run(steps["loader"], [*common, "--section", "loader"])
        tests_section(runner, steps["tests"], ctx, args.compile)
        if args.video and not args.smoke:
            video_section(runner, steps["video"], args.video_json, state)
    rows.add("sections s", runner.summary())
    rows.add("benchmark wall s", f"{budget.spent():.0f}")
    print("| check | result |\n|---|---|")
    for label, value in rows.rows:
        print(f"| {label} | {value} |")
    notes = [
        f"train and step rows: images/s of one optimiser step, median of {args.iters} steps after warm-up (step "
        "modes: 2 steps; with the loader: 2 x workers + 1 steps), min-max; loader rows: images over wall time after "
        "3 x workers batches; each section in its own process under its time cap (docs/benchmarks.md#gpu)."
    ]
    write_json(args.json, "gpu", ["check", "result"], [list(r) for r in rows.rows], notes)
    return 1 if runner.failed else 0


def run_section(args: argparse.Namespace) -> int:
    """One section, in its own process: its rows printed and appended to the run's rows file."""
    ctx = context(args, args.state, args.root)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = Rows(args.state / "rows.jsonl")
    SECTION_BODIES[args.section](ctx, rows)
    return 1 if rows.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/wbpose_full"))
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default 420; none with --smoke): sections that cannot "
                        "start with their minimum left are skipped, each one is stopped at its cap")  # fmt: skip
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 64])
    parser.add_argument("--val-batch", type=int, default=256)
    parser.add_argument("--mmpose-site", type=Path, help="folder holding MMPose and its packages (gpu.sh installs it)")
    parser.add_argument("--video", action="store_true", help="also run benchmarks/video.py (CPU rows) at the end")
    parser.add_argument("--video-json", type=Path, help="where benchmarks/video.py writes its own json")
    parser.add_argument("--compile", action="store_true",
                        help="also time step_mode=compile (inductor: minutes of compilation; the steps' cap "
                        f"becomes {COMPILE_STEPS_CAP} s) and run the GPU tests of compile")  # fmt: skip
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend for --compile (default "
                        "inductor; eager: dynamo's capture alone, the smoke's)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny CPU version of every section (the tests)")
    parser.add_argument("--section", choices=sorted(SECTION_BODIES), help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.section:
        return run_section(args)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput (images/s): model only, loader only, and end to end (loader with workers + train step);
with ``--step-modes``, the training step in each mode of ``module.step_mode`` instead.

Timing (``benchmarks/timing.py``): images/s from the median step after the warm-up steps, with the range.
Each run also reports the machine's floor measured in the same run (fp32 matmul GFLOP/s on the same device),
so numbers from a shared or different machine can be compared. "bottleneck" names the slower of the loader and
the model: end to end can be no faster than either.

``--step-modes eager compile cuda_graph`` times one whole optimiser step (``wbpose.engine.fast_step``: forward,
loss, backward, Adam) on in-memory batches (three random batches in turn), each mode after the eager one, from the
same initial weights: "first step s" is the first step's wall time (cuDNN's autotuning, torch.compile's compilation,
the CUDA graph's capture), "x eager" the speed-up over the eager row of the same batch and precision, and the last
column how far the mode's first step lands from the eager one on the same batch (relative loss, gradient norm,
weight change and BatchNorm statistics, ``StepDifference``); the eager row gives a second eager run's difference,
the run-to-run floor of the device's own nondeterminism.

Examples::

    python benchmarks/train_throughput.py                                   # CPU: tiny 128x96, W32 256x192
    python benchmarks/train_throughput.py --device cuda --archs w32 --batch 64 --iters 30 \\
        --precisions 32-true bf16-mixed --channels-last --workers 2 8 [--json PATH]
    python benchmarks/train_throughput.py --device cuda --archs w32 --batch 64 512 --precisions bf16-mixed \\
        --step-modes eager compile cuda_graph --fused-adam [--json PATH]      # the fast steps on a GPU
    python benchmarks/train_throughput.py --device cpu --archs tiny --batch 8 --step-modes eager compile
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from wbpose.codecs import make_codec
from wbpose.engine.datamodule import WholeBodyDataModule
from wbpose.engine.fast_step import (
    STEP_MODES,
    Capture,
    OptimizerStep,
    TrainStep,
    autocast_dtype,
    compare_records,
    record_steps,
)
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/model.py and timing.py sit beside this script
from model import _sync, matmul_gflops  # noqa: E402
from timing import Timing, add_json_argument, measure, write_json  # noqa: E402

#: arch -> (image_hw, heatmap_hw, sigma) benchmarked for it
SETTINGS = {"tiny": ((128, 96), (32, 24), 1.5), "w32": ((256, 192), (64, 48), 2.0), "w48": ((256, 192), (64, 48), 2.0)}


class Step:
    """One optimiser step of the pose model on a batch, with optional autocast and channels_last."""

    def __init__(self, arch: str, device: torch.device, precision: str, channels_last: bool) -> None:
        self.device, self.channels_last = device, channels_last
        self.model = build_pose_model(arch).to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=5e-4)
        self.loss = KeypointMSELoss()
        self.autocast = precision.startswith("bf16")

    def __call__(self, images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> None:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        heatmaps, weights = heatmaps.to(self.device, non_blocking=True), weights.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            pred = self.model(images)
        loss = self.loss(pred.float(), heatmaps, weights)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def model_only(step: Step, arch: str, batch: int, iters: int) -> Timing:
    (h, w), (hh, hw), _ = SETTINGS[arch]
    x, t, wt = torch.randn(batch, 3, h, w), torch.rand(batch, 133, hh, hw), torch.ones(batch, 133)
    # two warm-up steps: the allocator, cudnn autotune
    timing = measure(lambda: step(x, t, wt), warmup=2, repeats=iters, sync=lambda: _sync(step.device))
    return timing.rate(batch)


def loaders(root: Path, arch: str, batch: int, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    image_hw, heatmap_hw, sigma = SETTINGS[arch]
    codec = make_codec("msra", image_hw, sigma=sigma, heatmap_hw=heatmap_hw)
    dm = WholeBodyDataModule(
        str(root), image_hw=image_hw, codec=codec, batch_size=batch, num_workers=workers, pin_memory=pin
    )
    dm.setup("fit")
    return dm.train_dataloader()


def forever(loader):
    """Re-iterate the loader (``itertools.cycle`` would replay cached batches instead of loading)."""
    while True:
        yield from loader


def loader_only(loader, iters: int, batch: int) -> Timing:
    it = forever(loader)
    # one warm-up batch: it starts the workers
    return measure(lambda: next(it), warmup=1, repeats=iters).rate(batch)


def end_to_end(step: Step, loader, iters: int, batch: int) -> Timing:
    it = forever(loader)

    def one() -> None:
        b = next(it)
        step(b["image"], b["heatmaps"], b["weights"])

    return measure(one, warmup=1, repeats=iters, sync=lambda: _sync(step.device)).rate(batch)


def random_batches(n: int, batch: int, arch: str, device: torch.device, seed: int = 0, settings=None):
    """``n`` in-memory batches (images, target heatmaps, 0/1 weights) of random values, none of them zeros, at the
    arch's :data:`SETTINGS` (or ``settings``: (image_hw, heatmap_hw, sigma))."""
    (h, w), (hh, hw), _ = settings or SETTINGS[arch]
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        images = torch.randn(batch, 3, h, w, generator=g)
        heatmaps = torch.rand(batch, 133, hh, hw, generator=g)
        weights = (torch.rand(batch, 133, generator=g) > 0.2).float()
        out.append((images.to(device), heatmaps.to(device), weights.to(device)))
    return out


def _next_step(step: OptimizerStep, batches) -> None:
    step(*next(batches))


def _free(device: torch.device) -> None:
    """Drop what the last mode held: compiled graphs, CUDA graph pools, cached blocks."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def step_mode_rows(
    arch: str,
    batch: int,
    precision: str,
    channels_last: bool,
    modes: list[str],
    device: torch.device,
    iters: int,
    fused_adam: bool = False,
    compile_options: dict | None = None,
    settings: tuple | None = None,
    capture: Callable[[], Capture] | None = None,
    rates: dict[str, float] | None = None,
) -> list[list[str]]:
    """Rows of the step-mode table for one (arch, batch, precision, layout): eager first, then each fast mode.

    Every mode starts from the same initial weights; its first step on the first batch is compared with the eager
    one (:func:`wbpose.engine.fast_step.compare_records`), then ``iters`` steps are timed after two warm-up steps.

    ``settings`` (image_hw, heatmap_hw, sigma) replaces the arch's :data:`SETTINGS`; ``capture`` makes the
    ``cuda_graph`` mode's capture (``None``: a CUDA graph; ``RerunCapture`` runs the same logic on the CPU);
    ``rates``, when given, receives each timed mode's median images/s (``benchmarks/gpu.py`` picks the fastest).
    """
    torch.manual_seed(0)
    initial = build_pose_model(arch).state_dict()
    data = random_batches(3, batch, arch, device, settings=settings)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    (h, w), _, _ = settings or SETTINGS[arch]

    def build(mode: str) -> OptimizerStep:
        model = build_pose_model(arch)
        model.load_state_dict(initial)
        model = model.to(device=device, memory_format=fmt)
        opt = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True if fused_adam else None)
        options = compile_options if mode == "compile" else None
        graph = capture() if mode == "cuda_graph" and capture is not None else None
        step = TrainStep(model, KeypointMSELoss(), mode, autocast=autocast_dtype(precision),
                         channels_last=channels_last, compile_options=options, capture=graph)  # fmt: skip
        return OptimizerStep(step, opt)

    sync = lambda: _sync(device)  # noqa: E731
    rows, reference, eager_rate = [], None, None
    for mode in ["eager", *(m for m in modes if m != "eager")]:
        head = [arch, f"{h}x{w}", str(batch), precision, str(channels_last), mode]
        try:
            step = build(mode)
            start = time.perf_counter()
            record = record_steps(step, data[:1])
            sync()
            first = time.perf_counter() - start
            if reference is None:
                reference = record
                again = compare_records(record_steps(build("eager"), data[:1]), reference)
                difference = f"eager again: {again.text()}"
            else:
                difference = compare_records(record, reference).text()
            timing = measure(partial(_next_step, step, itertools.cycle(data)), warmup=2, repeats=iters, sync=sync)
            timing = timing.rate(batch)
            eager_rate = eager_rate or timing.median
            if rates is not None:
                rates[mode] = timing.median
            rate = timing.text(0 if device.type == "cuda" else 1)
            ratio = f"{timing.median / eager_rate:.2f}" if eager_rate else "-"
            rows.append([*head, rate, ratio, f"{first:.1f}", difference])
        except Exception as e:  # a batch too large for this GPU, or a mode that breaks: say so, go on
            oom = isinstance(e, torch.OutOfMemoryError)
            if not oom:
                traceback.print_exc()
            detail = str(e).strip().splitlines()[0][:100] if str(e).strip() else ""
            rows.append([*head, "out of memory" if oom else "failed", "-", "-", f"{type(e).__name__}: {detail}"])
            if reference is None:  # without the eager reference the other modes have nothing to compare with
                print("| " + " | ".join(rows[-1]) + " |", flush=True)
                _free(device)
                return rows
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
        step = None
        _free(device)
    return rows


def step_modes_main(args: argparse.Namespace, device: torch.device, floor: float) -> list[list[str]]:
    """The ``--step-modes`` table (its rows returned too)."""
    if "cuda_graph" in args.step_modes and device.type != "cuda":
        raise SystemExit(f"--step-modes cuda_graph needs --device cuda (CUDA graphs), not {device}")
    columns = ["arch", "input", "batch", "precision", "channels_last", "step mode", "img/s", "x eager",
               "first step s", "difference vs eager, first step (relative)"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    options = {k: v for k, v in (("mode", args.compile_mode), ("backend", args.compile_backend)) if v}
    rows: list[list[str]] = []
    counts = []
    for arch in args.archs:
        iters = args.iters or (10 if arch == "tiny" else (30 if device.type == "cuda" else 3))
        counts.append(f"{iters} ({arch})")
        for batch in args.batch or [8 if arch == "tiny" else (64 if device.type == "cuda" else 2)]:
            for precision, cl in itertools.product(args.precisions, [False, True] if args.channels_last else [False]):
                rows += step_mode_rows(arch, batch, precision, cl, args.step_modes, device, iters, args.fused_adam,
                                       options or None)  # fmt: skip
    notes = [
        f"device {device}, fp32 1024x1024 matmul floor {floor:.0f} GFLOP/s in the same run.",
        f"img/s: batch / wall seconds of one optimiser step on in-memory batches, median of {', '.join(counts)} after "
        "2 warm-up steps (min-max); Adam " + ("fused" if args.fused_adam else "torch's default (foreach)") + ".",
        "difference: loss |a-b|/|b|, gradients ||a-b||/||b||, weights max |a-b| (update: ||a-b|| over the size of "
        "the eager update), BatchNorm running statistics ||a-b||/||b||.",
    ]
    if options:
        notes.append(f"torch.compile options: {options}.")
    write_json(args.json, "train_step_modes", columns, rows, notes)
    return rows


def main(argv: list[str] | None = None) -> list[list[str]] | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--archs", nargs="+", default=["tiny", "w32"])
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="default: 32 tiny, 4 (CPU) / 64 (GPU) for w32/w48 (--step-modes: 8 tiny, 2 / 64)")  # fmt: skip
    p.add_argument("--iters", type=int, default=None, help="default: 10 tiny, 3 (CPU) / 30 (GPU) otherwise")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    p.add_argument("--precisions", nargs="+", default=["32-true"])
    p.add_argument("--channels-last", action="store_true", help="also run with channels_last")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--data-root", type=Path, default=None, help="a COCO-WholeBody root (default: synthetic)")
    p.add_argument("--step-modes", nargs="+", choices=STEP_MODES, default=None,
                   help="time the training step in these modes (eager first) instead of the loader grid")  # fmt: skip
    p.add_argument("--fused-adam", action="store_true", help="--step-modes: Adam(fused=True) in every mode")
    p.add_argument("--compile-mode", default=None, help="--step-modes: torch.compile mode (default: "
                   "reduce-overhead on CUDA, torch's default on CPU)")  # fmt: skip
    p.add_argument("--compile-backend", default=None, help="--step-modes: torch.compile backend (default inductor)")
    add_json_argument(p)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True
    if args.step_modes:
        floor = matmul_gflops(device, n=1024)
        print(f"device {device} ({torch.cuda.get_device_name() if gpu else f'{torch.get_num_threads()} threads'}), "
              f"fp32 matmul floor {floor:.0f} GFLOP/s, torch {torch.__version__}")  # fmt: skip
        return step_modes_main(args, device, floor)
    root = args.data_root
    if root is None:
        from wbpose.synthetic.generate import generate_dataset

        root = Path(tempfile.mkdtemp(prefix="wbpose_bench_"))
        generate_dataset(root, num_train=64 if not gpu else 256, num_val=2, seed=0)
    floor = matmul_gflops(device, n=1024)
    print(f"device {device} ({torch.cuda.get_device_name() if gpu else f'{torch.get_num_threads()} threads'}), "
          f"fp32 matmul floor {floor:.0f} GFLOP/s")  # fmt: skip
    columns = ["arch", "input", "batch", "precision", "channels_last", "workers", "model img/s", "loader img/s",
               "end-to-end img/s", "bottleneck"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    rows, statistic = [], ""
    for arch, batch in ((a, b) for a in args.archs for b in args.batch or [32 if a == "tiny" else (64 if gpu else 4)]):
        iters = args.iters or (10 if arch == "tiny" else (30 if gpu else 3))
        h, w = SETTINGS[arch][0]
        for precision, cl in itertools.product(args.precisions, [False, True] if args.channels_last else [False]):
            step = Step(arch, device, precision, cl)
            model_rate = model_only(step, arch, batch, iters)
            statistic = model_rate.statistic
            for workers in args.workers:
                loader = loaders(root, arch, batch, workers, pin=gpu)
                load_rate = loader_only(loader, iters, batch)
                e2e = end_to_end(step, loader, iters, batch)
                neck = "loader" if load_rate.median < model_rate.median else "model"
                rows.append([arch, f"{h}x{w}", str(batch), precision, str(cl), str(workers), model_rate.text(1),
                             load_rate.text(1), e2e.text(1), neck])  # fmt: skip
                print("| " + " | ".join(rows[-1]) + " |", flush=True)
                del loader
    notes = [
        f"device {device}, fp32 1024x1024 matmul floor {floor:.0f} GFLOP/s in the same run.",
        f"img/s: batch / wall seconds of one step (model: 2 warm-up steps; loader, end to end: 1), {statistic}.",
    ]
    write_json(args.json, "train_throughput", columns, rows, notes)


if __name__ == "__main__":
    main()

"""Throughput of the HRNet pose models (forward, and forward + backward + loss) on CPU or GPU.

HRNet paper: https://arxiv.org/abs/1902.09212. Reference point for this repo's 2-core CPU: MMPose's HRNet-W32 at
256x192, batch 8, runs about 15 img/s forward and 5 img/s forward+backward; ours is the same math, so it should
not be slower.

Each row also shows the achieved forward convolution GFLOP/s (MACs counted with ``torch.utils.flop_counter`` on the
meta device, x2) and its share of the machine's floor measured in the same run: an fp32 matmul's GFLOP/s.
Timing (``benchmarks/timing.py``): wall clock, median of ``--iters`` calls after one warm-up call, with the range;
images/s is the batch over the median (the range inverted).

CPU (default when no GPU): ``torch.set_num_threads(2)``, batch 8, tiny (128x96 and 256x192), W32 (256x192 and
384x288), W48 (256x192), each contiguous vs channels_last.
GPU: batch 64, fp32 vs bf16 autocast, contiguous vs channels_last.

Usage:
    python benchmarks/model.py [--device cpu|cuda] [--archs tiny w32 w48] [--iters 3] [--no-384] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

# Idle OpenMP workers sleep instead of spinning, as scripts/predict.py and codecs.py run them: on a shared 2-core
# machine spinning workers wait for a preempted peer at every op and the times scatter by 10x. A value in the
# environment wins (OMP_WAIT_POLICY=default: the OpenMP runtime's own default).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if os.environ["OMP_WAIT_POLICY"].lower() == "default":
    del os.environ["OMP_WAIT_POLICY"]

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from wbpose.losses import KeypointMSELoss  # noqa: E402
from wbpose.models import build_pose_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import Timing, add_json_argument, measure, write_json  # noqa: E402


@dataclass
class Case:
    arch: str
    hw: tuple[int, int]
    channels_last: bool
    bf16: bool
    iters: int


def conv_gmacs(arch: str, hw: tuple[int, int]) -> float:
    """Multiply-accumulates of one crop's forward pass, counted on the meta device (no compute)."""
    with torch.device("meta"):
        model = build_pose_model(arch).eval()
        images = torch.empty(1, 3, *hw)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images)
    return counter.get_total_flops() / 2e9


def matmul_gflops(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """The machine's floor for this run: GFLOP/s of an n x n matmul (median call after one warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timing = measure(lambda: a @ b, warmup=1, repeats=5 if device.type == "cpu" else 50, sync=lambda: _sync(device))
    return 2 * n**3 / timing.median / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_case(case: Case, batch: int, device: torch.device) -> dict[str, Timing]:
    """Images per second for one configuration, forward (``fwd``) and forward + backward + loss (``train``)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if case.channels_last else torch.contiguous_format
    model = build_pose_model(case.arch).to(device=device, memory_format=fmt)
    images = torch.randn(batch, 3, *case.hw, device=device).contiguous(memory_format=fmt)
    h, w = case.hw[0] // 4, case.hw[1] // 4
    target = torch.rand(batch, 133, h, w, device=device)
    weights = torch.ones(batch, 133, device=device)
    loss_fn = KeypointMSELoss()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if case.bf16 else nullcontext()

    def forward() -> None:
        with torch.inference_mode(), autocast:
            model(images)

    def train_step() -> None:
        with autocast:
            loss = loss_fn(model(images), target, weights)
        loss.backward()
        model.zero_grad(set_to_none=True)

    sync = lambda: _sync(device)  # noqa: E731
    model.eval()
    fwd = measure(forward, warmup=1, repeats=case.iters, sync=sync)
    model.train()
    train = measure(train_step, warmup=1, repeats=case.iters, sync=sync)
    return {"fwd": fwd.rate(batch), "train": train.rate(batch)}


def default_cases(device: torch.device, archs: list[str], iters: int, with_384: bool) -> list[Case]:
    cases = []
    if device.type == "cpu":
        sizes = {"tiny": [(128, 96), (256, 192)], "w32": [(256, 192)] + ([(384, 288)] if with_384 else [])}
        for arch in archs:
            for hw in sizes.get(arch, [(256, 192)]):
                # Big cases get fewer iterations so the whole run stays at a few minutes on 2 cores.
                heavy = arch == "w48" or hw == (384, 288)
                n = max(1, iters - 1) if heavy else (iters * 3 if arch == "tiny" else iters)
                cases += [Case(arch, hw, False, False, n), Case(arch, hw, True, False, n)]
        return cases
    for arch in archs:
        for hw in [(256, 192), (384, 288)] if with_384 else [(256, 192)]:
            for channels_last in (False, True):
                for bf16 in (False, True):
                    cases.append(Case(arch, hw, channels_last, bf16, iters * 5))
    return cases


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description="HRNet pose model throughput")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", nargs="+", default=["tiny", "w32", "w48"])
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per case (after 1 warm-up)")
    parser.add_argument("--batch", type=int, default=None, help="default: 8 on CPU, 64 on GPU")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--no-384", dest="with_384", action="store_false", help="skip the 384x288 cases")
    add_json_argument(parser)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        where = f"CPU, {torch.get_num_threads()} threads"
    else:
        torch.backends.cudnn.benchmark = True
        where = f"{torch.cuda.get_device_name(device)} (cudnn.allow_tf32={torch.backends.cudnn.allow_tf32})"
    batch = args.batch or (8 if device.type == "cpu" else 64)
    floor = matmul_gflops(device)
    print(f"torch {torch.__version__}, {where}, batch {batch}; fp32 matmul floor {floor:.0f} GFLOP/s")
    if device.type == "cpu":
        print("reference (MMPose, this 2-core CPU): w32 256x192 ~15 img/s forward, ~5 img/s forward+backward")

    columns = ["arch", "input", "layout", "dtype", "GMAC", "forward img/s", "fwd+bwd img/s", "fwd GFLOP/s",
               "x matmul floor"]  # fmt: skip
    print(" | ".join(columns))
    start = time.perf_counter()
    macs: dict[tuple[str, tuple[int, int]], float] = {}
    rows = []
    statistic = ""
    for case in default_cases(device, args.archs, args.iters, args.with_384):
        key = (case.arch, case.hw)
        if key not in macs:
            macs[key] = conv_gmacs(*key)
        r = run_case(case, batch, device)
        statistic = r["fwd"].statistic
        gflops = 2 * macs[key] * r["fwd"].median
        cells = [case.arch, f"{case.hw[0]}x{case.hw[1]}", "channels_last" if case.channels_last else "contiguous",
                 "bf16" if case.bf16 else "fp32", f"{macs[key]:.2f}", r["fwd"].text(2), r["train"].text(2),
                 f"{gflops:.1f}", f"{gflops / floor:.2f}"]  # fmt: skip
        rows.append(cells)
        print(" | ".join(cells), flush=True)
    print(f"images/s: wall clock, {statistic}; total {time.perf_counter() - start:.0f} s")
    notes = [
        f"{where}, batch {batch}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}; fp32 2048x2048 "
        f"matmul floor {floor:.0f} GFLOP/s in the same run.",
        f"images/s: batch / wall seconds per call, {statistic}.",
    ]
    if device.type == "cpu":
        notes.append("Reference (MMPose, this kind of 2-core CPU): W32 256x192 ~15 img/s forward, ~5 img/s fwd+bwd.")
    write_json(args.json, "model" if device.type == "cpu" else "model_gpu", columns, rows, notes)


if __name__ == "__main__":
    main()

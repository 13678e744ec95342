"""Throughput of the HRNet pose models (forward, and forward + backward + loss) on CPU or GPU.

HRNet paper: https://arxiv.org/abs/1902.09212. Reference point for this repo's 2-core CPU: MMPose's HRNet-W32 at
256x192, batch 8, runs about 15 img/s forward and 5 img/s forward+backward; ours is the same math, so it should
not be slower.

Each row also shows the achieved forward convolution GFLOP/s (MACs counted with ``torch.utils.flop_counter`` on the
meta device, x2), next to the machine's floor measured in the same run: an fp32 matmul's GFLOP/s. On CPU, the
``(cpu-t)`` columns divide by this process's CPU time per thread instead of the wall clock (see ``_time``).

CPU (default when no GPU): ``torch.set_num_threads(2)``, batch 8, tiny (128x96 and 256x192), W32 (256x192 and
384x288), W48 (256x192), each contiguous vs channels_last.
GPU: batch 64, fp32 vs bf16 autocast, contiguous vs channels_last.

Usage:
    python benchmarks/model.py [--device cpu|cuda] [--archs tiny w32 w48] [--iters 3] [--no-384]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model


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
    """The machine's floor for this run: sustained GFLOP/s of an n x n matmul."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 3 if device.type == "cpu" else 50
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(step: Callable[[], None], iters: int, device: torch.device, warmup: int = 1) -> tuple[float, float]:
    """Fastest seconds per call after ``warmup`` untimed calls: (wall clock, process CPU time / threads).

    The minimum, not the mean: on a shared machine other jobs only ever add time. On CPU the second figure,
    this process's CPU time divided by its thread count, is what the call would take on otherwise idle cores;
    it is less sensitive to other jobs than the wall clock (threads spinning at barriers still count).
    """
    for _ in range(warmup):
        step()
    _sync(device)
    best_wall = best_cpu = float("inf")
    for _ in range(iters):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / torch.get_num_threads())
    return best_wall, best_cpu


def run_case(case: Case, batch: int, device: torch.device) -> dict[str, float]:
    """Images per second for one configuration: keys fwd, fwd_cpu, train, train_cpu (``_cpu``: CPU-time based)."""
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

    model.eval()
    fwd_wall, fwd_cpu = _time(forward, case.iters, device)
    model.train()
    train_wall, train_cpu = _time(train_step, case.iters, device)
    return {
        "fwd": batch / fwd_wall,
        "fwd_cpu": batch / fwd_cpu,
        "train": batch / train_wall,
        "train_cpu": batch / train_cpu,
    }


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

    cpu = device.type == "cpu"
    header = f"{'arch':<5} {'input':>8} {'layout':>13} {'dtype':>5} {'GMAC':>6} {'fwd img/s':>10}"
    header += f" {'(cpu-t)':>8} {'fwd+bwd img/s':>14} {'(cpu-t)':>8} {'fwd GFLOP/s':>12}"
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    macs: dict[tuple[str, tuple[int, int]], float] = {}
    for case in default_cases(device, args.archs, args.iters, args.with_384):
        key = (case.arch, case.hw)
        if key not in macs:
            macs[key] = conv_gmacs(*key)
        r = run_case(case, batch, device)
        layout = "channels_last" if case.channels_last else "contiguous"
        fwd_cpu = f"{r['fwd_cpu']:>8.2f}" if cpu else f"{'-':>8}"
        train_cpu = f"{r['train_cpu']:>8.2f}" if cpu else f"{'-':>8}"
        print(
            f"{case.arch:<5} {case.hw[0]:>4}x{case.hw[1]:<3} {layout:>13} {'bf16' if case.bf16 else 'fp32':>5} "
            f"{macs[key]:>6.2f} {r['fwd']:>10.2f} {fwd_cpu} {r['train']:>14.2f} {train_cpu} "
            f"{2 * macs[key] * r['fwd']:>12.1f}",
            flush=True,
        )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

"""Where a W32 training step's time goes on a GPU: eager at the recipe batch and at 4x it, the whole step captured
as one CUDA graph, the forward pass alone (eager and graphed, as in validation), and the loader alone.

If images/s grows with the batch and the graphed step is much faster than the eager one, the step is bound by
kernel launches (HRNet runs thousands of small kernels per step), not by the GPU's arithmetic.

Usage: ``python benchmarks/cuda_graphs.py --root /tmp/wbpose_full`` (the full-size fixture, for the loader rows;
``--no-loader`` skips them). Needs CUDA.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from wbpose.codecs import DarkHeatmap
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model


def row(label: str, value: str) -> None:
    print(f"| {label} | {value} |", flush=True)


def batch_on(device, batch, image_hw=(256, 192), heatmap_hw=(64, 48)):
    x = torch.randn(batch, 3, *image_hw, device=device).contiguous(memory_format=torch.channels_last)
    return x, torch.rand(batch, 133, *heatmap_hw, device=device), torch.ones(batch, 133, device=device)


def timed(fn, iters: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def model_and_opt(arch: str, device, capturable: bool = False):
    model = build_pose_model(arch).to(device).to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4, capturable=capturable)


def eager_step(arch, device, batch):
    model, opt = model_and_opt(arch, device)
    loss_fn = KeypointMSELoss()
    x, y, w = batch_on(device, batch)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x).float(), y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def graphed_step(arch, device, batch):
    """The whole step (forward, loss, backward, Adam) captured once and replayed on static tensors."""
    model, opt = model_and_opt(arch, device, capturable=True)
    loss_fn = KeypointMSELoss()
    x, y, w = batch_on(device, batch)

    def body():
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            loss = loss_fn(model(x).float(), y, w)
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=False)
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def forward(arch, device, batch, graphed: bool):
    model = build_pose_model(arch).to(device).to(memory_format=torch.channels_last).eval()
    x, _, _ = batch_on(device, batch)

    def fwd():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not graphed):
            return model(x)

    if not graphed:
        return fwd
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fwd()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fwd()
    return graph.replay


def loader_rate(root: Path, batch: int, workers: int, iters: int) -> float:
    from wbpose.engine.datamodule import WholeBodyDataModule

    codec = DarkHeatmap((256, 192), (64, 48), 2.0)
    dm = WholeBodyDataModule(root, image_hw=(256, 192), codec=codec, batch_size=batch, num_workers=workers,
                             pin_memory=True, cache_dir=root / "cache", drop_last=True)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    for _ in range(2 * workers):  # every worker has started and delivered
        next(it)
    start = time.perf_counter()
    for _ in range(iters):
        next(it)
    return iters * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/wbpose_full"))
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--no-loader", dest="loader", action="store_false")
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, {os.cpu_count()} CPU cores\n")
    print("| case (W32 256x192, bf16-mixed, channels_last, cudnn.benchmark) | images/s |\n|---|---|")
    for arch in ("w32", "w48"):
        for batch in (64, 256):
            try:
                row(f"{arch} train eager b{batch}", f"{batch / timed(eager_step(arch, device, batch), 15):.0f}")
            except Exception as e:  # noqa: BLE001 - a diagnostic: report and go on
                row(f"{arch} train eager b{batch}", f"error: {type(e).__name__}: {e}"[:200])
        try:
            row(f"{arch} train CUDA graph b64", f"{64 / timed(graphed_step(arch, device, 64), 30):.0f}")
        except Exception as e:  # noqa: BLE001
            row(f"{arch} train CUDA graph b64", f"error: {type(e).__name__}: {e}"[:200])
        torch.cuda.empty_cache()
    for graphed in (False, True):
        try:
            rate = 128 / timed(forward("w32", device, 128, graphed), 30)
            row(f"w32 val forward b128 {'CUDA graph' if graphed else 'eager'}", f"{rate:.0f}")
        except Exception as e:  # noqa: BLE001
            row(f"w32 val forward b128 {'graph' if graphed else 'eager'}", f"error: {type(e).__name__}: {e}"[:200])
    if args.loader:
        for workers in (args.workers,):
            rate = loader_rate(args.root, 64, workers, 60)
            row(f"loader alone, {workers} workers, b64 (train fixture)", f"{rate:.0f}")


if __name__ == "__main__":
    main()

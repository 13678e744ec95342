"""Training throughput (images/s): model only, loader only, and end to end (loader with workers + train step).

Timing (``benchmarks/timing.py``): images/s from the median step after the warm-up steps, with the range.
Each run also reports the machine's floor measured in the same run (fp32 matmul GFLOP/s on the same device),
so numbers from a shared or different machine can be compared. "bottleneck" names the slower of the loader and
the model: end to end can be no faster than either.

Examples::

    python benchmarks/train_throughput.py                                   # CPU: tiny 128x96, W32 256x192
    python benchmarks/train_throughput.py --device cuda --archs w32 --batch 64 --iters 30 \\
        --precisions 32-true bf16-mixed --channels-last --workers 2 8 [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import torch

# benchmarks/model.py and timing.py sit beside this script (run as `python benchmarks/train_throughput.py`)
from model import _sync, matmul_gflops
from timing import Timing, add_json_argument, measure, write_json
from wbpose.codecs import make_codec
from wbpose.engine.datamodule import WholeBodyDataModule
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--archs", nargs="+", default=["tiny", "w32"])
    p.add_argument("--batch", type=int, default=None, help="default: 32 tiny, 4 (CPU) / 64 (GPU) for w32/w48")
    p.add_argument("--iters", type=int, default=None, help="default: 10 tiny, 3 (CPU) / 30 (GPU) otherwise")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    p.add_argument("--precisions", nargs="+", default=["32-true"])
    p.add_argument("--channels-last", action="store_true", help="also run with channels_last")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--data-root", type=Path, default=None, help="a COCO-WholeBody root (default: synthetic)")
    add_json_argument(p)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True
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
    for arch in args.archs:
        batch = args.batch or (32 if arch == "tiny" else (64 if gpu else 4))
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

"""One-command GPU check: training throughput grid, loader vs in-memory batches, the full val protocol, and the
numerics of DARK decoding on CUDA and in bf16. Prints one markdown table.

Goals it measures (one H100/H200-class GPU): W32 256x192 training at >= 2,000 img/s end to end in bf16-mixed; the
whole val protocol (104,125 detector boxes, W32 256x192, flip test, DARK) within 2 minutes; DARK decode on CUDA
equal to CPU (<= 1e-3 px); bf16 heatmaps decoded within 0.05 px of fp32.

Rows:

- ``train``: images/s of one optimiser step (forward, MSE loss, backward, Adam) for W32 and W48 at 256x192
  (batch 64) and 384x288 (batch 32), fp32 and bf16-mixed, channels_last on and off, torch.compile on and off, on
  in-memory batches (the model alone); W32 256x192 also with the real loader over the full-size train fixture
  (``--workers`` workers, annotation cache) to see whether it keeps the GPU fed;
- ``val``: ``Trainer.validate`` of W32 256x192 DARK with flip test over the full-size val fixture's detector boxes
  (random weights: the wall time does not depend on them), split into the loader+network part and the metric;
- ``decode``: DARK on CUDA vs CPU (max px difference), bf16 vs fp32 heatmaps (max px difference).

A time budget (``--budget``, seconds) skips the remaining rows once spent, and says so. ``--smoke`` runs a tiny
version on CPU (tiny HRNet, 64x48, two steps, a 4-image synthetic root): the tests run it.

Timing (``benchmarks/timing.py``): images/s from the median step after the warm-up steps, with the range.

Usage: ``python benchmarks/gpu.py --root /tmp/wbpose_full [--json PATH]`` (make the root with
``python scripts/synthetic.py --full-size --out /tmp/wbpose_full``), or ``bash benchmarks/gpu.sh`` (json into
``$OUT`` when that is set, as on the lent GPU machines).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from wbpose.codecs import make_codec
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import Timing, add_json_argument, measure, write_json  # noqa: E402

#: input -> (image_hw, heatmap_hw, sigma, batch per GPU of the recipes)
INPUTS = {"256x192": ((256, 192), (64, 48), 2.0, 64), "384x288": ((384, 288), (96, 72), 3.0, 32)}
SMOKE_INPUTS = {"64x64": ((64, 64), (16, 16), 1.0, 2)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Step:
    """One optimiser step on a batch, with autocast, channels_last and torch.compile as asked."""

    def __init__(self, arch: str, device: torch.device, bf16: bool, channels_last: bool, compile_: bool) -> None:
        self.device, self.bf16, self.channels_last = device, bf16, channels_last
        model = build_pose_model(arch).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if compile_ else model
        self.loss = KeypointMSELoss()
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def __call__(self, images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> None:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            pred = self.model(images)
            loss = self.loss(pred.float(), heatmaps.to(self.device, non_blocking=True), weights.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def images_per_s(step: Step, batches, warmup: int, iters: int, device: torch.device) -> Timing:
    """Images/s of one step: the median step after ``warmup`` untimed ones (each timed step synchronised)."""
    it = iter(batches)
    sizes = []

    def one() -> None:
        b = next(it)
        step(*b)
        sizes.append(b[0].shape[0])

    timing = measure(one, warmup=warmup, repeats=iters, sync=lambda: sync(device))
    return timing.rate(sizes[-1])


def rate_text(t: Timing) -> str:
    return f"{t.median:.0f} img/s ({t.min:.0f}-{t.max:.0f})"


def memory_batches(batch: int, image_hw, heatmap_hw, device: torch.device):
    images = torch.randn(batch, 3, *image_hw, device=device)
    heatmaps = torch.rand(batch, 133, *heatmap_hw, device=device)
    weights = torch.ones(batch, 133, device=device)
    return itertools.repeat((images, heatmaps, weights))


def loader_batches(root: Path, image_hw, heatmap_hw, sigma, batch, workers, cache_dir, device):
    from wbpose.engine.datamodule import WholeBodyDataModule

    codec = make_codec("dark", image_hw, sigma=sigma, heatmap_hw=heatmap_hw)
    dm = WholeBodyDataModule(root, image_hw=image_hw, codec=codec, batch_size=batch, num_workers=workers,
                             pin_memory=device.type == "cuda", cache_dir=cache_dir, drop_last=True)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")

    def gen():
        while True:
            for b in dm.train_dataloader():
                yield b["image"], b["heatmaps"], b["weights"]

    return gen()


def decode_checks(device: torch.device, image_hw, heatmap_hw, sigma) -> tuple[float, float]:
    """(max |CUDA - CPU| px, max |bf16 - fp32| px) of DARK decoding on target-like heatmaps."""
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


def val_protocol(root: Path, arch: str, image_hw, heatmap_hw, sigma, batch, workers, cache_dir, device) -> dict:
    import pytorch_lightning as pl

    from wbpose.engine.datamodule import WholeBodyDataModule
    from wbpose.engine.module import TopdownPoseModule
    from wbpose.metrics import CocoWholeBodyMetric

    codec = make_codec("dark", image_hw, sigma=sigma, heatmap_hw=heatmap_hw)
    dm = WholeBodyDataModule(root, image_hw=image_hw, codec=codec, val_batch_size=batch, num_workers=workers,
                             pin_memory=device.type == "cuda", cache_dir=cache_dir)  # fmt: skip
    metric = CocoWholeBodyMetric(dm.val_ann_file, prefix="val", cache_dir=cache_dir)
    module = TopdownPoseModule(build_pose_model(arch), codec, KeypointMSELoss(), val_metric=metric, flip_test=True,
                               num_vis_images=0, input_hw=image_hw)  # fmt: skip
    timings = {}
    compute = metric.compute

    def timed_compute():
        start = time.perf_counter()
        out = compute()
        timings["metric"] = time.perf_counter() - start
        return out

    metric.compute = timed_compute
    trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         precision="bf16-mixed" if device.type == "cuda" else "32-true")  # fmt: skip
    start = time.perf_counter()
    dm.prepare_data()
    dm.setup("validate")
    timings["loading"] = time.perf_counter() - start
    start = time.perf_counter()
    trainer.validate(module, datamodule=dm, verbose=False)
    timings["total"] = time.perf_counter() - start + timings["loading"]
    timings["boxes"] = len(dm.val_dataset)
    return timings


def add(rows: list[tuple[str, str]], label: str, value: str) -> None:
    """Keep a row for the final table and print it at once (a run cut short still shows what it measured)."""
    rows.append((label, value))
    print(f"{label}: {value}", flush=True)


def smoke_root(tmp: Path) -> Path:
    from wbpose.synthetic.full_size import generate_full_size

    generate_full_size(tmp / "root", scale=0.0004, seed=0)
    return tmp / "root"


def main(argv: list[str] | None = None) -> list[tuple[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/wbpose_full"))
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--budget", type=float, default=450.0, help="seconds; later rows are skipped past it")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU version (the tests)")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.smoke:
            device, archs, inputs, root = torch.device("cpu"), ["tiny"], SMOKE_INPUTS, smoke_root(tmp)
            warmup, iters, compiles, workers = 1, 2, [False], 1
        else:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            archs, inputs, root, warmup, iters = ["w32", "w48"], INPUTS, args.root, 5, args.iters
            compiles, workers = [False, True], args.workers
        cache_dir = tmp / "cache"
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        add(rows, "device", f"{name}, torch {torch.__version__}, {os.cpu_count()} CPU cores")
        # Cheap, decisive rows first (decoding numerics, the val protocol), then the training grid without
        # torch.compile, then the compiled variants (each compile costs about a minute) while the budget lasts.
        image_hw, heatmap_hw, sigma, batch = next(iter(inputs.values()))
        cuda_px, bf16_px = decode_checks(device, image_hw, heatmap_hw, sigma)
        add(rows, "decode DARK: max |device - CPU| px", f"{cuda_px:.2e} ({'ok' if cuda_px <= 1e-3 else 'FAIL'})")
        add(rows, "decode DARK: max |bf16 - fp32| px", f"{bf16_px:.3f} ({'ok' if bf16_px <= 0.05 else 'FAIL'})")
        t = val_protocol(root, archs[0], image_hw, heatmap_hw, sigma, 2 * batch, workers, cache_dir, device)
        add(rows, f"val protocol {archs[0]} flip DARK, {t['boxes']} boxes: wall s",
            f"{t['total']:.1f} (loading {t['loading']:.1f}, metric {t['metric']:.1f})")  # fmt: skip
        grid = itertools.product(compiles, archs, inputs.items(), [False, True], [False, True])
        for comp, arch, (inp, (image_hw, heatmap_hw, sigma, batch)), bf16, cl in grid:
            label = f"train {arch} {inp} b{batch} {'bf16' if bf16 else 'fp32'} cl={int(cl)} compile={int(comp)}"
            if time.perf_counter() - t0 > args.budget:
                add(rows, label, "skipped (time budget)")
                continue
            step = Step(arch, device, bf16, cl, comp)
            ips = images_per_s(step, memory_batches(batch, image_hw, heatmap_hw, device), warmup, iters, device)
            add(rows, label + " memory", rate_text(ips))
            if not comp and arch == archs[0] and inp == next(iter(inputs)) and cl and bf16 == (device.type == "cuda"):
                data = loader_batches(root, image_hw, heatmap_hw, sigma, batch, workers, cache_dir, device)
                # warm-up: every worker has started and delivered (the first batches measure worker start-up)
                ips_l = images_per_s(step, data, max(warmup, 2 * workers), iters, device)
                add(rows, label + f" loader ({workers} workers)", rate_text(ips_l))
            del step
    add(rows, "benchmark wall s", f"{time.perf_counter() - t0:.0f}")
    print("| check | result |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    statistic = f"median step of {iters} after {warmup} warm-up steps (loader rows: at least 2 per worker), min-max"
    notes = [f"train rows: images/s of one optimiser step, {statistic}."]
    write_json(args.json, "gpu", ["check", "result"], [list(r) for r in rows], notes)
    return rows


if __name__ == "__main__":
    main()

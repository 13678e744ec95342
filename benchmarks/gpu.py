"""One-command GPU check: the loader per worker against the machine's floor, training end to end with the real
loader (crops made by the CPU workers or on the GPU), the full val protocol with its split, MMPose's own step and
pipeline on the same machine, and the numerics of the GPU paths. Prints one markdown table, last.

Goals it measures (issue 23, one H100/H200): W32 256x192 bf16 training end to end with the real loader over the
full-size fixture at >= 3,000 images/s at batch 512 and >= 1,500 at batch 64; the full val protocol (104,125 detector
boxes, flip test, DARK) within 60 s; loader images/s per worker next to this machine's per-core floor.

Rows, most decisive first (a time budget, ``--budget`` seconds, skips the loader, training and video rows once
spent, and says so; MMPose gets at least 150 s and the val protocol always runs):

- ``decode``: DARK on the device vs the CPU (max px difference), bf16 vs fp32 heatmaps; the device crops
  (``data.decode_on=gpu``: ``affine_grid``/``grid_sample``) against ``cv2.warpAffine`` on the fixture's JPEGs
  (share within one grey level), and nvJPEG's decode against OpenCV's (mean and max difference: the two JPEG
  decoders may differ; the crop test excludes the decode).
- ``floor``: one core of this machine, one process: ``cv2.imread`` + one ``cv2.warpAffine`` to 192x256 per
  training sample (OpenCV and torch on one thread), samples/s.
- ``loader``: the training loader alone (batch 64, ``--workers`` workers and 1 worker), images/s after every worker
  has started and delivered (start-up excluded: ``3 x workers`` batches drained first), and per worker, next to the
  floor (``per worker / floor``). ``decode_on=cpu`` (workers decode, warp, normalise, render heatmaps) and
  ``decode_on=gpu`` (workers send the files, warps and target profiles; the GPU decodes, warps, renders).
- ``train``: one optimiser step of W32 256x192 (bf16 autocast, channels_last, Adam, MSE loss) at batch 512 and 64:
  in-memory batches (the model alone), then with the real loader end to end (``decode_on=gpu`` and ``cpu``).
- ``mmpose``: ``benchmarks/mmpose_step.py`` in a subprocess (``--mmpose-site``: MMPose's step at batch 64 and 512,
  fp32 and bf16; its pipeline per process and per loader worker on the same fixture).
- ``val protocol``: ``Trainer.validate`` of W32 256x192 DARK with the flip test over the full-size val fixture's
  detector boxes with ``decode_on=gpu`` (random weights: the wall time does not depend on them), split into loader
  wait, device crops, network, decode, metric (``wbpose.engine.timing.StageTimer``, synchronised per call).
- the compiled / CUDA-graph step of ``benchmarks/train_throughput.py``: a marked place, wired in after that lands.
- ``video``: ``benchmarks/video.py`` (CPU, 2 network threads; ``--video``), its rows read back from its json.

``--smoke`` runs every path on CPU at toy sizes (tiny HRNet, 64x64, a tiny synthetic root; MMPose when
``--mmpose-site`` is given): the tests run it.

Timing (``benchmarks/timing.py``): images/s from the median step after the warm-up steps, with the range; a
loader alone is timed as batches over wall time after its warm-up.

Usage: ``bash benchmarks/gpu.sh`` (installs the carried wheels, makes the full-size fixture, logs into ``$OUT``),
or ``python benchmarks/gpu.py --root /tmp/wbpose_full [--mmpose-site DIR] [--video] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from wbpose.codecs import make_codec
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import Timing, add_json_argument, measure, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
#: input -> (image_hw, heatmap_hw, sigma)
INPUT = ((256, 192), (64, 48), 2.0)
SMOKE_INPUT = ((64, 64), (16, 16), 1.0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Step:
    """One optimiser step on a batch: bf16 autocast (on CUDA, or when asked), channels_last, MSE loss, Adam."""

    def __init__(self, arch: str, device: torch.device, bf16: bool, channels_last: bool = True) -> None:
        self.device, self.bf16, self.channels_last = device, bf16, channels_last
        model = build_pose_model(arch).to(device)
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.loss = KeypointMSELoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=5e-4)

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


def rate_text(t: Timing) -> str:
    return f"{t.median:.0f} img/s ({t.min:.0f}-{t.max:.0f})"


class Rows:
    """The table: each row printed as soon as it is measured (a run cut short still shows it), kept for the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add(self, label: str, value: str) -> None:
        self.rows.append((label, value))
        print(f"{label}: {value}", flush=True)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def spent(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.spent()


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
    return timed * batch / (time.perf_counter() - start)


def step_rate(step: Step, batches, warmup: int, iters: int, device: torch.device) -> Timing:
    """Images/s of ``step`` on the next ``(images, heatmaps, weights)`` of ``batches`` per call."""
    sizes = []

    def one() -> None:
        images, heatmaps, weights = next(batches)
        step(images, heatmaps, weights)
        sizes.append(images.shape[0])

    return measure(one, warmup=warmup, repeats=iters, sync=lambda: sync(device)).rate(sizes[-1] if sizes else 1)


def memory_batches(batch: int, image_hw, heatmap_hw, device: torch.device):
    images = torch.randn(batch, 3, *image_hw, device=device)
    heatmaps = torch.rand(batch, 133, *heatmap_hw, device=device)
    weights = torch.ones(batch, 133, device=device)
    while True:
        yield images, heatmaps, weights


def loader_batches(dm, device: torch.device):
    for batch in forever(dm.train_dataloader()):
        yield to_step_inputs(dm, batch, device)


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
    from wbpose.data.gpu_pixels import warp_crops

    images = [cv2.imread(p, cv2.IMREAD_COLOR) for p in paths]
    h = max(x.shape[0] for x in images)
    w = max(x.shape[1] for x in images)
    padded = torch.zeros(len(images), 3, h, w, dtype=torch.uint8)
    for u, x in enumerate(images):
        padded[u, :, : x.shape[0], : x.shape[1]] = torch.from_numpy(x).permute(2, 0, 1)
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


# ----------------------------------------------------------------------------------------------- rows
def train_rows(rows: Rows, budget: Budget, root, cache_dir, device, arch, input_, batches, workers, iters,
               decode_paths) -> None:  # fmt: skip
    image_hw, heatmap_hw, _ = input_
    bf16 = device.type == "cuda"
    precision = "bf16" if bf16 else "fp32"
    for batch in batches:
        label = f"train {arch} {image_hw[0]}x{image_hw[1]} b{batch} {precision} channels_last"
        if budget.left() < 0:
            rows.add(label, "skipped (time budget)")
            continue
        try:
            step = Step(arch, device, bf16)
            warm = 3 if device.type == "cuda" else 1
            memory = step_rate(step, memory_batches(batch, image_hw, heatmap_hw, device), warm, iters, device)
            rows.add(label + " memory", rate_text(memory))
            for decode_on in decode_paths:
                if budget.left() < 0:
                    rows.add(label + f" loader decode_on={decode_on}", "skipped (time budget)")
                    continue
                dm = datamodule(root, batch, workers, cache_dir, device, decode_on, prefetch=1 if batch > 64 else None)
                dm.setup("fit")
                timing = step_rate(step, loader_batches(dm, device), 2 * max(1, workers) + 1, iters, device)
                rows.add(label + f" loader decode_on={decode_on} ({workers} workers)", rate_text(timing))
        except torch.OutOfMemoryError as error:
            rows.add(label, f"out of memory ({str(error).splitlines()[0][:80]})")
        finally:
            step = None
            if device.type == "cuda":
                torch.cuda.empty_cache()


def loader_rows(rows: Rows, budget: Budget, root, cache_dir, device, input_, batch, workers, floor: Timing) -> None:
    for decode_on, worker_counts in (("cpu", sorted({workers, 1}, reverse=True)), ("gpu", [workers])):
        for w in worker_counts:
            label = f"loader decode_on={decode_on} b{batch} {w} workers"
            if budget.left() < 0:
                rows.add(label, "skipped (time budget)")
                continue
            dm = datamodule(root, batch, w, cache_dir, device, decode_on, input_=input_)
            dm.setup("fit")
            timed = max(10, 2 * w)
            alone = loader_rate(dm, device, timed, transfer=False)
            per_worker = alone / max(1, w)
            text = (f"{alone:.0f} img/s, {per_worker:.0f} per worker = {per_worker / floor.median:.2f}x the floor "
                    f"({timed} batches after {3 * max(1, w)})")  # fmt: skip
            if decode_on == "gpu":
                crops = loader_rate(dm, device, timed, transfer=True)
                text += f"; with the device crops {crops:.0f} img/s"
            rows.add(label, text)


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


def mmpose_rows(rows: Rows, site: Path, root: Path, cache_dir: Path, device: torch.device, workers: int, smoke: bool,
                timeout: float) -> None:  # fmt: skip
    """``benchmarks/mmpose_step.py`` in a subprocess with MMPose's folder first on its path; its rows added here."""
    out = Path(tempfile.mkdtemp(prefix="mmpose_rows_")) / "mmpose.json"
    cmd = [sys.executable, str(HERE / "mmpose_step.py"), "--json", str(out)]
    cmd += ["--smoke"] if smoke else ["--root", str(root), "--cache-dir", str(cache_dir), "--device", device.type,
                                      "--workers", str(workers), "--warmup", "2", "--steps", "6"]  # fmt: skip
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join([str(site), src, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    try:
        done = subprocess.run(cmd, env=env, timeout=max(30.0, timeout), capture_output=True, text=True)
    except subprocess.TimeoutExpired as error:
        rows.add("mmpose", f"stopped after {error.timeout:.0f} s (time budget)")
        return
    sys.stdout.write(done.stdout[-4000:])
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        rows.add("mmpose", f"FAILED (exit {done.returncode}): {' / '.join(tail)[:300]}")
        return
    for label, value, detail in json.loads(out.read_text())["rows"]:
        rows.add(f"mmpose {label}", f"{value} {detail}")


def video_rows(rows: Rows, timeout: float, out: Path | None) -> None:
    """``benchmarks/video.py`` (CPU: tiny and W32, 2 network threads) in a subprocess; its rows read back from its
    json (``out``, else a temporary file)."""
    out = out or Path(tempfile.mkdtemp(prefix="video_rows_")) / "video.json"
    cmd = [sys.executable, str(HERE / "video.py"), "--archs", "tiny", "w32", "--frames", "40", "8", "--reps", "3",
           "--threads", "2", "--json", str(out)]  # fmt: skip
    try:
        done = subprocess.run(cmd, timeout=max(30.0, timeout), capture_output=True, text=True)
    except subprocess.TimeoutExpired as error:
        rows.add("video (CPU)", f"stopped after {error.timeout:.0f} s (time budget)")
        return
    sys.stdout.write(done.stdout[-3000:])
    if done.returncode != 0 or not out.is_file():
        rows.add("video (CPU)", f"FAILED (exit {done.returncode}): {(done.stderr or '').strip()[-200:]}")
        return
    data = json.loads(out.read_text())
    for row in data["rows"]:
        rows.add(f"video (CPU) {row[0]}", ", ".join(f"{c}: {v}" for c, v in zip(data["columns"][1:], row[1:])))


def smoke_root(tmp: Path) -> Path:
    from wbpose.synthetic.full_size import generate_full_size

    generate_full_size(tmp / "root", scale=0.0004, seed=0)
    return tmp / "root"


def main(argv: list[str] | None = None) -> list[tuple[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/wbpose_full"))
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--budget", type=float, default=300.0, help="seconds; later rows are skipped past it")
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 64])
    parser.add_argument("--val-batch", type=int, default=256)
    parser.add_argument("--mmpose-site", type=Path, help="folder holding MMPose and its packages (gpu.sh installs it)")
    parser.add_argument("--video", action="store_true", help="also run benchmarks/video.py (CPU rows) at the end")
    parser.add_argument("--video-json", type=Path, help="where benchmarks/video.py writes its own json")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU version of every row (the tests)")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    budget = Budget(args.budget)
    rows = Rows()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.smoke:
            device, arch, input_, root = torch.device("cpu"), "tiny", SMOKE_INPUT, smoke_root(tmp)
            batches, iters, workers, val_batch, floor_n = [4], 2, 1, 8, 16
        else:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            arch, input_, root, batches, iters = "w32", INPUT, args.root, args.batches, args.iters
            workers, val_batch, floor_n = args.workers, args.val_batch, 256
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        cache_dir = tmp / "cache"
        image_hw, heatmap_hw, sigma = input_
        out_wh = (image_hw[1], image_hw[0])
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        rows.add("device", f"{name}, torch {torch.__version__}, OpenCV {cv2.__version__}, {os.cpu_count()} CPU cores")

        # 1. numerics of the device paths (seconds)
        cuda_px, bf16_px = decode_checks(device, image_hw, heatmap_hw, sigma)
        rows.add("decode DARK: max |device - CPU| px", f"{cuda_px:.2e} ({'ok' if cuda_px <= 1e-3 else 'FAIL'})")
        rows.add("decode DARK: max |bf16 - fp32| px", f"{bf16_px:.3f} ({'ok' if bf16_px <= 0.05 else 'FAIL'})")
        start = time.perf_counter()
        dm = datamodule(root, batches[-1], 0, cache_dir, device, "cpu", input_=input_)
        dm.setup("fit")
        rows.add("fixture: annotation cache + train set", f"{time.perf_counter() - start:.1f} s, "
                 f"{len(dm.train_dataset)} training people")  # fmt: skip
        paths, matrices = fixture_samples(dm, floor_n)
        del dm
        rows.add("device crops vs cv2.warpAffine (fixture)", crop_parity(paths[:32], matrices[:32], out_wh, device))
        rows.add("nvJPEG vs OpenCV decode (fixture files)", nvjpeg_parity(paths, device))

        # 2. the per-core floor and the loader per worker (the loss per worker on many cores)
        floor = floor_rate(paths, matrices, out_wh, rounds=3 if not args.smoke else 1)
        rows.add(
            "floor: imread + warpAffine, 1 core", f"{floor.median:.0f} samples/s ({floor.min:.0f}-{floor.max:.0f})"
        )
        loader_rows(rows, budget, root, cache_dir, device, input_, 64 if not args.smoke else 4, workers, floor)

        # 3. training: in-memory, then end to end with the real loader (crops on the GPU, then by the CPU workers)
        train_rows(rows, budget, root, cache_dir, device, arch, input_, batches, workers, iters, ["gpu", "cpu"])

        # 4. MMPose's own step and pipeline on this machine
        if args.mmpose_site is None:
            rows.add("mmpose", "skipped (no --mmpose-site: bash benchmarks/fetch_mmpose_wheels.sh, then gpu.sh)")
        else:  # a goal of the run: at least 150 s whatever is left of the budget
            mmpose_rows(rows, args.mmpose_site, root, cache_dir, device, workers, args.smoke,
                        timeout=max(budget.left(), 150.0) if not args.smoke else 1200.0)  # fmt: skip

        # 5. the full val protocol on the GPU path, with its split (a goal of the run: not subject to the budget)
        t = val_protocol(root, arch, input_, val_batch, workers, cache_dir, device, "gpu")
        split = ", ".join(f"{k} {v:.1f}" for k, v in t["split"].items() if k != "loading")
        rows.add(f"val protocol {arch} flip DARK decode_on=gpu b{val_batch}, {t['boxes']} boxes: wall s",
                 f"{t['wall']:.1f} (+ loading {t['loading']:.1f}; {split})")  # fmt: skip

        # 6. ---- STEP HELPER: compiled / CUDA-graph step rows (benchmarks/train_throughput.py) go here ----
        # Wired in after that work lands: the compiled or captured W32 step at batch 512 and 64, and its comparison
        # with the eager step on the same batch. Until then the row says so.
        rows.add("train compiled / CUDA-graph step", "not wired yet (benchmarks/train_throughput.py options)")
        # ---- end of the step helper's place ----

        # 7. the CPU video path (cores to spare on this machine)
        if args.video and not args.smoke:
            if budget.left() > 60:
                video_rows(rows, timeout=budget.left() + 30, out=args.video_json)
            else:
                rows.add("video (CPU)", "skipped (time budget)")
    rows.add("benchmark wall s", f"{budget.spent():.0f}")
    print("| check | result |\n|---|---|")
    for label, value in rows.rows:
        print(f"| {label} | {value} |")
    notes = [
        f"train rows: images/s of one optimiser step, median of {iters} steps after warm-up (with the loader: "
        "2 x workers + 1 steps), min-max; loader rows: images over wall time after 3 x workers batches."
    ]
    write_json(args.json, "gpu", ["check", "result"], [list(r) for r in rows.rows], notes)
    return rows.rows


if __name__ == "__main__":
    main()

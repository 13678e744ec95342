"""Training data-pipeline throughput on one CPU core, beside the machine's floor measured in the same run.

One train sample = ``cv2.imread`` + flip/half-body/shift-scale-rotate + one affine warp + normalisation + heatmap
target (``CocoWholeBodyDataset`` with the train augmentations and a codec), fetched in batches through
``__getitems__`` as the DataLoader does, and also one ``dataset[i]`` at a time. The ``decode_on=gpu`` row is what a
loader worker does per sample when the crops are made on the GPU (``encoded=True``: augmentation, crop geometry,
target profiles, the file read and its header checked; no decode, warp or heatmap rendering). The floor is what no
top-down pipeline can beat: decoding the same JPEG with ``cv2.imread`` and one ``cv2.warpAffine`` of it to the
same output size. Both run on one thread (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``), in the main
process, interleaved pass by pass so that load from other jobs hits both alike. Timing (``benchmarks/timing.py``):
wall clock per sample, the median over rounds after one warm-up round, with the range; x floor is the median (and
range) of the per-round ratio to the floor pass of the same round.

Allocator: the dataset raises glibc's mmap/trim thresholds in each loading process
(``wbpose.data.coco_wholebody.keep_freed_memory``), which saves ~850 page faults per train sample; the benchmark
applies it before anything runs, so the floor is measured with the same allocator.

Reference (same kind of machine): MMPose 1.3.2's train pipeline ~4.9 ms/sample vs a floor of ~1.7 ms (2.9x the
floor). Target for wbpose: <= 1.5x the floor at 256x192.

Images: ``--images DIR`` (any JPEGs; person annotations are synthesised for them), else ``$WBPOSE_SAMPLE_DATA``
(a folder like the real sample, with ``test_coco_wholebody.json``: its real annotations are used), else a few
synthetic COCO-sized JPEGs (``--num-images``, 640x480, textured, quality 95, 2 people each) in a temporary folder.

Usage::

    python benchmarks/data_pipeline.py [--images DIR] [--rounds 7] [--samples 120] [--codecs msra dark] [--json PATH]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared test helpers

from helpers.annotations import coco_wholebody, image_record, person, random_keypoints, write_json  # noqa: E402
from wbpose.codecs import CODECS, make_codec  # noqa: E402
from wbpose.data.augment import build_train_augmentations  # noqa: E402
from wbpose.data.coco_wholebody import CocoWholeBodyDataset, keep_freed_memory  # noqa: E402
from wbpose.geometry import bbox_xyxy_to_center_scale, warp_matrix  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import Timing, add_json_argument  # noqa: E402
from timing import write_json as write_table_json  # noqa: E402

SIZES = {"256x192": ((256, 192), (64, 48), 2.0), "384x288": ((384, 288), (96, 72), 3.0)}


def write_textured_jpegs(folder: Path, n: int, seed: int = 0, wh: tuple[int, int] = (640, 480)) -> list[Path]:
    """Write ``n`` photo-like JPEGs (smooth shading, edges, texture and sensor noise) at quality 95."""
    rng = np.random.default_rng(seed)
    w, h = wh
    paths = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.float32)
        for cells, amp in ((4, 90.0), (16, 40.0), (64, 20.0)):  # multi-scale smooth noise
            small = rng.normal(0, amp, (cells * h // w + 1, cells, 3)).astype(np.float32)
            img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(25):  # objects with hard edges
            c = tuple(float(v) for v in rng.uniform(-80, 80, 3))
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(10, 120)), int(rng.integers(10, 120)))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, c, -1)
        img += rng.normal(0, 6.0, img.shape).astype(np.float32)  # fine texture / noise
        path = folder / f"{i:012d}.jpg"
        cv2.imwrite(str(path), np.clip(img + 128, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(path)
    return paths


def write_annotations(images: list[Path], out: Path, seed: int = 0, per_image: int = 2) -> None:
    """A COCO-WholeBody json with ``per_image`` random people (all 133 keypoints, ~80% labelled) per image."""
    rng = np.random.default_rng(seed)
    imgs, anns = [], []
    for image_id, path in enumerate(images, start=1):
        h, w = cv2.imread(str(path)).shape[:2]
        imgs.append(image_record(image_id, (w, h), file_name=path.name))
        for _ in range(per_image):
            bw, bh = rng.uniform(0.2, 0.5) * w, rng.uniform(0.4, 0.9) * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = [x, y, bw, bh]
            anns.append(person(len(anns) + 1, image_id, box, random_keypoints(rng, box, labelled=0.8)))
    write_json(out, coco_wholebody(imgs, anns))


def resolve_inputs(args: argparse.Namespace, tmp: Path) -> tuple[str, str, str]:
    """Return (annotation file, image folder, description)."""
    sample = os.environ.get("WBPOSE_SAMPLE_DATA")
    if args.images:
        images = sorted(Path(p) for p in glob.glob(os.path.join(args.images, "*.jpg")))
        if not images:
            raise SystemExit(f"no *.jpg in {args.images}")
        write_annotations(images, tmp / "ann.json")
        return str(tmp / "ann.json"), args.images, f"{len(images)} JPEGs from {args.images}"
    if sample and os.path.isfile(os.path.join(sample, "test_coco_wholebody.json")):
        return os.path.join(sample, "test_coco_wholebody.json"), sample, f"real sample {sample}"
    images = write_textured_jpegs(tmp, args.num_images)
    write_annotations(images, tmp / "ann.json")
    kb = np.mean([p.stat().st_size for p in images]) / 1024
    return str(tmp / "ann.json"), str(tmp), f"{len(images)} synthetic 640x480 q95 JPEGs (~{kb:.0f} KB each)"


def floor_sample(path: str, matrix: np.ndarray, out_wh: tuple[int, int]) -> None:
    """JPEG decode + one warp: the cost every top-down pipeline pays per sample."""
    cv2.warpAffine(cv2.imread(path, cv2.IMREAD_COLOR), matrix, out_wh, flags=cv2.INTER_LINEAR)


def measure(
    ann: str, img_dir: str, size: str, codec_name: str, rounds: int, samples: int, batch: int
) -> dict[str, list[float]]:
    """Wall ms/sample per round of the floor, the train pipeline (batched and one at a time) and the val pipeline.

    Each round runs one pass of each, so each is timed in its own steady state (as in training, where samples of
    one pipeline follow each other) while load from other jobs still hits all of them alike.
    """
    image_hw, heatmap_hw, sigma = SIZES[size]
    input_wh = (image_hw[1], image_hw[0])
    codec = make_codec(codec_name, image_hw, sigma=sigma, heatmap_hw=heatmap_hw)
    train = CocoWholeBodyDataset(ann, img_dir, input_wh, codec=codec, transforms=build_train_augmentations())
    encoded = CocoWholeBodyDataset(ann, img_dir, input_wh, codec=codec, transforms=build_train_augmentations(),
                                   encoded=True)  # fmt: skip
    val = CocoWholeBodyDataset(ann, img_dir, input_wh)
    order = [i % len(train) for i in range(samples)]
    paths = [train.image_path(i) for i in order]
    center, scale = bbox_xyxy_to_center_scale(train.instances.bbox_xyxy[order], input_wh)
    matrices = list(warp_matrix(center, scale, 0.0, input_wh))

    def floor_pass() -> None:
        for path, m in zip(paths, matrices):
            floor_sample(path, m, input_wh)

    batches = [order[k : k + batch] for k in range(0, len(order), batch)]

    def train_pass() -> None:
        for b in batches:
            train.__getitems__(b)  # what the DataLoader calls per batch; results dropped as after collation

    def encoded_pass() -> None:
        for b in batches:
            encoded.__getitems__(b)  # decode_on=gpu: a worker's share (annotation half, file read, target profiles)

    def train_single_pass() -> None:
        for i in order:
            train[i]

    def val_pass() -> None:
        for b in batches:
            val.__getitems__(b)

    passes = {"floor": floor_pass, "train": train_pass, "train1": train_single_pass, "val": val_pass,
              "encoded": encoded_pass}  # fmt: skip
    per_round: dict[str, list[float]] = {name: [] for name in passes}
    for r in range(rounds + 1):  # round 0 warms up (page cache, allocators) and is not counted
        for name, run in passes.items():
            start = time.perf_counter()
            run()
            if r > 0:
                per_round[name].append((time.perf_counter() - start) / samples * 1e3)
    return per_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="folder of JPEGs (default: $WBPOSE_SAMPLE_DATA or synthetic)")
    parser.add_argument("--num-images", type=int, default=64, help="synthetic JPEGs (2 people each) when none given")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=128, help="samples per round")
    parser.add_argument("--batch", type=int, default=32, help="indices per __getitems__ call (a loader batch)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--codecs", nargs="+", default=["msra", "dark"], choices=list(CODECS))
    add_json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    # The dataset applies this in every loading process; applying it up front gives the floor the same allocator.
    tuned = keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        ann, img_dir, what = resolve_inputs(args, Path(tmp))
        statistic = Timing.of([0.0] * args.rounds, 1).statistic.replace("runs", "rounds").replace("run ", "round ")
        notes = [
            f"Images: {what}; 1 thread, no workers; {args.samples} samples per round, batches of {args.batch}.",
            f"ms/sample: wall clock, {statistic}; samples/s from the median. x floor: per-round ratio to the floor "
            "(imread + one warpAffine to the same size), median (min-max). A batch decodes each image once for all its "
            "people (2 per synthetic image, about COCO's train average); the floor decodes once per sample, so a "
            "batched pipeline can come out below 1x.",
            f"glibc malloc thresholds raised for every row, floor included (keep_freed_memory): {tuned}.",
            "Reference: MMPose 1.3.2's train pipeline ~4.9 ms/sample vs a floor of ~1.7 ms (2.9x); target <= 1.5x.",
        ]
        print("\n".join(notes))
        columns = ["size", "pipeline", "ms/sample", "samples/s", "x floor"]
        print(" | ".join(columns))
        rows = []
        for size in args.sizes:
            for codec_name in args.codecs:
                r = measure(ann, img_dir, size, codec_name, args.rounds, args.samples, args.batch)
                floor = np.asarray(r["floor"])
                labels = [
                    ("floor: imread + warpAffine", "floor"),
                    (f"wbpose train ({codec_name}), batch of {args.batch}", "train"),
                    (f"wbpose train ({codec_name}), one at a time", "train1"),
                    (f"wbpose val, batch of {args.batch}", "val"),
                    (f"wbpose train ({codec_name}), decode_on=gpu worker share, batch of {args.batch}", "encoded"),
                ]
                for label, key in labels:
                    if key in ("floor", "val") and codec_name != args.codecs[0]:
                        continue  # the floor and val do not depend on the codec: once per size
                    ms = Timing.of(list(r[key]), 1)
                    ratio = Timing.of(list(np.asarray(r[key]) / floor), 1)
                    cells = [size, label, ms.text(3), f"{1e3 / ms.median:.0f}", ratio.text(2) + "x"]
                    rows.append(cells)
                    print(" | ".join(cells), flush=True)
        write_table_json(args.json, "data_pipeline", columns, rows, notes)


if __name__ == "__main__":
    main()

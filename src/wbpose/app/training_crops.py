"""Write a PNG grid of training crops with their keypoints and target heatmaps, to eyeball the data pipeline.

Each tile is one sample as the model sees it (denormalised): the heatmap target (max over the 133 channels) is
overlaid in colour, keypoints with a non-zero target weight are dots in their part's colour (body blue, feet
orange, face white, left hand green, right hand magenta) joined by the skeleton, and the caption gives the image
id, instance id, ``F`` when flipped and the rotation. The drawing is ``wbpose.visualize.draw_training_samples``;
this command only builds the dataset. ``--split train`` applies the training augmentations; ``--split val`` shows
the un-augmented crops of the validation ground-truth boxes.

Usage::

    wbpose-training-crops --data-root /path/to/coco --out /tmp/grid.png --n 16
    wbpose-training-crops --data-root $WBPOSE_SAMPLE_DATA --out /tmp/grid.png  # flat sample folder

(``python scripts/training_crops.py ...`` is the same command.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from wbpose.codecs import make_codec
from wbpose.data.augment import build_train_augmentations
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.data.layout import TRAIN_ANN, VAL_ANN
from wbpose.visualize import draw_training_samples, save_png

__all__ = ["main", "resolve"]

SAMPLE_ANN = "test_coco_wholebody.json"  # the flat real-data sample: json and images in one folder


def resolve(root: Path, split: str, ann_file: str | None, img_dir: str | None) -> tuple[Path, Path]:
    """Annotation file and image folder of ``split`` in the standard layout, or of a flat sample folder."""
    if ann_file:
        return Path(ann_file), Path(img_dir or root)
    standard = root / (TRAIN_ANN if split == "train" else VAL_ANN)
    if standard.is_file():
        return standard, Path(img_dir) if img_dir else root / f"{split}2017"
    if (root / SAMPLE_ANN).is_file():
        return root / SAMPLE_ANN, Path(img_dir or root)
    raise SystemExit(f"no {standard} or {root / SAMPLE_ANN}: pass --data-root (or --ann-file and --img-dir)")


def main(argv: list[str] | None = None) -> int:
    """``wbpose-training-crops``: write the grid; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, type=Path)
    parser.add_argument("--out", default="grid.png", type=Path)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--input-hw", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    parser.add_argument("--codec", choices=("msra", "dark"), default="msra")
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--sigma", type=float, help="default: 2 for 256x192-sized inputs, 3 for 384x288")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ann-file", help="annotation json (overrides the layout under --data-root)")
    parser.add_argument("--img-dir", help="image folder (overrides the layout under --data-root)")
    parser.add_argument("--scale", type=int, default=1, help="tile upscaling factor")
    args = parser.parse_args(argv)

    h, w = args.input_hw
    codec = make_codec(args.codec, (h, w), sigma=args.sigma or None)
    ann_file, img_dir = resolve(args.data_root, args.split, args.ann_file, args.img_dir)
    transforms = build_train_augmentations() if args.split == "train" else None
    dataset = CocoWholeBodyDataset(ann_file, img_dir, (w, h), codec=codec, transforms=transforms, seed=args.seed)
    order = np.random.default_rng(args.seed).permutation(max(args.n, len(dataset)))[: args.n] % len(dataset)
    samples = [dataset.transform(dataset.load_sample(int(i)), index=int(i)) for i in order]
    save_png(args.out, draw_training_samples(samples, args.scale))
    print(f"wrote {args.out}: {len(samples)} {args.split} crops from {ann_file} ({len(dataset)} instances)")
    return 0

"""Write a PNG grid of training crops with their keypoints and target heatmaps, to eyeball the data pipeline.

Each tile is one sample as the model sees it (denormalised): the heatmap target (max over the 133 channels) is
overlaid in colour, keypoints with a non-zero target weight are dots in their part's colour (body blue, feet
orange, face white, left hand green, right hand magenta) joined by the skeleton, and the caption gives the image
id, instance id, ``F`` when flipped and the rotation. ``--split train`` applies the training augmentations;
``--split val`` shows the un-augmented crops of the validation ground-truth boxes.

Usage::

    python scripts/show_training_crops.py --data-root /path/to/coco --out /tmp/grid.png --n 16
    python scripts/show_training_crops.py --data-root $WBPOSE_SAMPLE_DATA --out /tmp/grid.png  # flat sample folder
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from wbpose.codecs import DarkHeatmap, MSRAHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.data.layout import TRAIN_ANN, VAL_ANN
from wbpose.data.transforms import TopdownSample, denormalize_image
from wbpose.keypoints import SKELETON, keypoint_colors

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


def heatmap_overlay(rgb: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Blend the max-over-keypoints heatmap (resized to the crop) onto the crop in the JET colour map."""
    hm = np.clip(heatmaps.max(axis=0), 0, 1)
    hm = cv2.resize(hm, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    alpha = (0.65 * hm)[..., None]
    return (rgb * (1 - alpha) + colour * alpha).astype(np.uint8)


def draw_tile(sample: TopdownSample, scale: int) -> np.ndarray:
    """One sample as an RGB tile (upscaled by ``scale``) with heatmaps, keypoints, skeleton and caption."""
    rgb = denormalize_image(sample.image_chw)
    if sample.heatmaps is not None:
        rgb = heatmap_overlay(rgb, sample.heatmaps)
    tile = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    tile = np.ascontiguousarray(tile)
    if sample.keypoints_xy is not None and sample.weights is not None:
        kp = sample.keypoints_xy * scale
        on = sample.weights > 0
        colors = keypoint_colors()
        for i, j in SKELETON:
            if on[i] and on[j]:
                p, q = tuple(int(v) for v in kp[i]), tuple(int(v) for v in kp[j])
                cv2.line(tile, p, q, tuple(int(c) for c in colors[i]), 1, cv2.LINE_AA)
        for k in np.flatnonzero(on):
            center = tuple(int(round(v)) for v in kp[k])
            cv2.circle(tile, center, 2, tuple(int(c) for c in colors[k]), -1, cv2.LINE_AA)
    caption = f"img {sample.image_id} id {sample.instance_id}{' F' if sample.flipped else ''}"
    caption += f" r{sample.rotation_deg:+.0f}" if sample.rotation_deg else ""
    cv2.putText(tile, caption, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, caption, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def make_grid(tiles: list[np.ndarray], pad: int = 4) -> np.ndarray:
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    h, w = tiles[0].shape[:2]
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 40, np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    return grid


def main() -> None:
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
    args = parser.parse_args()

    h, w = args.input_hw
    sigma = args.sigma or (2.0 if h <= 256 else 3.0)
    codec = (MSRAHeatmap if args.codec == "msra" else DarkHeatmap)((h, w), (h // 4, w // 4), sigma)
    ann_file, img_dir = resolve(args.data_root, args.split, args.ann_file, args.img_dir)
    transforms = build_train_augmentations() if args.split == "train" else None
    dataset = CocoWholeBodyDataset(ann_file, img_dir, (w, h), codec=codec, transforms=transforms)
    torch.manual_seed(args.seed)
    order = np.random.default_rng(args.seed).permutation(max(args.n, len(dataset)))[: args.n] % len(dataset)
    tiles = [draw_tile(dataset.transform(dataset.load_sample(int(i)), index=int(i)), args.scale) for i in order]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), make_grid(tiles)[..., ::-1])
    print(f"wrote {args.out}: {len(tiles)} {args.split} crops from {ann_file} ({len(dataset)} instances)")


if __name__ == "__main__":
    main()

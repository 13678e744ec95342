"""Write a synthetic COCO-WholeBody dataset: the learnable set, or the full-size stand-in.

Usage::

    wbpose-synthetic --out data/synthetic [--num-train 300] [--num-val 100] [--seed 0] [--image-hw H W]
    wbpose-synthetic --full-size --out /tmp/wbpose_full [--scale S] [--splits train val] [--no-images]

The first form writes the learnable set (rendered people whose every keypoint is drawn,
:func:`wbpose.synthetic.generate.generate_dataset`) and prints its statistics; it writes only into an empty folder
or one the generator marked. ``--full-size`` writes the full-size stand-in (the real counts and fields, images
hard-linked to a few JPEGs; :func:`wbpose.synthetic.full_size.generate_full_size`) and prints the counts as json.
(``python scripts/synthetic.py ...`` is the same command.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "parse_args"]

#: The options that belong to one form only (named in the error when mixed).
LEARNABLE_ONLY = ("num_train", "num_val", "image_hw")
FULL_SIZE_ONLY = ("scale", "splits", "no_images")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="learnable set: --num-train, --num-val, --image-hw; full-size stand-in: --scale, --splits, --no-images",
    )
    parser.add_argument("--full-size", action="store_true", help="write the full-size stand-in (real counts)")
    parser.add_argument(
        "--out", type=Path, default=None, help="dataset root (default: data/synthetic; --full-size: /tmp/wbpose_full)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=None, help="training images (default 300)")
    parser.add_argument("--num-val", type=int, default=None, help="validation images (default 100)")
    parser.add_argument("--image-hw", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="fixed image size (default: random 240x320 .. 360x480)")  # fmt: skip
    parser.add_argument("--scale", type=float, default=None, help="--full-size: multiply every count (default 1)")
    parser.add_argument("--splits", nargs="+", default=None, choices=["train", "val"],
                        help="--full-size: the splits to write (default: train val)")  # fmt: skip
    parser.add_argument("--no-images", action="store_true", help="--full-size: write only the json files")
    args = parser.parse_args(argv)
    given = [k for k in (LEARNABLE_ONLY if args.full_size else FULL_SIZE_ONLY) if getattr(args, k) is not None]
    wrong = [k for k in given if getattr(args, k) is not False]
    if wrong:
        form = "--full-size" if args.full_size else "the learnable set (no --full-size)"
        parser.error(f"{form} does not take {', '.join('--' + k.replace('_', '-') for k in wrong)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """``wbpose-synthetic``: write the dataset and print its statistics; returns the exit status (1 with the
    reason when the folder may not be written)."""
    args = parse_args(argv)
    try:
        if args.full_size:
            from wbpose.synthetic.full_size import generate_full_size

            splits = tuple(args.splits or ("train", "val"))
            out = args.out or Path("/tmp/wbpose_full")
            scale = 1.0 if args.scale is None else args.scale
            stats = generate_full_size(out, scale, args.seed, splits, images=not args.no_images)
            print(json.dumps(stats, indent=2))
        else:
            from wbpose.synthetic.generate import format_stats, generate_dataset

            out = args.out or Path("data/synthetic")
            num_train = 300 if args.num_train is None else args.num_train
            num_val = 100 if args.num_val is None else args.num_val
            stats = generate_dataset(out, num_train, num_val, args.seed, image_hw=args.image_hw)
            print(format_stats(stats))
    except (FileExistsError, PermissionError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0

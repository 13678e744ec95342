"""Write a synthetic COCO-WholeBody dataset.

``python scripts/make_synthetic.py --out data/synthetic`` writes the learnable synthetic set (rendered people,
``wbpose.synthetic.generate``); ``python scripts/make_synthetic.py --full-size --out /tmp/wbpose_full [--scale S]``
writes the full-size stand-in (real counts and fields, images hard-linked to a few JPEGs;
``wbpose.synthetic.full_size``).
"""

import argparse
import json
import sys

from wbpose.synthetic.generate import main


def full_size_main(argv: list[str]) -> dict:
    from wbpose.synthetic.full_size import generate_full_size

    parser = argparse.ArgumentParser(description="write the full-size COCO-WholeBody stand-in")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--out", default="/tmp/wbpose_full", help="dataset root to write")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count (1 = the real sizes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    parser.add_argument("--no-images", action="store_true", help="write only the json files")
    args = parser.parse_args(argv)
    stats = generate_full_size(args.out, args.scale, args.seed, tuple(args.splits), images=not args.no_images)
    print(json.dumps(stats, indent=2))
    return stats


if __name__ == "__main__":
    if "--full-size" in sys.argv[1:]:
        full_size_main(sys.argv[1:])
    else:
        main()

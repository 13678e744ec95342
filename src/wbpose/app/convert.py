"""Convert an MMPose HRNet whole-body checkpoint (0.x or 1.x) into a native wbpose weights file.

Usage::

    wbpose-convert SRC.pth DST.pth [--arch w32|w48|tiny]        (or python scripts/convert.py ...)

The output is ``{'state_dict', 'arch', 'num_keypoints', 'source'}`` with ``TopdownPoseModel`` keys
(``backbone.*``, ``head.final_layer.*``); the arch is inferred from the weights' shapes. The key report
(matched / ignored keys) is printed. A mismatching or unsafe file exits with status 1 and the reason.
"""

from __future__ import annotations

import argparse
import sys

from wbpose.checkpoints.mmpose import convert_mmpose_checkpoint
from wbpose.models.hrnet import ARCHS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, convert, print the key report; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="MMPose checkpoint (.pth)")
    parser.add_argument("dst", help="output file")
    parser.add_argument("--arch", choices=sorted(ARCHS), default=None, help="expected arch (default: inferred)")
    args = parser.parse_args(argv)
    try:
        report = convert_mmpose_checkpoint(args.src, args.dst, arch=args.arch)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.format())
    print(f"wrote {args.dst} (arch {report.checkpoint_arch})")
    return 0

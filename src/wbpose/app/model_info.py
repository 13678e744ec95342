"""Parameters and FLOPs of the pose networks per arch and input size.

Counts on the meta device (no memory, no time) with ``torch.utils.flop_counter``; GMACs are multiply-adds
(= FLOPs / 2), the unit in which HRNet and MMPose papers quote "GFLOPs".

    wbpose-model-info                        # w32, w48 at 256x192 and 384x288, tiny at 128x96
    wbpose-model-info --archs w32 --sizes 256x192      (or python scripts/model_info.py ...)
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from wbpose.models import build_pose_model

DEFAULT = [("w32", "256x192"), ("w32", "384x288"), ("w48", "256x192"), ("w48", "384x288"), ("tiny", "128x96")]


def count(arch: str, size: str, num_keypoints: int = 133) -> tuple[int, int]:
    """``(parameters, FLOPs)`` of one image through ``build_pose_model(arch)`` at ``size`` ("HxW")."""
    h, w = (int(v) for v in size.split("x"))
    with torch.device("meta"):
        model = build_pose_model(arch, num_keypoints).eval()
        x = torch.empty(1, 3, h, w)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return sum(p.numel() for p in model.parameters()), int(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    """Print a markdown table; returns the exit status (0)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="*", default=None, help="w32 w48 tiny (default: the table's rows)")
    parser.add_argument("--sizes", nargs="*", default=None, help="input sizes HxW, e.g. 256x192")
    parser.add_argument("--num-keypoints", type=int, default=133)
    args = parser.parse_args(argv)
    rows = DEFAULT if not (args.archs or args.sizes) else [
        (a, s) for a in (args.archs or ["w32", "w48"]) for s in (args.sizes or ["256x192", "384x288"])
    ]  # fmt: skip
    lines = ["| arch | input | params (M) | GMACs | GFLOPs |", "|---|---|---:|---:|---:|"]
    for arch, size in rows:
        params, flops = count(arch, size, args.num_keypoints)
        lines.append(f"| {arch} | {size} | {params / 1e6:.2f} | {flops / 2e9:.2f} | {flops / 1e9:.2f} |")
    print("\n".join(lines))
    return 0

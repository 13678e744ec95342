"""Export a pose checkpoint to ONNX (dynamic batch) with its metadata, verified with ONNX Runtime.

Usage:
    python scripts/export.py CHECKPOINT --format onnx [--out model.onnx] [--flip-test] [--opset 18]
        [--image-hw 256 192] [--codec msra|dark] [--no-verify] [--atol 1e-4]

CHECKPOINT is anything ``scripts/predict.py`` reads: a Lightning ``.ckpt`` from ``scripts/train.py`` (network and
codec from its config), an MMPose 0.x/1.x ``.pth`` or a converted file (a released file name gives input size and
codec; otherwise pass ``--image-hw`` and ``--codec``).

The file has input ``input`` float32 (batch, 3, H, W) (RGB crops normalised with ImageNet mean/std) and output
``heatmaps`` (batch, 133, H/4, W/4); ``--flip-test`` folds the flip test into the graph (each crop is averaged with
its mirror inside). Its metadata (key ``wbpose``, json) holds input size, mean/std, codec, sigma, DARK kernel, flip
indices and whether the flip test is folded in, so ``scripts/predict.py model.onnx --source ...`` (or
``Predictor.from_onnx``) runs it with ONNX Runtime and no Lightning or Hydra. After export, ONNX Runtime and torch
run the same synthetic crops and the largest heatmap difference must stay within ``--atol``.

Needs the optional extra: ``pip install -e '.[onnx]'`` (``make test`` installs it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="Lightning .ckpt, MMPose .pth or converted file")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    parser.add_argument("--out", default=None, help="output file (default: CHECKPOINT with .onnx / _flip.onnx)")
    parser.add_argument("--flip-test", action="store_true", help="fold the flip test into the graph")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18)")
    parser.add_argument("--image-hw", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="network input size (default: the checkpoint's config or released recipe)")  # fmt: skip
    parser.add_argument("--codec", choices=("msra", "dark"), default=None,
                        help="heatmap decoding (default: the checkpoint's config or released recipe)")  # fmt: skip
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch check")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest allowed heatmap difference")
    parser.add_argument("--verify-crops", type=int, default=4, help="synthetic crops in the check")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 with a message on a bad input)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        print(f"error: checkpoint not found: {checkpoint}", file=sys.stderr)
        return 1
    try:
        from wbpose.inference.export import DEFAULT_OPSET, export_onnx

        report = export_onnx(
            checkpoint,
            args.out,
            flip_test=args.flip_test,
            opset=args.opset or DEFAULT_OPSET,
            image_hw=tuple(args.image_hw) if args.image_hw else None,
            codec=args.codec,
            verify=not args.no_verify,
            atol=args.atol,
            verify_crops=args.verify_crops,
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    meta = report.metadata
    size_mb = report.path.stat().st_size / 2**20
    print(f"{checkpoint} -> {report.path} ({size_mb:.1f} MB, opset {meta.opset}, dynamic batch)")
    print(f"  input {meta.input_hw[0]}x{meta.input_hw[1]}, codec {meta.codec} (sigma {meta.sigma:g}), "
          f"flip test {'folded in' if meta.flip_test else 'not folded in'}, arch {meta.arch}")  # fmt: skip
    if report.max_abs_diff is not None:
        print(f"  ONNX Runtime vs torch on {report.crops} crops: max |heatmap diff| {report.max_abs_diff:.2e} "
              f"(heatmap scale {report.heatmap_scale:.3g}, tolerance {args.atol:g})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

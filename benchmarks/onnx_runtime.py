"""ONNX Runtime vs torch on CPU: HRNet-W32 256x192 forward pass, batch 1 and 8, side by side, same run.

The W32 (random He-initialised weights with BN statistics measured on synthetic crops: speed does not depend on the
values, and calibrated statistics keep activations free of denormals) is exported by
``wbpose.inference.export.export_onnx`` (opset 18, dynamic batch, no flip folded in) and run on the same random
crops by torch (NCHW, the Predictor's layout, and NHWC ``channels_last``, the layout training uses on CPU) and by
ONNX Runtime (CPU provider, ``ORT_ENABLE_ALL``), both with ``--threads`` intra-op threads. The variants are timed in
turns, ``--rounds`` times, and each keeps its fastest round (this machine is shared and noisy); the outputs are
compared too (max |difference|).

Usage:
    python benchmarks/onnx_runtime.py [--batches 1 8] [--rounds 3] [--iters 3] [--threads 2] [--arch w32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# As scripts/predict.py: idle OpenMP workers sleep instead of spinning (on this shared 2-core machine spinning
# workers made every timing scatter by 10x); a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared test helpers

from helpers.fakes import calibrated_model, mmpose_file  # noqa: E402
from wbpose.inference.export import export_onnx  # noqa: E402
from wbpose.inference.onnx_runtime import OnnxPoseNetwork  # noqa: E402


def timed(fn, x, iters: int) -> float:
    """Seconds per call, best of ``iters`` after one warm-up call."""
    fn(x)
    best = np.inf
    for _ in range(iters):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--arch", default="w32", choices=("w32", "tiny"))
    parser.add_argument("--hw", type=int, nargs=2, default=(256, 192))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = args.hw
    model = calibrated_model(args.arch, hw=(h, w))
    with tempfile.TemporaryDirectory() as tmp:
        name = f"hrnet_{args.arch}_coco_wholebody_{h}x{w}.pth" if args.arch != "tiny" else "tiny.pth"
        source = mmpose_file(model, Path(tmp) / name, "1.x")
        start = time.perf_counter()
        report = export_onnx(source, Path(tmp) / "model.onnx", image_hw=(h, w), codec="msra", verify_crops=2)
        export_s = time.perf_counter() - start
        network = OnnxPoseNetwork(report.path, threads=args.threads)
        nhwc = calibrated_model(args.arch, hw=(h, w)).to(memory_format=torch.channels_last)
        nhwc.load_state_dict(model.state_dict())

        def torch_nchw(x):
            with torch.inference_mode():
                return model(x)

        def torch_nhwc(x):
            with torch.inference_mode():
                return nhwc(x.contiguous(memory_format=torch.channels_last))

        variants = {"torch NCHW": torch_nchw, "torch NHWC": torch_nhwc, "ONNX Runtime": network}
        rows = []
        for batch in args.batches:
            x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch))
            best = dict.fromkeys(variants, np.inf)
            for _ in range(args.rounds):
                for label, fn in variants.items():
                    best[label] = min(best[label], timed(fn, x, args.iters))
            diff = float((network(x) - torch_nchw(x)).abs().max())
            rows.append((batch, best, diff))
    load = os.getloadavg()
    print(f"\nHRNet-{args.arch} {h}x{w} forward, CPU, {args.threads} threads; exported + verified in {export_s:.1f} s "
          f"(max |heatmap diff| {report.max_abs_diff:.1e}); OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"ONNX Runtime without spinning; load average {load[0]:.1f}")  # fmt: skip
    print("| batch | torch NCHW img/s | torch NHWC img/s | ONNX Runtime img/s | ORT / torch NCHW | ORT / torch NHWC "
          "| max abs diff |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for batch, best, diff in rows:
        ips = {k: batch / v for k, v in best.items()}
        print(f"| {batch} | {ips['torch NCHW']:.1f} | {ips['torch NHWC']:.1f} | {ips['ONNX Runtime']:.1f} | "
              f"{ips['ONNX Runtime'] / ips['torch NCHW']:.2f}x | {ips['ONNX Runtime'] / ips['torch NHWC']:.2f}x | "
              f"{diff:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()

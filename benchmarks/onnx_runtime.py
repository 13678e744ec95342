"""ONNX Runtime vs torch on CPU: HRNet-W32 256x192 forward pass, batch 1 and 8, side by side, same run.

The W32 (random He-initialised weights with BN statistics measured on synthetic crops: speed does not depend on the
values, and calibrated statistics keep activations free of denormals) is exported by
``wbpose.inference.export.export_onnx`` (opset 18, dynamic batch, no flip folded in) and run on the same random
crops by torch (NCHW, the Predictor's layout, and NHWC ``channels_last``, the layout training uses on CPU) and by
ONNX Runtime (CPU provider, ``ORT_ENABLE_ALL``), both with ``--threads`` intra-op threads. The variants are timed in
turns, ``--rounds`` rounds of ``--iters`` calls after one warm-up call each, and each reports the median call with
the range (``benchmarks/timing.py``; this machine is shared and noisy); the outputs are compared too (max
|difference|).

Usage:
    python benchmarks/onnx_runtime.py [--batches 1 8] [--rounds 3] [--iters 3] [--threads 2] [--arch w32] [--json PATH]
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

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared test helpers

from helpers.fakes import calibrated_model, mmpose_file  # noqa: E402
from wbpose.inference.export import export_onnx  # noqa: E402
from wbpose.inference.onnx_runtime import OnnxPoseNetwork  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import Timing, add_json_argument, measure, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--arch", default="w32", choices=("w32", "tiny"))
    parser.add_argument("--hw", type=int, nargs=2, default=(256, 192))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    add_json_argument(parser)
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
            samples: dict[str, list[float]] = {label: [] for label in variants}
            for _ in range(args.rounds):  # rounds interleave the variants: load from other jobs hits all alike
                for label, fn in variants.items():
                    fn(x)  # one warm-up call per round
                    call = lambda f=fn, x=x: f(x)  # noqa: E731
                    samples[label] += [measure(call, warmup=0, repeats=1).median for _ in range(args.iters)]
            best = {label: Timing.of(v, 1) for label, v in samples.items()}
            diff = float((network(x) - torch_nchw(x)).abs().max())
            rows.append((batch, best, diff))
    load = os.getloadavg()
    print(f"\nHRNet-{args.arch} {h}x{w} forward, CPU, {args.threads} threads; exported + verified in {export_s:.1f} s "
          f"(max |heatmap diff| {report.max_abs_diff:.1e}); OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"ONNX Runtime without spinning; load average {load[0]:.1f}")  # fmt: skip
    columns = ["batch", "torch NCHW img/s", "torch NHWC img/s", "ONNX Runtime img/s", "ORT / torch NCHW",
               "ORT / torch NHWC", "max abs diff"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    cells = []
    for batch, timings, diff in rows:
        ips = {k: t.rate(batch) for k, t in timings.items()}
        ort, nchw, nhwc = ips["ONNX Runtime"], ips["torch NCHW"], ips["torch NHWC"]
        cells.append([str(batch), nchw.text(1), nhwc.text(1), ort.text(1), f"{ort.median / nchw.median:.2f}x",
                      f"{ort.median / nhwc.median:.2f}x", f"{diff:.1e}"])  # fmt: skip
        print("| " + " | ".join(cells[-1]) + " |")
    statistic = rows[0][1]["torch NCHW"].statistic if rows else ""
    notes = [
        f"HRNet-{args.arch} {h}x{w} forward, CPU, {args.threads} threads; exported + verified in {export_s:.1f} s "
        f"(max heatmap diff {report.max_abs_diff:.1e}); ONNX Runtime without spinning.",
        f"img/s: batch / wall seconds of one call, {statistic}, over {args.rounds} interleaved rounds of "
        f"{args.iters} calls (one warm-up call per round); ratios of the medians.",
    ]
    write_json(args.json, "onnx_runtime", columns, cells, notes)


if __name__ == "__main__":
    main()

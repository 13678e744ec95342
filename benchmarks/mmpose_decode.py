"""MMPose 1.3.2's own heatmap decode, timed in the same process as wbpose's, on the same heatmaps.

MMPose is not a dependency and none of its code is in this repository: point ``--mmpose`` at an unpacked MMPose
source tree or wheel (the folder holding ``mmpose/``), e.g.::

    pip download mmpose==1.3.2 --no-deps -d /tmp/mmp && (cd /tmp/mmp && unzip -q mmpose-1.3.2-*.whl)
    python benchmarks/mmpose_decode.py --mmpose /tmp/mmp

Only ``mmpose/codecs/utils/{post_processing,refinement}.py`` are loaded (they need numpy, cv2 and torch, not
mmcv/mmengine). The timed MMPose call is the body of ``MSRAHeatmap.decode`` (1.x), one instance at a time as its
head calls it: ``copy`` + ``get_heatmap_maximum`` + ``refine_keypoints_dark`` (or ``refine_keypoints``).
Everything runs on one thread (torch, OpenCV, OpenBLAS), so the ratio is the per-core speed-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _load_codecs_benchmark() -> types.ModuleType:
    """``benchmarks/codecs.py`` (by path: its file name would shadow the standard library's ``codecs``)."""
    spec = importlib.util.spec_from_file_location("wbpose_codecs_benchmark", Path(__file__).with_name("codecs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_inputs = _load_codecs_benchmark()
RECIPES, make_codec, predicted_heatmaps = _inputs.RECIPES, _inputs.make_codec, _inputs.predicted_heatmaps
timed_pair = _inputs.timed_pair


def load_mmpose_codec_utils(root: Path) -> types.ModuleType:
    """Import ``mmpose.codecs.utils.refinement`` (and its sibling) from ``root`` without running mmpose/__init__."""
    utils = root / "mmpose" / "codecs" / "utils"
    if not (utils / "refinement.py").is_file():
        raise SystemExit(f"{utils / 'refinement.py'} not found: --mmpose must hold an unpacked MMPose 1.x")
    for name in ("mmpose", "mmpose.codecs", "mmpose.codecs.utils"):  # empty parents, so relative imports resolve
        package = types.ModuleType(name)
        package.__path__ = [str(root / Path(*name.split(".")))]
        sys.modules[name] = package
    modules = {}
    for leaf in ("post_processing", "refinement"):
        spec = importlib.util.spec_from_file_location(f"mmpose.codecs.utils.{leaf}", utils / f"{leaf}.py")
        modules[leaf] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules[leaf]
        spec.loader.exec_module(modules[leaf])
    modules["refinement"].get_heatmap_maximum = modules["post_processing"].get_heatmap_maximum
    return modules["refinement"]


def mmpose_decode(mm: types.ModuleType, heatmaps: np.ndarray, stride: float, kernel: int | None) -> np.ndarray:
    """``MSRAHeatmap.decode`` (1.x) of one instance: heatmaps (K, h, w) -> keypoints (K, 2) in crop pixels."""
    heatmaps = heatmaps.copy()
    keypoints, _ = mm.get_heatmap_maximum(heatmaps)
    keypoints = keypoints[None]
    if kernel is None:
        keypoints = mm.refine_keypoints(keypoints, heatmaps)
    else:
        keypoints = mm.refine_keypoints_dark(keypoints, heatmaps, blur_kernel_size=kernel)
    return keypoints[0] * stride


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmpose", type=Path, required=True, help="folder holding an unpacked mmpose/ package")
    parser.add_argument("--batch", type=int, default=256, help="instances per wbpose decode call")
    parser.add_argument("--mm-instances", type=int, default=16, help="instances MMPose decodes per timing")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    mm = load_mmpose_codec_utils(args.mmpose)
    rng = np.random.default_rng(1)
    print(f"ms per 133-keypoint instance, one thread; wbpose batch {args.batch}, MMPose one instance per call;")
    print("calls alternated, speed-up = median of the paired ratios (steady on a noisy machine)")
    print(f"{'recipe':9s}{'codec':8s}{'MMPose':>9s}{'wbpose':>9s}{'speed-up':>10s}{'max |diff| px':>15s}{'p99 px':>9s}")
    for recipe in RECIPES:
        for kind in ("msra", "dark11", "dark17"):
            codec = make_codec(recipe, kind)
            heatmaps = predicted_heatmaps(rng, args.batch, codec)
            sub = heatmaps[: args.mm_instances].numpy()
            kernel = None if kind == "msra" else codec.blur_kernel
            mm_kp = np.stack([mmpose_decode(mm, hm, codec.stride, kernel) for hm in sub])
            ours = codec.decode(heatmaps[: args.mm_instances])[0].numpy()
            diff = np.abs(mm_kp - ours).max(axis=-1).ravel()
            (ours_s, _), mm_s, speedup = timed_pair(
                lambda c=codec, h=heatmaps: c.decode(h),
                lambda c=codec, s=sub, k=kernel: [mmpose_decode(mm, hm, c.stride, k) for hm in s],
                args.batch,
                len(sub),
                args.repeats,
            )
            mm_ms, ours_ms = mm_s * 1e3 / len(sub), ours_s * 1e3 / args.batch
            print(
                f"{recipe:9s}{kind:8s}{mm_ms:9.3f}{ours_ms:9.3f}{speedup:9.1f}x"
                f"{diff.max():15.2e}{np.percentile(diff, 99):9.1e}"
            )
    print("diff: MMPose computes the DARK step in float32, wbpose in float64 (equal to a float64 reference to 1e-4 px)")


if __name__ == "__main__":
    main()

"""What the CRC check of every checkpoint read costs: ``torch.load`` of an HRNet checkpoint vs. the check alone.

Every reader (:func:`wbpose.checkpoints.reader.read_checkpoint`) first runs ``check_checkpoint_file``: the CRC-32 of
every zip member, one more pass over the file. This times, on one thread with the page cache warm (best of
``--repeats``): bare ``torch.load(weights_only=True)``, the check alone, and ``read_checkpoint`` (check + load) of a
freshly initialised model saved as our ``.ckpt`` files store it (``model.``-prefixed state dict).

Usage: ``python benchmarks/checkpoint_read.py [--arch w32] [--repeats 5]`` (W32: 115 MB, W48: 254 MB).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from wbpose.checkpoints.reader import check_checkpoint_file, read_checkpoint
from wbpose.models import build_pose_model


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="w32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.arch}.ckpt"
        model = build_pose_model(args.arch)
        torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
        read_checkpoint(path)  # page cache warm
        out = {
            "size_mb": path.stat().st_size / 1e6,
            "torch_load_s": best_of(lambda: torch.load(path, map_location="cpu", weights_only=True), args.repeats),
            "crc_check_s": best_of(lambda: check_checkpoint_file(path), args.repeats),
            "read_checkpoint_s": best_of(lambda: read_checkpoint(path), args.repeats),
        }
    print(
        f"HRNet-{args.arch} checkpoint, {out['size_mb']:.0f} MB, 1 thread, best of {args.repeats}: "
        f"torch.load {out['torch_load_s'] * 1e3:.0f} ms, CRC check {out['crc_check_s'] * 1e3:.0f} ms, "
        f"read_checkpoint (check + load) {out['read_checkpoint_s'] * 1e3:.0f} ms "
        f"(+{out['crc_check_s'] / out['torch_load_s']:.0%} of the load)"
    )
    return out


if __name__ == "__main__":
    main()

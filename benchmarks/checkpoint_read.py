"""What the CRC check of every checkpoint read costs: ``torch.load`` of an HRNet checkpoint vs. the check alone.

Every reader (:func:`wbpose.checkpoints.reader.read_checkpoint`) first runs ``check_checkpoint_file``: the CRC-32 of
every zip member, one more pass over the file. This times, on one thread with the page cache warm (median of
``--repeats`` after one warm-up call, with the range: ``benchmarks/timing.py``): bare
``torch.load(weights_only=True)``, the check alone, and ``read_checkpoint`` (check + load) of a freshly initialised
model saved as our ``.ckpt`` files store it (``model.``-prefixed state dict).

Usage: ``python benchmarks/checkpoint_read.py [--arch w32] [--repeats 5] [--json PATH]`` (W32: 115 MB, W48: 254 MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from wbpose.checkpoints.reader import check_checkpoint_file, read_checkpoint
from wbpose.models import build_pose_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import add_json_argument, measure, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="w32")
    parser.add_argument("--repeats", type=int, default=5)
    add_json_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.arch}.ckpt"
        model = build_pose_model(args.arch)
        torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
        size_mb = path.stat().st_size / 1e6
        timings = {
            "torch.load(weights_only=True)": lambda: torch.load(path, map_location="cpu", weights_only=True),
            "CRC check alone": lambda: check_checkpoint_file(path),
            "read_checkpoint (check + load)": lambda: read_checkpoint(path),
        }
        timings = {k: measure(fn, warmup=1, repeats=args.repeats) for k, fn in timings.items()}
    load, crc, read = timings.values()
    out = {"size_mb": size_mb, "torch_load_s": load.median, "crc_check_s": crc.median, "read_checkpoint_s": read.median}
    rows = [[k, t.scaled(1e3).text(0), f"{t.median / load.median:.2f}x"] for k, t in timings.items()]
    notes = [f"HRNet-{args.arch} checkpoint, {size_mb:.0f} MB, 1 thread, page cache warm; ms: {load.statistic}."]
    print(notes[0])
    for r in rows:
        print(" | ".join(r))
    write_json(args.json, "checkpoint_read", ["step", "ms", "x torch.load"], rows, notes)
    return out


if __name__ == "__main__":
    main()

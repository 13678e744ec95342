"""The one timing helper of the benchmarks, the run's header, and the json every benchmark can write.

Statistic, the same everywhere: wall clock (``time.perf_counter``), the median of N timed calls after W untimed
warm-up calls, with the spread (min-max) beside it. A benchmark that alternates several calls (a fast path and its
baseline, or a pipeline and its floor) collects the per-call samples itself and builds the same :class:`Timing`
with :meth:`Timing.of`, so that load from other jobs hits both alike.

``--json PATH`` (:func:`add_json_argument`, :func:`write_json`) writes ``{"benchmark", "header", "command",
"columns", "rows"}``; ``benchmarks/render.py`` turns such files into the tables of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median of ``n`` timed calls made after ``warmup`` untimed ones, and their range."""

    median: float
    min: float
    max: float
    n: int
    warmup: int = 0

    @classmethod
    def of(cls, samples: list[float], warmup: int = 0) -> Timing:
        """The statistic of samples collected by the caller (interleaved or paired timings)."""
        if not samples:
            raise ValueError("Timing.of: no samples (repeats must be at least 1)")
        ordered = sorted(samples)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return cls(median, ordered[0], ordered[-1], len(ordered), warmup)

    def scaled(self, factor: float) -> Timing:
        """The same timing in other units (ms: 1e3; per item: 1/items)."""
        return Timing(self.median * factor, self.min * factor, self.max * factor, self.n, self.warmup)

    def rate(self, items: float) -> Timing:
        """Items per second: the median rate, the range inverted (the slowest call gives the lowest rate)."""
        return Timing(items / self.median, items / self.max, items / self.min, self.n, self.warmup)

    def text(self, digits: int = 3) -> str:
        """``median (min-max)`` to ``digits`` decimals, as the tables print it."""
        return f"{self.median:.{digits}f} ({self.min:.{digits}f}-{self.max:.{digits}f})"

    @property
    def statistic(self) -> str:
        return f"median of {self.n} after {self.warmup} warm-up run{'s' if self.warmup != 1 else ''} (min-max)"


def measure(fn: Callable[[], object], *, warmup: int, repeats: int, sync: Callable[[], None] | None = None) -> Timing:
    """Wall seconds per call of ``fn``: ``warmup`` untimed calls, then the median of ``repeats`` timed ones.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs after every call inside the timed region.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure: repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        samples.append(time.perf_counter() - start)
    return Timing.of(samples, warmup)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(*distributions: str) -> str | None:
    """The installed version of the first of ``distributions`` present (pip names), else None."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def environment() -> dict:
    """The run's header: date (UTC), commit (``+dirty`` when the tree has changes), machine, library versions."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    machine = {"cpu": _cpu_model(), "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}
    versions = {"python": platform.python_version()}
    versions["torch"] = _version("torch")
    versions["numpy"] = _version("numpy")
    versions["opencv"] = _version("opencv-python-headless", "opencv-python", "opencv-contrib-python")
    versions["xtcocotools"] = _version("xtcocotools")
    versions["lightning"] = _version("lightning", "pytorch-lightning")
    if versions["torch"]:
        import torch

        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {"date": date, "commit": commit, "machine": machine, "versions": versions}


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the table as json (benchmarks/render.py)")


def write_json(
    path: Path | None, benchmark: str, columns: list[str], rows: list[list], notes: list[str] | None = None
) -> dict:
    """The table as ``{"benchmark", "header", "command", "columns", "rows", "notes"}``; written when ``path`` is set."""
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"{benchmark}: row {row!r} has {len(row)} cells for {len(columns)} columns")
    script = Path(sys.argv[0])
    script = script.resolve().relative_to(ROOT) if script.resolve().is_relative_to(ROOT) else script
    args = [a for a in sys.argv[1:]]
    if "--json" in args:  # the json's own path is not part of what was measured
        i = args.index("--json")
        del args[i : i + 2]
    data = {
        "benchmark": benchmark,
        "header": environment(),
        "command": shlex.join(["python", str(script), *args]),
        "columns": columns,
        "rows": rows,
        "notes": notes or [],
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {path}")
    return data

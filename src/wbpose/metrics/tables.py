"""Per-part result tables in the columns of the MMPose/seed tables, and ``metrics.json`` files.

Columns: Body AP/AR, Foot AP/AR, Face AP/AR, Hand AP/AR (mean of left and right hands), Whole AP/AR.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wbpose.metrics.files import write_atomic

__all__ = [
    "PART_COLUMNS",
    "format_table",
    "mean_std",
    "metrics_table",
    "part_values",
    "read_metrics_json",
    "sweep_table",
    "write_metrics_json",
]

#: (column title, metric part name) in the order of the published tables.
PART_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Body", "body"),
    ("Foot", "foot"),
    ("Face", "face"),
    ("Hand", "hand"),
    ("Whole", "wholebody"),
)


def _header(first: Sequence[str]) -> list[str]:
    cols = [*first]
    for title, _ in PART_COLUMNS:
        cols += [f"{title} AP", f"{title} AR"]
    head = "| " + " | ".join(cols) + " |"
    sep = (
        "|" + "|".join([":---"] * len(first) + [":" + "-" * max(3, len(c) - 2) + ":" for c in cols[len(first) :]]) + "|"
    )
    return [head, sep]


def _cell(value: float, digits: int) -> str:
    """A metric value; -1 (undefined: no ground truth for the part) and NaN print as ``-``."""
    return "-" if math.isnan(value) or value < 0 else f"{value:.{digits}f}"


def part_values(metrics: Mapping[str, Any], prefix: str | None = None) -> list[float]:
    """``[body_ap, body_ar, foot_ap, ..., wholebody_ar]`` from metric keys ``{prefix}/{part}_{ap|ar}``.

    With ``prefix=None`` the prefix is found from the keys (the one ending in ``/wholebody_ap``). A missing
    key gives NaN.
    """
    if prefix is None:
        found = [k.rsplit("/", 1)[0] for k in metrics if k.endswith("/wholebody_ap")]
        prefix = found[0] if found else ""
    pre = f"{prefix}/" if prefix else ""
    return [float(metrics.get(f"{pre}{part}_{stat}", math.nan)) for _, part in PART_COLUMNS for stat in ("ap", "ar")]


def metrics_table(rows: Mapping[str, Mapping[str, Any]], first_column: str = "Model", digits: int = 3) -> str:
    """Markdown table with one row per entry of ``rows`` (name -> metric dict)."""
    lines = _header([first_column])
    for name, metrics in rows.items():
        vals = [_cell(v, digits) for v in part_values(metrics)]
        lines.append("| " + " | ".join([name, *vals]) + " |")
    return "\n".join(lines)


def format_table(metrics: Mapping[str, Any], prefix: str = "", digits: int = 3) -> str:
    """One row of values under the seed-table columns (no name column).

    Args:
        metrics: keys ``[prefix]<part>_<stat>``; values are floats or 0-d tensors.
        prefix: key prefix, e.g. ``"val/"``.
        digits: decimals.
    """
    lines = _header([])
    values = [
        float(metrics.get(f"{prefix}{part}_{stat}", math.nan)) for _, part in PART_COLUMNS for stat in ("ap", "ar")
    ]
    widths = [len(c) for c in lines[0].strip("| ").split(" | ")]
    lines.append("| " + " | ".join(_cell(v, digits).center(w) for v, w in zip(values, widths)) + " |")
    return "\n".join(lines)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) ignoring NaNs."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def sweep_table(groups: Mapping[str, Sequence[Mapping[str, Any]]], digits: int = 3) -> str:
    """Markdown table, one row per group (config), each cell ``mean ± std`` over the group's runs (seeds)."""
    lines = _header(["Config", "Runs"])
    for name, runs in groups.items():
        per_run = [part_values(m) for m in runs]
        cells = []
        for col in range(2 * len(PART_COLUMNS)):
            mean, std = mean_std([r[col] for r in per_run])
            cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if len(per_run) > 1 else f"{mean:.{digits}f}")
        lines.append("| " + " | ".join([name, str(len(runs)), *cells]) + " |")
    return "\n".join(lines)


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any], **extra: Any) -> Path:
    """Write ``{"metrics": {...}, **extra}`` as JSON (floats only in ``metrics``), atomically, with the mode a new
    file gets under the umask (:func:`wbpose.metrics.files.write_atomic`)."""
    payload = {"metrics": {k: float(v) for k, v in metrics.items()}, **extra}
    return write_atomic(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_metrics_json(path: str | Path) -> dict[str, float]:
    """The ``metrics`` dict of a file written by :func:`write_metrics_json`."""
    return dict(json.loads(Path(path).read_text())["metrics"])

"""Per-part result tables in the columns of the MMPose/seed tables, and ``metrics.json`` files.

Columns: Body AP/AR, Foot AP/AR, Face AP/AR, Hand AP/AR (mean of left and right hands, SPEC 5.3), Whole AP/AR.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PART_COLUMNS",
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
    sep = "| " + " | ".join([":---"] * len(first) + [":---:"] * (2 * len(PART_COLUMNS))) + " |"
    return [head, sep]


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
        vals = [f"{v:.{digits}f}" for v in part_values(metrics)]
        lines.append("| " + " | ".join([name, *vals]) + " |")
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
    """Write ``{"metrics": {...}, **extra}`` as JSON (floats only in ``metrics``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"metrics": {k: float(v) for k, v in metrics.items()}, **extra}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_metrics_json(path: str | Path) -> dict[str, float]:
    """The ``metrics`` dict of a file written by :func:`write_metrics_json`."""
    return dict(json.loads(Path(path).read_text())["metrics"])


def collect_multirun(folder: str | Path, ignore_keys: Sequence[str] = ("seed",)) -> dict[str, list[dict[str, float]]]:
    """Group a Hydra multirun folder's jobs by their overrides minus ``ignore_keys``.

    Each job folder needs ``.hydra/overrides.yaml`` and ``metrics.json``; jobs without ``metrics.json`` (failed
    or still running) are skipped with a count in the returned dict's log line.

    Returns:
        ``{"experiment=a codec=dark": [metrics of seed 0, metrics of seed 1, ...], ...}`` in job order.
    """
    import logging

    import yaml

    folder = Path(folder)
    jobs = sorted((p.parent.parent for p in folder.glob("**/.hydra/overrides.yaml")), key=_job_sort_key)
    groups: dict[str, list[dict[str, float]]] = {}
    skipped = 0
    for job in jobs:
        metrics_file = job / "metrics.json"
        if not metrics_file.is_file():
            skipped += 1
            continue
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        kept = [o for o in overrides if o.lstrip("+~").partition("=")[0] not in ignore_keys]
        groups.setdefault(" ".join(kept) or "(defaults)", []).append(read_metrics_json(metrics_file))
    if skipped:
        logging.getLogger(__name__).warning("%d job(s) in %s have no metrics.json (failed or running)", skipped, folder)
    if not jobs:
        raise FileNotFoundError(f"no Hydra jobs (*/.hydra/overrides.yaml) under {folder}")
    return groups


def _job_sort_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, str(path))

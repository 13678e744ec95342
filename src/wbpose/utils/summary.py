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


def collect_multirun(
    folder: str | Path, ignore_keys: Sequence[str] = ("seed",)
) -> tuple[dict[str, list[dict[str, float]]], list[str]]:
    """Group a Hydra multirun folder's jobs by their overrides minus ``ignore_keys``.

    Each job folder needs ``.hydra/overrides.yaml`` and ``metrics.json``; jobs without ``metrics.json`` (failed
    or still running) are skipped and counted in a warning. Rows are named by the overrides that differ between
    jobs (plus ``experiment=``); overrides shared by every job are returned separately.

    Returns:
        ``(groups, common)``: ``{"codec=dark": [metrics of seed 0, metrics of seed 1, ...], ...}`` in job order,
        and the overrides common to all jobs.
    """
    import logging

    import yaml

    folder = Path(folder)
    jobs = sorted((p.parent.parent for p in folder.glob("**/.hydra/overrides.yaml")), key=_job_sort_key)
    if not jobs:
        raise FileNotFoundError(f"no Hydra jobs (*/.hydra/overrides.yaml) under {folder}")
    runs: list[tuple[list[str], dict[str, float]]] = []
    for job in jobs:
        metrics_file = job / "metrics.json"
        if not metrics_file.is_file():
            continue
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        kept = [o for o in overrides if _override_key(o) not in ignore_keys]
        runs.append((kept, read_metrics_json(metrics_file)))
    if len(runs) < len(jobs):
        logging.getLogger(__name__).warning(
            "%d of %d job(s) in %s have no metrics.json (failed or running)", len(jobs) - len(runs), len(jobs), folder
        )
    common = [o for o in runs[0][0] if all(o in kept for kept, _ in runs)] if runs else []
    groups: dict[str, list[dict[str, float]]] = {}
    for kept, metrics in runs:
        name = " ".join(o for o in kept if o not in common or _override_key(o) == "experiment")
        groups.setdefault(name or "(all jobs)", []).append(metrics)
    return groups, common


def _override_key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def _job_sort_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, str(path))

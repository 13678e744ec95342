"""Hydra multirun folders -> per-configuration result groups and the best trial (``wbpose-summarize``).

Grid sweeps (Hydra's basic sweeper) and Optuna sweeps (hydra-optuna-sweeper) are read alike: every job folder has
``.hydra/overrides.yaml`` and ``metrics.json``; an Optuna sweep also leaves ``optimization_results.yaml`` (its
best parameters and value) in the multirun folder.

Each job folder holds ``.hydra/overrides.yaml`` and the ``metrics.json`` written by training; jobs are grouped by
their overrides minus the seed, so each group's rows are the seeds of one configuration.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import yaml

from wbpose.app.config import parse_override
from wbpose.metrics.tables import read_metrics_json, sweep_table

log = logging.getLogger(__name__)

__all__ = ["best_trial", "collect_multirun", "main"]


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
        log.warning(
            "%d of %d job(s) in %s have no metrics.json (failed or running)", len(jobs) - len(runs), len(jobs), folder
        )
    common = [o for o in runs[0][0] if all(o in kept for kept, _ in runs)] if runs else []
    groups: dict[str, list[dict[str, float]]] = {}
    for kept, metrics in runs:
        name = " ".join(o for o in kept if o not in common or _override_key(o) == "experiment")
        groups.setdefault(name or "(all jobs)", []).append(metrics)
    return groups, common


def _override_key(override: str) -> str:
    return parse_override(override)[0]


def _job_sort_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, str(path))


def best_trial(folder: str | Path, metric: str = "val/wholebody_ap") -> dict[str, object] | None:
    """The best job of a sweep: ``{"overrides", "value", "source"}``.

    Optuna's own ``optimization_results.yaml`` when present (``source="optuna"``), else the job with the highest
    ``metric`` in its ``metrics.json`` (``source="metrics.json"``); ``None`` when no job has the metric.
    """
    folder = Path(folder)
    results = folder / "optimization_results.yaml"
    if results.is_file():
        data = yaml.safe_load(results.read_text()) or {}
        params = data.get("best_params") or {}
        return {
            "overrides": [f"{k}={v}" for k, v in params.items()],
            "value": float(data["best_value"]),
            "source": "optuna",
        }
    best: dict[str, object] | None = None
    for overrides_file in folder.glob("**/.hydra/overrides.yaml"):
        job = overrides_file.parent.parent
        if not (job / "metrics.json").is_file():
            continue
        value = read_metrics_json(job / "metrics.json").get(metric)
        if value is not None and (best is None or value > best["value"]):  # type: ignore[operator]
            overrides = yaml.safe_load(overrides_file.read_text()) or []
            best = {"overrides": list(overrides), "value": float(value), "source": "metrics.json"}
    return best


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally write) the table; returns the exit status (0)."""
    parser = argparse.ArgumentParser(
        description="Summarise a Hydra multirun (grid or Optuna) in the seed-table columns"
    )
    parser.add_argument("folder", type=Path, help="a multirun folder (logs/train/multiruns/<date_time>)")
    parser.add_argument("--ignore", nargs="*", default=["seed"], help="override keys averaged over (default: seed)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--metric", default="val/wholebody_ap", help="metric of the best trial")
    args = parser.parse_args(argv)
    groups, common = collect_multirun(args.folder, ignore_keys=args.ignore)
    table = sweep_table(groups)
    if common:
        table += "\n\nCommon overrides: " + " ".join(f"`{o}`" for o in common)
    best = best_trial(args.folder, args.metric)
    if best is not None:
        overrides = " ".join(f"`{o}`" for o in best["overrides"]) or "(no overrides)"
        table += f"\n\nBest trial ({best['source']}): {args.metric} = {best['value']:.4f} with {overrides}"
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return 0

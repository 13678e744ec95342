"""Hydra multirun folders -> per-configuration result groups (``scripts/summarize_sweep.py``).

Each job folder holds ``.hydra/overrides.yaml`` and the ``metrics.json`` written by training; jobs are grouped by
their overrides minus the seed, so each group's rows are the seeds of one configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import yaml

from wbpose.app.config import parse_override
from wbpose.metrics.tables import read_metrics_json

log = logging.getLogger(__name__)

__all__ = ["collect_multirun"]


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

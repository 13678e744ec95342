"""Hydra multirun folders -> per-configuration result groups, the best trial, a CSV and a plot (``wbpose-summarize``).

Grid sweeps (Hydra's basic sweeper) and Optuna sweeps (hydra-optuna-sweeper) are read alike, whichever launcher
ran them (the basic one, or submitit's on one machine or on SLURM): every job folder has ``.hydra/overrides.yaml``
and the ``metrics.json`` written by training; an Optuna sweep also leaves ``optimization_results.yaml`` (its best
parameters and value) in the multirun folder. Hidden folders (submitit's ``.submitit/`` with its logs and pickles)
are not jobs.

Jobs are grouped by their overrides minus the seed, so each group's rows are the seeds of one configuration.
``wbpose-summarize <multirun dir>`` prints the table and writes, into the multirun folder (or ``--out-dir``):

- ``summary.md``: the table (mean ± std over seeds), the overrides common to all jobs, the best trial;
- ``summary.csv``: one row per finished job: its job folder, the swept values, the ten per-part metrics and all
  its overrides (values as the sweeper gave them);
- ``summary.png``: each part's AP against the swept value, mean with the seed spread (± std) as error bars
  (:func:`wbpose.metrics.plots.draw_sweep_plot`).

Numbers in the table, the plot and the best-trial line are rounded to significant digits (``optim.lr=0.0006554``),
never so far that two configurations read the same.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from wbpose.app.config import parse_override
from wbpose.metrics.files import write_atomic
from wbpose.metrics.plots import PART_PLOT_COLORS, Panel, Series, draw_sweep_plot, format_number, write_png
from wbpose.metrics.tables import PART_COLUMNS, mean_std, part_values, read_metrics_json, sweep_table

log = logging.getLogger(__name__)

__all__ = [
    "JobResult",
    "best_trial",
    "collect_jobs",
    "collect_multirun",
    "display_override",
    "main",
    "plot_sweep",
    "runs_csv",
    "summary_text",
    "swept_keys",
]

#: Override keys left out of the plot's title (where things are, not what was trained).
_NOT_IN_TITLE = ("paths.", "hydra.", "data.data_root", "ckpt_path", "extras.", "trainer.enable_")
#: Panels of the plot at most (one per combination of the swept values beside the x axis); beyond, one panel.
MAX_PANELS = 6


@dataclass
class JobResult:
    """A finished job of a multirun: its folder (relative to the multirun folder), overrides and metrics."""

    job: str
    overrides: list[str]
    metrics: dict[str, float]


def _job_folders(folder: Path) -> list[Path]:
    """Folders with ``.hydra/overrides.yaml`` under ``folder`` in job order; hidden ones (``.submitit``) left out."""
    jobs = []
    for overrides_file in folder.glob("**/.hydra/overrides.yaml"):
        job = overrides_file.parent.parent
        if not any(part.startswith(".") for part in job.relative_to(folder).parts):
            jobs.append(job)
    return sorted(jobs, key=_job_sort_key)


def _read_overrides(job: Path) -> list[str]:
    path = job / ".hydra" / "overrides.yaml"
    try:
        overrides = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not a YAML list of overrides ({error})") from None
    if not isinstance(overrides, list):
        raise ValueError(f"{path}: not a YAML list of overrides (found {type(overrides).__name__})")
    return [str(o) for o in overrides]


def collect_jobs(folder: str | Path) -> list[JobResult]:
    """Every finished job (with ``metrics.json``) of a multirun folder, in job order.

    Jobs without ``metrics.json`` (failed or still running) are skipped and named in a warning (with the folder of
    submitit's logs when there is one).

    Raises:
        FileNotFoundError: no job folder (``*/.hydra/overrides.yaml``) under ``folder``.
    """
    folder = Path(folder)
    jobs = _job_folders(folder)
    if not jobs:
        raise FileNotFoundError(f"no Hydra jobs (*/.hydra/overrides.yaml) under {folder}")
    done, missing = [], []
    for job in jobs:
        metrics_file = job / "metrics.json"
        if not metrics_file.is_file():
            missing.append(job.relative_to(folder).as_posix() or ".")
            continue
        rel = job.relative_to(folder).as_posix() or "."
        done.append(JobResult(rel, _read_overrides(job), read_metrics_json(metrics_file)))
    if missing:
        logs = folder / ".submitit"
        where = f"; submitit's logs: {logs}" if logs.is_dir() else ""
        log.warning(
            "%d of %d job(s) in %s have no metrics.json (failed or running): %s%s",
            len(missing), len(jobs), folder, ", ".join(missing), where,
        )  # fmt: skip
    return done


def display_override(override: str, digits: int = 4) -> str:
    """``key=value`` with a long decimal value rounded to ``digits`` significant digits (``optim.lr=0.0006554``);
    anything else as given."""
    key, value = parse_override(override)
    rounded = _round_value(value, digits)
    return override if rounded == value else f"{override[: len(override) - len(value)]}{rounded}"


def _round_value(value: str, digits: int = 4) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    if not math.isfinite(number) or value.strip().lstrip("+-").isdigit():
        return value
    rounded = format_number(number, digits)
    return rounded if len(rounded) < len(value) else value


def _unique_display(names: Sequence[str], digits: int = 4) -> dict[str, str]:
    """Display form of each name (its overrides rounded), with more digits where rounding would merge two."""
    for d in (digits, digits + 2, digits + 4):
        shown = {n: " ".join(display_override(o, d) for o in n.split(" ")) for n in names}
        if len(set(shown.values())) == len(shown):
            return shown
    return {n: n for n in names}


def collect_multirun(
    folder: str | Path, ignore_keys: Sequence[str] = ("seed",)
) -> tuple[dict[str, list[dict[str, float]]], list[str]]:
    """Group a Hydra multirun folder's jobs by their overrides minus ``ignore_keys``.

    Each job folder needs ``.hydra/overrides.yaml`` and ``metrics.json``; jobs without ``metrics.json`` (failed
    or still running) are skipped and named in a warning. Rows are named by the overrides that differ between
    jobs (plus ``experiment=``), long decimals rounded (:func:`display_override`); overrides shared by every job
    are returned separately.

    Returns:
        ``(groups, common)``: ``{"codec=dark": [metrics of seed 0, metrics of seed 1, ...], ...}`` in job order,
        and the overrides common to all jobs.
    """
    runs = collect_jobs(folder)
    kept = [[o for o in run.overrides if _override_key(o) not in ignore_keys] for run in runs]
    common = [o for o in kept[0] if all(o in k for k in kept)] if runs else []
    raw: dict[str, list[dict[str, float]]] = {}
    for overrides, run in zip(kept, runs):
        name = " ".join(o for o in overrides if o not in common or _override_key(o) == "experiment")
        raw.setdefault(name or "(all jobs)", []).append(run.metrics)
    shown = _unique_display(list(raw))
    return {shown[name]: metrics for name, metrics in raw.items()}, common


def swept_keys(runs: Sequence[JobResult]) -> list[str]:
    """The override keys whose value differs between the jobs, in the order they first appear."""
    keys: list[str] = []
    for run in runs:
        for o in run.overrides:
            key = _override_key(o)
            if key not in keys:
                keys.append(key)
    values = [{_override_key(o): parse_override(o)[1] for o in run.overrides} for run in runs]
    return [k for k in keys if len({v.get(k) for v in values}) > 1]


def _override_key(override: str) -> str:
    return parse_override(override)[0]


def _job_sort_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, str(path))


def _metric_names() -> list[str]:
    return [f"{part}_{stat}" for _, part in PART_COLUMNS for stat in ("ap", "ar")]


def runs_csv(runs: Sequence[JobResult], keys: Sequence[str]) -> str:
    """CSV text, one row per job: ``job``, the values of ``keys`` (as the sweeper gave them), the ten per-part
    metrics (6 significant digits; empty where undefined) and all the job's overrides."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["job", *keys, *_metric_names(), "overrides"])
    for run in runs:
        values = {_override_key(o): parse_override(o)[1] for o in run.overrides}
        metrics = ["" if math.isnan(v) or v < 0 else f"{v:.6g}" for v in part_values(run.metrics)]
        writer.writerow([run.job, *(values.get(k, "") for k in keys), *metrics, " ".join(run.overrides)])
    return out.getvalue()


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def plot_sweep(
    runs: Sequence[JobResult], ignore_keys: Sequence[str] = ("seed",), x_key: str | None = None
) -> np.ndarray:
    """The sweep's picture (RGB uint8 array): each part's AP against ``x_key`` (default: the first swept key other
    than ``ignore_keys``), mean ± std over the runs of a configuration (its seeds) as error bars; one panel per
    combination of the other swept values (at most :data:`MAX_PANELS`, else one panel of unconnected points)."""
    if not runs:
        raise ValueError("no finished job to plot")
    keys = [k for k in swept_keys(runs) if k not in ignore_keys]
    if x_key is not None and x_key not in keys:
        raise ValueError(f"--x {x_key}: not a swept key of this multirun (swept: {', '.join(keys) or 'none'})")
    x_key = x_key or (keys[0] if keys else None)
    others = [k for k in keys if k != x_key]
    values = [{_override_key(o): parse_override(o)[1] for o in run.overrides} for run in runs]
    # configurations (all swept values but the ignored ones) in job order, each with its runs
    configs: dict[tuple[str, ...], list[int]] = {}
    for i, v in enumerate(values):
        configs.setdefault(tuple(v.get(k, "") for k in keys), []).append(i)
    x_of = {c: (c[keys.index(x_key)] if x_key else "(all jobs)") for c in configs}
    panel_of = {c: tuple(c[keys.index(k)] for k in others) for c in configs}
    panel_names = list(dict.fromkeys(panel_of.values()))
    connect = len(panel_names) <= MAX_PANELS
    if connect:
        x_texts = list(dict.fromkeys(x_of.values()))
        position = {c: x_texts.index(x_of[c]) for c in configs}
    else:  # too many combinations: every configuration its own point, not joined
        x_texts = [x_of[c] for c in configs]
        position = {c: i for i, c in enumerate(configs)}
        panel_of = {c: () for c in configs}
        panel_names = [()]
    numeric = all(_is_number(x) for x in x_texts)
    shown = [_round_value(x, 3) for x in x_texts]
    shared = [o for o in runs[0].overrides if all(o in run.overrides for run in runs)]
    context = " ".join(display_override(o, 3) for o in shared if not _override_key(o).startswith(_NOT_IN_TITLE))
    panels = []
    for name in panel_names:
        title = "  ".join(f"{k}={_round_value(v, 3)}" for k, v in zip(others, name)) or context
        if not connect:
            title = f"every configuration (also varying: {', '.join(others)})"
        if len(title) > 64:
            title = title[:61] + "..."
        series = []
        for _, part in PART_COLUMNS:
            mean, spread = [math.nan] * len(x_texts), [math.nan] * len(x_texts)
            for c, members in configs.items():
                if panel_of[c] != name:
                    continue
                aps = [runs[i].metrics.get(_metric_key(runs[i].metrics, part), math.nan) for i in members]
                m, s = mean_std([a if a >= 0 else math.nan for a in aps])
                mean[position[c]], spread[position[c]] = m, s
            title_part = "Whole" if part == "wholebody" else part.capitalize()
            series.append(Series(f"{title_part} AP", PART_PLOT_COLORS[part], mean, spread))
        panels.append(Panel(title, series))
    sizes = sorted({len(m) for m in configs.values()})
    spread_of = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    note = (
        f"points: mean over {spread_of} runs ({', '.join(ignore_keys)}); error bars: one standard deviation each side"
        if sizes[-1] > 1
        else "one run per point (no seed spread)"
    )
    return draw_sweep_plot(
        shown,
        panels,
        x_title=x_key or "",
        x_values=[float(x) for x in x_texts] if numeric and x_key else None,
        connect=connect,
        note=note,
    )


def _metric_key(metrics: dict[str, float], part: str) -> str:
    prefix = next((k.rsplit("/", 1)[0] + "/" for k in metrics if k.endswith("/wholebody_ap")), "")
    return f"{prefix}{part}_ap"


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
    for job in _job_folders(folder):
        if not (job / "metrics.json").is_file():
            continue
        value = read_metrics_json(job / "metrics.json").get(metric)
        if value is not None and (best is None or value > best["value"]):  # type: ignore[operator]
            best = {"overrides": _read_overrides(job), "value": float(value), "source": "metrics.json"}
    return best


def summary_text(folder: str | Path, ignore_keys: Sequence[str] = ("seed",), metric: str = "val/wholebody_ap") -> str:
    """The markdown table, the common overrides and the best trial, as ``wbpose-summarize`` prints them."""
    groups, common = collect_multirun(folder, ignore_keys=ignore_keys)
    table = sweep_table(groups)
    if common:
        table += "\n\nCommon overrides: " + " ".join(f"`{display_override(o)}`" for o in common)
    best = best_trial(folder, metric)
    if best is not None:
        overrides = " ".join(f"`{display_override(str(o))}`" for o in best["overrides"]) or "(no overrides)"  # type: ignore[attr-defined]
        table += f"\n\nBest trial ({best['source']}): {metric} = {best['value']:.4f} with {overrides}"
    return table


def main(argv: list[str] | None = None) -> int:
    """Print the table and write ``summary.md``, ``summary.csv`` and ``summary.png``; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="Summarise a Hydra multirun (grid or Optuna, any launcher): a markdown table in the seed-table "
        "columns (mean ± std over seeds), a CSV of every job and a plot of each part's AP against the swept value"
    )
    parser.add_argument("folder", type=Path, help="a multirun folder (logs/train/multiruns/<date_time>_<id>)")
    parser.add_argument("--ignore", nargs="*", default=["seed"], help="override keys averaged over (default: seed)")
    parser.add_argument("--metric", default="val/wholebody_ap", help="metric of the best trial")
    parser.add_argument("--x", default=None, help="swept key on the plot's x axis (default: the first swept key)")
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="where summary.md/.csv/.png go (default: the multirun folder)"
    )
    parser.add_argument("--out", type=Path, default=None, help="the table's file (default: <out-dir>/summary.md)")
    parser.add_argument("--csv", type=Path, default=None, help="the CSV's file (default: <out-dir>/summary.csv)")
    parser.add_argument("--plot", type=Path, default=None, help="the PNG's file (default: <out-dir>/summary.png)")
    parser.add_argument("--no-files", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder (give a multirun folder: logs/train/multiruns/<date_time>_<id>)")
    table = summary_text(args.folder, ignore_keys=args.ignore, metric=args.metric)
    print(table)
    if args.no_files:
        return 0
    out_dir = args.out_dir or args.folder
    runs = collect_jobs(args.folder)
    if not runs:
        print(f"no job under {args.folder} has a metrics.json yet: no CSV or plot written", file=sys.stderr)
        return 1
    keys = [k for k in swept_keys(runs) if k not in args.ignore] + [k for k in args.ignore if k in swept_keys(runs)]
    image = plot_sweep(runs, ignore_keys=args.ignore, x_key=args.x)
    written = [
        write_atomic(args.out or out_dir / "summary.md", (table + "\n").encode()),
        write_atomic(args.csv or out_dir / "summary.csv", runs_csv(runs, keys).encode()),
        write_png(args.plot or out_dir / "summary.png", image),
    ]
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0

"""Summarise a Hydra multirun as a markdown table in the seed table's columns, mean ± std over seeds.

Usage::

    python scripts/summarize_sweep.py logs/train/multiruns/<date_time> [--ignore seed] [--out table.md]

One row per distinct set of overrides (the ``--ignore`` keys, ``seed`` by default, removed), named by the
overrides that differ between jobs; each cell is the mean ± sample std over that row's jobs. Overrides shared by
all jobs are listed under the table. Reads each job's ``.hydra/overrides.yaml`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wbpose.app.sweep import collect_multirun
from wbpose.metrics.tables import sweep_table


def main(argv: list[str] | None = None) -> str:
    """Print (and optionally write) the table; returns it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a multirun folder (logs/train/multiruns/<date_time>)")
    parser.add_argument("--ignore", nargs="*", default=["seed"], help="override keys averaged over (default: seed)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    groups, common = collect_multirun(args.folder, ignore_keys=args.ignore)
    table = sweep_table(groups)
    if common:
        table += "\n\nCommon overrides: " + " ".join(f"`{o}`" for o in common)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()

"""Summarise a Hydra multirun as a markdown table in the seed table's columns, mean ± std over seeds.

Usage::

    python scripts/summarize_sweep.py logs/train/multiruns/<date_time> [--ignore seed] [--out table.md]

One row per distinct set of overrides (the ``--ignore`` keys, ``seed`` by default, removed), named by the
overrides that differ between jobs; each cell is the mean ± sample std over that row's jobs. Overrides shared by
all jobs are listed under the table, then the best trial (Optuna's ``optimization_results.yaml`` when the sweep
was an Optuna search, else the job with the highest ``--metric``). Reads each job's ``.hydra/overrides.yaml`` and
``metrics.json``: grid and Optuna sweeps alike.
"""

from wbpose.app.sweep import main

if __name__ == "__main__":
    main()

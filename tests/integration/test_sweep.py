"""Hydra multiruns on generated data, summarised by wbpose-summarize (scripts/summarize.py): two seeds through
submitit's local launcher (the path a SLURM sweep takes, side by side), an Optuna search through Hydra's basic one."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2

from helpers.extras import require_extra
from wbpose.app.config import project_root
from wbpose.app.sweep import collect_multirun


def test_two_seed_multirun_and_summary(synthetic_root, tmp_path) -> None:
    require_extra("hydra_plugins.hydra_submitit_launcher", "slurm")
    sweep_dir = tmp_path / "sweep"
    cmd = [
        sys.executable,
        str(project_root() / "scripts" / "train.py"),
        "-m",
        "hydra/launcher=submitit_local",
        "model=hrnet_tiny",
        "data=synthetic",
        f"data.data_root={synthetic_root}",
        "data.num_workers=0",
        "data.batch_size=8",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.check_val_every_n_epoch=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.rich_progress_bar=null",
        "module.num_vis_images=0",
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two jobs at once on two cores
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (sweep_dir / "0" / "metrics.json").is_file() and (sweep_dir / "1" / "metrics.json").is_file()
    assert len(list((sweep_dir / ".submitit").glob("*/*_log.out"))) == 2  # two submitit jobs, side by side

    groups, common = collect_multirun(sweep_dir)
    assert list(groups) == ["(all jobs)"] and len(groups["(all jobs)"]) == 2  # one config, two seeds
    assert "model=hrnet_tiny" in common and not any(o.startswith("seed") for o in common)

    out = tmp_path / "table.md"
    script = project_root() / "scripts" / "summarize.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(sweep_dir), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().strip().splitlines()
    assert lines[0].startswith("| Config | Runs | Body AP | Body AR | Foot AP")
    assert "Whole AP | Whole AR |" in lines[0]
    assert lines[2].startswith("| (all jobs) | 2 |") and "±" in lines[2]
    assert lines[-3].startswith("Common overrides:") and "seed" not in lines[-3]
    assert lines[-1].startswith("Best trial (metrics.json): val/wholebody_ap = ") and "seed=" in lines[-1]
    rows = (sweep_dir / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("job,seed,body_ap,body_ar,") and [r.split(",")[:2] for r in rows[1:]] == [
        ["0", "0"], ["1", "1"]
    ]  # fmt: skip
    assert cv2.imread(str(sweep_dir / "summary.png")) is not None


def test_optuna_sweep_without_m_runs_three_trials(synthetic_root, tmp_path) -> None:
    """hparams_search=optuna is a multirun by itself (hydra.mode: MULTIRUN, no -m) and reports its best trial."""
    sweep_dir = tmp_path / "optuna"
    cmd = [
        sys.executable,
        str(project_root() / "scripts" / "train.py"),
        "hparams_search=optuna",
        "experiment=demo",
        "debug=limit",
        f"data.data_root={synthetic_root}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.rich_progress_bar=null",
        "extras.print_config=false",
        "module.num_vis_images=0",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = sorted(p.parent.parent.name for p in sweep_dir.glob("*/.hydra/overrides.yaml"))
    assert jobs == ["0", "1", "2"]
    assert all((sweep_dir / job / "metrics.json").is_file() for job in jobs)
    trial_lrs = {next(o for o in (sweep_dir / j / ".hydra" / "overrides.yaml").read_text().split() if "optim.lr" in o)
                 for j in jobs}  # fmt: skip
    assert len(trial_lrs) == 3  # three sampled learning rates, not one job

    script = project_root() / "scripts" / "summarize.py"
    proc = subprocess.run([sys.executable, str(script), str(sweep_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    best = proc.stdout.strip().splitlines()[-1]
    assert best.startswith("Best trial (optuna): val/wholebody_ap = ") and "optim.lr=" in best
    assert (sweep_dir / "optimization_results.yaml").is_file()


def test_summary_groups_by_overrides_minus_seed(tmp_path) -> None:
    from wbpose.metrics.tables import sweep_table, write_metrics_json

    values = {("msra", 0): 0.5, ("msra", 1): 0.7, ("dark", 0): 0.6, ("dark", 1): 0.6}
    for num, ((codec, seed), ap) in enumerate(values.items()):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- experiment=demo\n- codec={codec}\n- seed={seed}\n")
        write_metrics_json(job / "metrics.json", {"val/wholebody_ap": ap, "val/body_ap": ap / 2})
    (tmp_path / "9" / ".hydra").mkdir(parents=True)  # a failed job: no metrics.json
    (tmp_path / "9" / ".hydra" / "overrides.yaml").write_text("- codec=msra\n- seed=2\n")
    groups, common = collect_multirun(tmp_path)
    assert list(groups) == ["experiment=demo codec=msra", "experiment=demo codec=dark"]
    assert common == ["experiment=demo"]
    table = sweep_table(groups)
    msra_row = table.splitlines()[2].split(" | ")
    assert msra_row[1] == "2" and msra_row[2] == "0.300 ± 0.071" and msra_row[10] == "0.600 ± 0.141"
    assert "nan" in msra_row[4]  # foot AP absent from these metrics

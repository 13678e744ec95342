"""A two-job sweep (two seeds, tiny model, synthetic data) logged to TensorBoard, wandb (offline) and MLflow, read
back with each tool's own reader: TensorBoard's HParams data, wandb's run summary and table, MLflow's client; and
the run names: the swept override only, although the command line holds folders, devices and loggers too."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.dashboards import tensorboard_hparams, tensorboard_scalars, wandb_run, wandb_summary
from helpers.extras import require_extra
from wbpose.app.config import project_root
from wbpose.engine.dashboards import part_metric_names, seed_table_columns
from wbpose.metrics.tables import part_values, read_metrics_json

SEEDS = (0, 1)
EPOCHS = 2
HAVE_MLFLOW = importlib.util.find_spec("mlflow") is not None
METRICS = [*part_metric_names("val"), "best/val/wholebody_ap", "best/epoch"]


@pytest.fixture(scope="module")
def sweep(synthetic_root, tmp_path_factory) -> Path:
    """The sweep folder of ``-m seed=0,1`` with the dashboards' loggers (MLflow where installed)."""
    work = tmp_path_factory.mktemp("dashboards")
    sweep_dir = work / "sweep"
    loggers = "tensorboard,wandb,mlflow" if HAVE_MLFLOW else "tensorboard,wandb"
    cmd = [
        sys.executable, str(project_root() / "scripts" / "train.py"), "-m",
        "model=hrnet_tiny", "data=synthetic", f"data.data_root={synthetic_root}", "data.num_workers=0",
        "data.batch_size=8", "data.val_batch_size=16", "trainer=cpu", f"trainer.max_epochs={EPOCHS}",
        "trainer.limit_train_batches=1", "trainer.check_val_every_n_epoch=1", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "callbacks.rich_progress_bar=null",
        "module.num_vis_images=0", "extras.print_config=false", f"logger=[{loggers}]",
        f"paths.log_dir={work / 'logs'}", f"seed={','.join(map(str, SEEDS))}", f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "dashboard summary" not in proc.stderr  # no logger refused what it was given
    return sweep_dir


def _job(sweep: Path, seed: int) -> Path:
    return sweep / str(SEEDS.index(seed))


def test_tensorboard_hparams_of_the_sweep(sweep) -> None:
    from tensorboard.plugins.hparams import api_pb2

    experiments = []
    for seed in SEEDS:
        folder = _job(sweep, seed) / "tensorboard"
        hparams, scalars = tensorboard_hparams(folder), tensorboard_scalars(folder)
        start = hparams["session_start_info"].hparams
        assert start["seed"].number_value == seed
        assert start["input"].string_value == "128x96" and start["model"].string_value == "tiny"
        assert start["codec"].string_value == "msra" and start["lr"].number_value == pytest.approx(5e-4)
        assert start["batch_size"].number_value == 8 and start["experiment"].string_value == "null"
        experiment = hparams["experiment"]
        assert [m.name.tag for m in experiment.metric_infos] == METRICS
        assert {h.name for h in experiment.hparam_infos} == set(start)
        assert api_pb2.Status.Name(hparams["session_end_info"].status) == "STATUS_SUCCESS"
        experiments.append(experiment)
        # the dashboard's metrics are scalars of the same run; the last value is the final validation's
        assert set(METRICS) <= set(scalars)
        final = read_metrics_json(_job(sweep, seed) / "metrics.json")
        for name in part_metric_names("val"):
            assert scalars[name][-1][1] == pytest.approx(final[name], abs=1e-6), name
        during_fit = [v for _, v in scalars["val/wholebody_ap"][:EPOCHS]]
        assert len(scalars["val/wholebody_ap"]) == EPOCHS + 1  # each epoch, then the best checkpoint's
        assert scalars["best/epoch"][-1][1] == during_fit.index(max(during_fit))
        assert scalars["best/val/wholebody_ap"][-1][1] == pytest.approx(max(during_fit))
    assert experiments[0] == experiments[1]  # one set of columns for every run of the sweep


def test_wandb_summary_table_and_names(sweep) -> None:
    for seed in SEEDS:
        job = _job(sweep, seed)
        (run_dir,) = (job / "wandb").glob("offline-run-*")
        summary, run = wandb_summary(run_dir), wandb_run(run_dir)
        assert run.display_name == f"seed={seed}"  # not paths.log_dir=..., logger=..., trainer=cpu, ...
        assert run.run_group == sweep.name
        scalars = tensorboard_scalars(job / "tensorboard")  # the same values, seen by the other logger
        logged = [v for _, v in scalars["val/wholebody_ap"]]
        final = read_metrics_json(job / "metrics.json")
        assert summary["val/wholebody_ap"]["max"] == pytest.approx(max(logged), abs=1e-6)
        assert summary["val/wholebody_ap"]["last"] == pytest.approx(final["val/wholebody_ap"], abs=1e-6)
        during_fit = logged[:EPOCHS]
        assert summary["best/epoch"] == during_fit.index(max(during_fit))
        assert summary["best/val/wholebody_ap"] == pytest.approx(max(during_fit), abs=1e-6)
        assert summary["seed_table._type"] == "table-file" and summary["seed_table.nrows"] == 1
        table = json.loads((run_dir / "files" / summary["seed_table.path"]).read_text())
        assert table["columns"] == ["Run", *seed_table_columns()]
        (row,) = table["data"]
        assert row[0] == f"seed={seed}"
        expected = [None if v < 0 or math.isnan(v) else v for v in part_values(final, "val")]
        assert row[1:] == pytest.approx(expected, abs=1e-6)


def test_mlflow_run_read_by_its_client(sweep, tmp_path) -> None:
    mlflow = require_extra("mlflow", "mlflow")
    for seed in SEEDS:
        job = _job(sweep, seed)
        client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{job / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("wbpose")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.run_name == f"seed={seed}" and run.info.status == "FINISHED"
        assert run.data.params["seed"] == str(seed) and run.data.params["input/image_hw"] == "[128, 96]"
        final = read_metrics_json(job / "metrics.json")
        for name in part_metric_names("val"):
            assert run.data.metrics[name] == pytest.approx(final[name], abs=1e-6), name
        assert {"best/val/wholebody_ap", "best/epoch"} <= set(run.data.metrics)
        history = client.get_metric_history(run.info.run_id, "val/wholebody_ap")
        assert len(history) == EPOCHS + 1
        table = Path(client.download_artifacts(run.info.run_id, "seed_table.md", str(tmp_path))).read_text()
        assert "| Run | Body AP | Body AR |" in table and f"| seed={seed} |" in table

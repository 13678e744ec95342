"""Run names for the dashboards: what a run varies; in a multirun, the keys its sweep varies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wbpose.app.config import compose_config
from wbpose.app.run_names import hydra_run_name, run_name, swept_keys

COMMAND_LINE = [
    "experiment=w32_256x192_msra",
    "paths.log_dir=/scratch/logs",
    "hydra.launcher.timeout_min=60",
    "logger=[csv,wandb]",
    "trainer=ddp",
    "trainer.devices=8",
    "data.num_workers=8",
    "data.data_root=/data/coco",
    "debug=limit",
    "+callbacks.extra._target_=x.Y",
    "ckpt_path=auto",
    "seed=1",
    "trainer.max_epochs=3",
]


def test_a_single_run_is_named_by_what_changes_the_training() -> None:
    assert run_name(COMMAND_LINE) == "experiment=w32_256x192_msra,seed=1,trainer.max_epochs=3"
    assert run_name(["paths.log_dir=/x", "logger=wandb", "trainer.devices=2"]) is None  # nothing left: wandb draws
    assert run_name(["+model.init.pretrained=a.ckpt", "~augment"]) == "augment,model.init.pretrained=a.ckpt"


def test_a_sweep_job_is_named_by_the_swept_keys_only() -> None:
    job = [*COMMAND_LINE, "input=384x288"]
    assert run_name(job, swept={"seed", "input"}) == "input=384x288,seed=1"
    # a swept key is named even where a single run would leave it out (it is what tells the jobs apart)
    assert run_name(job, swept={"trainer.devices"}) == "trainer.devices=8"
    # a multirun that sweeps nothing (-m seed=1) is named as a single run
    assert run_name(job, swept=set()) == run_name(job)


def test_swept_keys_read_the_multirun_command_line(tmp_path: Path) -> None:
    assert swept_keys(["input"], tmp_path) is None  # no multirun.yaml (Optuna writes none): unknown
    saved = {"hydra": {"overrides": {"task": ["experiment=demo", "seed=0,1,2", "optim.lr=range(1,3)",
                                              "+data.foo=glob(a*)", "paths.log_dir=/x"]}}}  # fmt: skip
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(saved))
    assert swept_keys(["input"], tmp_path) == {"input", "seed", "optim.lr", "data.foo"}


@pytest.mark.parametrize("with_command_line", [True, False])
def test_hydra_run_name_of_a_multirun_job(tmp_path: Path, with_command_line: bool) -> None:
    """A job of ``-m hparams_search=demo_input_size optim.lr=1e-3,2e-3 ...`` as Hydra composes it (its sweeper's
    params: input and seed), with or without the sweep's ``multirun.yaml``."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    common = ["hparams_search=demo_input_size", "experiment=demo", f"paths.log_dir={tmp_path}", "trainer.devices=1"]
    job = [*common, "input=256x192", "seed=1", "optim.lr=0.002"]
    if with_command_line:
        saved = {"hydra": {"overrides": {"task": [*common, "optim.lr=0.001,0.002"]}}}
        (sweep / "multirun.yaml").write_text(yaml.safe_dump(saved))
    compose_config("train", [*job, f"hydra.sweep.dir={sweep}"], output_dir=tmp_path / "job")
    expected = "input=256x192,optim.lr=0.002,seed=1"
    # without the command line, the constant experiment=demo cannot be told from a swept value: it is kept
    assert hydra_run_name() == (expected if with_command_line else f"experiment=demo,{expected}")


def test_the_loggers_use_the_rule(tmp_path: Path) -> None:
    cfg = compose_config(
        "train", ["logger=[wandb,mlflow,comet]", "seed=3", f"paths.log_dir={tmp_path}", "debug=limit"],
        output_dir=tmp_path / "run",
    )  # fmt: skip
    assert cfg.logger.wandb.name == cfg.logger.mlflow.run_name == cfg.logger.comet.name == "seed=3"

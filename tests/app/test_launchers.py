"""hydra/launcher=slurm: the SLURM job array a sweep would request, checked against the trainer without a cluster.

The input-size ablation of the W32 row (2 sizes x 3 seeds) is composed with Hydra's own config
(``return_hydra_config``), its launcher made from ``hydra.launcher`` and asked to launch the six jobs; ``srun`` and
``sbatch`` are stand-ins that copy the sbatch file submitit writes, so every ``#SBATCH`` line is read back. Site
values come from a ``conf/local``-style file on Hydra's search path.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers.extras import require_extra
from wbpose.app.config import CONFIG_DIR

require_extra("hydra_plugins.hydra_submitit_launcher", "slurm")

SITE = """# @package _global_
slurm:
  partition: gpu
  account: pose_lab
  timeout_min: 2880
"""

ABLATION = ["hparams_search=input_size", "experiment=w32_256x192_msra"]


def _compose(tmp_path: Path, overrides: list[str]):
    site = tmp_path / "site"
    (site / "local").mkdir(parents=True, exist_ok=True)
    (site / "local" / "cluster.yaml").write_text(SITE)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[*ABLATION, f"hydra.searchpath=[file://{site}]", "local=cluster",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
            return_hydra_config=True,
        )  # fmt: skip


TRAINERS = [
    ([], 1, 8),  # the experiment's trainer=ddp: 8 GPUs on one node
    (["trainer=multinode"], 2, 8),
    (["trainer=multinode", "trainer.num_nodes=4", "trainer.devices=4"], 4, 4),
]


@pytest.mark.parametrize(("trainer", "nodes", "gpus"), TRAINERS)
def test_slurm_resources_follow_the_trainer(tmp_path: Path, trainer: list[str], nodes: int, gpus: int) -> None:
    cfg = _compose(tmp_path, ["hydra/launcher=slurm", *trainer])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == (nodes, gpus, gpus)
    assert launcher["nodes"] == OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == cfg.trainer.devices  # one task per GPU
    assert (launcher["partition"], launcher["account"], launcher["timeout_min"]) == ("gpu", "pose_lab", 2880)
    assert launcher["max_num_timeout"] > 0  # time-outs are re-queued (ckpt_path=auto resumes them)
    assert launcher["_target_"].endswith("SlurmLauncher")


def test_slurm_site_values_are_optional(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*ABLATION, "hydra/launcher=slurm", "~local"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["partition"] is None and launcher["account"] is None  # the cluster's defaults
    assert launcher["timeout_min"] == 4320 and launcher["tasks_per_node"] == 8


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch):
    """``srun`` and ``sbatch`` on PATH that submit nothing; ``sbatch`` keeps a copy of the file it was given."""
    import submitit.slurm.slurm as submitit_slurm

    bin_dir, copies = tmp_path / "bin", tmp_path / "sbatch_files"
    bin_dir.mkdir()
    copies.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{copies}/"\necho "Submitted batch job 4242"\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def finished(job) -> list[JobReturn]:  # instead of waiting for the cluster
        ret = JobReturn(status=JobStatus.COMPLETED)
        ret.return_value = 0.5
        return [ret]

    monkeypatch.setattr(submitit_slurm.SlurmJob, "results", finished)
    return copies


def _sbatch_lines(copies: Path) -> dict[str, str]:
    (script,) = list(copies.iterdir())
    lines = [line.removeprefix("#SBATCH --") for line in script.read_text().splitlines() if line.startswith("#SBATCH")]
    return dict(line.partition("=")[::2] for line in lines)


@pytest.mark.parametrize(("trainer", "nodes", "gpus"), TRAINERS[:2])
def test_the_w32_ablation_submits_one_array_that_lightning_accepts(
    tmp_path: Path, fake_slurm: Path, monkeypatch, trainer: list[str], nodes: int, gpus: int
) -> None:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    cfg = _compose(tmp_path, ["hydra/launcher=slurm", *trainer])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda job_cfg: None, config=cfg)
    grid = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    assert grid == ["input=256x192,384x288", "seed=0,1,2"]
    jobs = [[f"input={size}", f"seed={seed}"] for size, seed in itertools.product(("256x192", "384x288"), range(3))]
    returns = launcher.launch(jobs, initial_job_idx=0)
    assert [r.return_value for r in returns] == [0.5] * 6

    sbatch = _sbatch_lines(fake_slurm)
    assert sbatch["array"] == "0-5%6"  # the six jobs as one array, all at once
    assert (int(sbatch["nodes"]), int(sbatch["ntasks-per-node"]), int(sbatch["gpus-per-node"])) == (nodes, gpus, gpus)
    assert (sbatch["partition"], sbatch["account"], sbatch["time"]) == ("gpu", "pose_lab", "2880")
    assert sbatch["signal"] == "USR2@300" and sbatch["cpus-per-task"] == "5"
    assert sbatch["job-name"] == "train" and (tmp_path / "sweep" / ".submitit").is_dir()

    # Lightning, started by srun in that allocation, accepts the trainer's devices and nodes
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", sbatch["ntasks-per-node"])
    monkeypatch.setenv("SLURM_NNODES", sbatch["nodes"])
    monkeypatch.setenv("SLURM_JOB_NAME", sbatch["job-name"])
    SLURMEnvironment().validate_settings(num_devices=cfg.trainer.devices, num_nodes=cfg.trainer.get("num_nodes", 1))


def test_the_plugins_own_defaults_would_not_match_the_trainer(tmp_path: Path, monkeypatch) -> None:
    """hydra/launcher=submitit_slurm as shipped asks for one task on one node: Lightning refuses 8 devices in it."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    cfg = _compose(tmp_path, ["hydra/launcher=submitit_slurm"])
    plain = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert plain["tasks_per_node"] == 1 and plain["gpus_per_node"] is None
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", str(plain["tasks_per_node"]))
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    with pytest.raises(ValueError, match="devices=8"):
        SLURMEnvironment().validate_settings(num_devices=cfg.trainer.devices, num_nodes=1)

"""hparams_search=optuna's sweeper without training: an interrupted study continues where it stopped.

The sweeper is built from conf/hparams_search/optuna.yaml's node and launches through a stand-in launcher that
scores each trial from its overrides (and, in the first launch, dies during the second batch, as a killed launch
would, leaving those trials RUNNING in the sqlite file).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from helpers.extras import require_extra
from wbpose.app.config import CONFIG_DIR

require_extra("hydra_plugins.hydra_optuna_sweeper", "optuna")
optuna = require_extra("optuna", "optuna")


class Interrupted(BaseException):
    """What a kill looks like from inside the sweeper (not an Exception: nothing catches it)."""


class ScoringLauncher:
    """Launches nothing: a trial's value is its learning rate x 1000 (the best trial has the highest rate)."""

    def __init__(self, die_at_batch: int | None = None) -> None:
        self.batches: list[tuple[int, list[list[str]]]] = []
        self.die_at_batch = die_at_batch

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        self.batches.append((initial_job_idx, [list(o) for o in job_overrides]))
        if self.die_at_batch == len(self.batches):
            raise Interrupted
        returns = []
        for overrides in job_overrides:
            ret = JobReturn(status=JobStatus.COMPLETED)
            ret.return_value = 1000 * float(dict(o.split("=", 1) for o in overrides)["optim.lr"])
            returns.append(ret)
        return returns


def _rates(batches) -> set[str]:
    return {o for _, jobs in batches for job in jobs for o in job if o.startswith("optim.lr=")}


def _sweeper(sweep_dir: Path, launcher: ScoringLauncher, n_trials: int = 4, n_jobs: int = 2):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hparams_search=optuna", f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}",
                       f"hydra.sweeper.n_jobs={n_jobs}", "hydra.sweeper.sampler.n_startup_trials=10"],
            return_hydra_config=True,
        )  # fmt: skip
    sweeper = instantiate(cfg.hydra.sweeper)
    impl = sweeper.sweeper.sweeper  # hydra_plugins door -> wbpose sweeper -> hydra-optuna-sweeper's implementation
    impl.config, impl.hydra_context, impl.launcher, impl.job_idx = cfg, object(), launcher, 0
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(sweep_dir)
    return sweeper, OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)


def test_the_study_lives_in_the_multirun_folder(tmp_path: Path) -> None:
    _, node = _sweeper(tmp_path / "multirun", ScoringLauncher())
    assert node["storage"] == f"sqlite:///{tmp_path / 'multirun'}/optuna.db"
    assert node["_target_"] == "hydra_plugins.wbpose_optuna.ContinuedOptunaSweeper" and node["n_jobs"] == 2


def test_an_interrupted_study_runs_only_its_missing_trials(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "logs" / "multirun"  # not there yet: the sweeper makes it for the sqlite file
    first = ScoringLauncher(die_at_batch=2)
    sweeper, node = _sweeper(sweep_dir, first)
    with pytest.raises(Interrupted):
        sweeper.sweep([])
    assert [(start, len(jobs)) for start, jobs in first.batches] == [(0, 2), (2, 2)]  # 2 at a time
    study = optuna.load_study(study_name=node["study_name"], storage=node["storage"])
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "RUNNING", "RUNNING"]  # the kill left the second batch unfinished

    again = ScoringLauncher()
    sweeper, _ = _sweeper(sweep_dir, again)
    sweeper.sweep([])
    assert [(start, len(jobs)) for start, jobs in again.batches] == [(4, 2)]  # job folders 4, 5 = trials 4, 5
    study = optuna.load_study(study_name=node["study_name"], storage=node["storage"])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4 and [t.number for t in complete] == [0, 1, 4, 5]
    assert not _rates(first.batches[:1]) & _rates(again.batches)  # reseeded: not the first launch's samples again
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.best_value == pytest.approx(max(t.value for t in complete))

    done = ScoringLauncher()
    sweeper, _ = _sweeper(sweep_dir, done)
    sweeper.sweep([])  # the study holds its 4 trials: nothing left to run
    assert done.batches == []

    more = ScoringLauncher()
    sweeper, _ = _sweeper(sweep_dir, more, n_trials=5)
    sweeper.sweep([])
    assert [(start, len(jobs)) for start, jobs in more.batches] == [(6, 1)]


def test_a_study_without_storage_starts_empty_each_time(tmp_path: Path) -> None:
    from wbpose.app.optuna_search import finished_trials

    assert finished_trials(None, "any") == (0, 0)
    assert finished_trials(f"sqlite:///{tmp_path}/none.db", "missing") == (0, 0)


def test_trials_are_named_by_the_keys_the_search_varies(tmp_path: Path) -> None:
    from wbpose.app.run_names import run_name, swept_keys

    sweep_dir = tmp_path / "multirun"
    launcher = ScoringLauncher()
    sweeper, node = _sweeper(sweep_dir, launcher, n_trials=2)
    assert swept_keys(node["params"], sweep_dir) is None  # no multirun.yaml before the launch
    sweeper.sweep([])
    assert (sweep_dir / "multirun.yaml").is_file()
    swept = swept_keys(node["params"], sweep_dir)
    assert swept == set(node["params"])
    trial = launcher.batches[0][1][0]
    name = run_name([*trial, "experiment=demo", "paths.log_dir=/scratch"], swept)
    assert name == ",".join(sorted(trial)) and "experiment" not in name

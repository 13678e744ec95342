"""``hparams_search=optuna``: hydra-optuna-sweeper's sweeper, made to continue a study that was interrupted.

The study lives in a file database (``hydra.sweeper.storage``: ``sqlite:///<multirun dir>/optuna.db`` in
``conf/hparams_search/optuna.yaml``); trials are asked ``n_jobs`` at a time and run through the launcher, side by
side with ``hydra/launcher=submitit_local`` or ``hydra/launcher=slurm``. Started again on the same storage and
study name (``hydra.sweep.dir=<the multirun folder>`` gives both), the search goes on where it stopped:

- ``n_trials`` is the size of the study, not of this launch: only the trials still missing are run (complete and
  pruned trials count; a failed one, or one left ``RUNNING`` by the interruption, is replaced);
- job folders go on from the study's trial count, so folder ``<n>`` holds trial ``n`` and the folders of the
  earlier launch are kept (an unfinished trial keeps its number and folder);
- the sampler draws new random numbers (its fixed seed would repeat the first launch's startup trials);
- ``multirun.yaml`` is written in the multirun folder, as for a grid: trials are named by the keys they vary.

Several launches may also share one study at once (the same ``storage`` and ``study_name``, each its own
``hydra.sweep.dir``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)

__all__ = ["ContinuedOptunaSweeper", "finished_trials"]

#: Trial states that count toward ``n_trials`` when a study is continued (a failed or interrupted trial does not).
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def finished_trials(storage: str | None, study_name: str | None) -> tuple[int, int]:
    """``(finished, all)`` trial counts of the study ``study_name`` in ``storage``; ``(0, 0)`` when there is no
    such study yet (or no storage: an in-memory study starts empty)."""
    if storage is None or study_name is None:
        return 0, 0
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # optuna 2.x: no study of that name in the storage yet
        return 0, 0
    trials = study.get_trials(deepcopy=False)
    return sum(t.state in FINISHED for t in trials), len(trials)


def _sqlite_folder(storage: Any) -> Path | None:
    """The folder of a ``sqlite:///`` storage file (``None`` for other storages)."""
    url = str(storage) if storage is not None else ""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    return Path(url.removeprefix("sqlite:///")).parent


def _save_multirun_config(config: Any) -> None:
    """``<sweep dir>/multirun.yaml``, as Hydra's basic sweeper writes it (hydra-optuna-sweeper does not): the
    launch's config with its command line, from which run names read the keys the sweep varies
    (:func:`wbpose.app.run_names.swept_keys`)."""
    from omegaconf import OmegaConf

    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")


class ContinuedOptunaSweeper(OptunaSweeper):
    """``OptunaSweeper`` whose study continues where an earlier launch on the same storage stopped."""

    def sweep(self, arguments: list[str]) -> None:
        impl = self.sweeper
        folder = _sqlite_folder(impl.storage)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)  # sqlite creates the file, not its folder
        _save_multirun_config(impl.config)
        finished, total = finished_trials(impl.storage, impl.study_name)
        if total:
            missing = max(0, impl.n_trials - finished)
            log.info(
                "Optuna study %s in %s holds %d trial(s), %d finished: running %d more of n_trials=%d",
                impl.study_name, impl.storage, total, finished, missing, impl.n_trials,
            )  # fmt: skip
            if missing == 0:
                return None
            impl.n_trials = missing
            impl.job_idx = total  # job folder <n> holds trial n
            reseed = getattr(impl.sampler, "reseed_rng", None)
            if callable(reseed):
                reseed()
        return super().sweep(arguments)

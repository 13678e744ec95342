"""Run names for the experiment dashboards (wandb, MLflow, Comet): what a run varies, not where or how it ran.

The rule (``${run_name:}`` in ``conf/logger/*.yaml``; docs/training.md#loggers-and-debugging):

- **In a multirun**, a job is named by its values of the keys the sweep varies: the keys of the sweeper's ``params``
  (an ``hparams_search`` file's grid, Optuna's search space) and the keys given several values on the multirun's
  command line (``seed=0,1``, ``input=128x96,256x192``; read from the sweep folder's ``multirun.yaml``, which Hydra
  writes before the first job starts; ``hparams_search=optuna``'s sweeper writes it too).
  ``-m experiment=w32_256x192_msra seed=0,1,2 paths.log_dir=/scratch`` names its jobs ``seed=0``,
  ``seed=1``, ``seed=2``; the sweep itself is the group (``${sweep_group:}``).
- **Otherwise** (a single run, or a multirun whose command line cannot be read back, e.g. a sweeper that writes no
  ``multirun.yaml``, where the command line's own sweeps would otherwise go unnamed), the run is named by
  its command-line overrides less those that only say where or how it runs (:data:`NOT_IN_NAMES`: folders, loggers,
  callbacks, devices, progress bars, debugging limits, ...).

Overrides are written ``key=value`` joined by commas, sorted by key (as Hydra's ``override_dirname``); a run with
nothing left to name is unnamed (``None``: wandb then draws a name).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["NOT_IN_NAMES", "hydra_run_name", "run_name", "swept_keys"]

#: Override keys left out of run names: a key listed here, and every key under it (``paths`` covers
#: ``paths.log_dir``). They choose folders, loggers, hardware, progress output or debugging limits, not what is
#: trained. ``trainer`` alone is the hardware option (``trainer=ddp``); ``trainer.max_epochs`` stays in names.
NOT_IN_NAMES: tuple[str, ...] = (
    "hydra",
    "paths",
    "logger",
    "callbacks",
    "extras",
    "local",
    "debug",
    "hparams_search",
    "ckpt_path",
    "tags",
    "task_name",
    "cpu_threads",
    "train",
    "validate",
    "optimized_metric",
    "data.data_root",
    "data.det_file",
    "data.val_batch_size",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "module.num_vis_images",
    "module.vis_score_thr",
)
#: ``trainer`` keys left out of names (the rest, e.g. ``trainer.max_epochs`` or ``trainer.precision``, are kept).
_TRAINER_NOT_IN_NAMES = frozenset(
    {
        "trainer",
        "trainer.accelerator",
        "trainer.devices",
        "trainer.num_nodes",
        "trainer.strategy",
        "trainer.enable_progress_bar",
        "trainer.enable_model_summary",
        "trainer.enable_checkpointing",
        "trainer.num_sanity_val_steps",
        "trainer.log_every_n_steps",
        "trainer.limit_train_batches",
        "trainer.limit_val_batches",
        "trainer.limit_test_batches",
        "trainer.fast_dev_run",
        "trainer.profiler",
        "trainer.detect_anomaly",
        "trainer.default_root_dir",
    }
)


def _key(override: str) -> str:
    """``"+data.batch_size=8"`` -> ``"data.batch_size"`` (as ``wbpose.app.config.parse_override``, which imports
    this module's rule for its ``${run_name:}`` resolver)."""
    return override.partition("=")[0].lstrip("+~")


def _left_out(key: str) -> bool:
    if key in _TRAINER_NOT_IN_NAMES:
        return True
    return any(key == k or key.startswith(f"{k}.") for k in NOT_IN_NAMES)


def run_name(overrides: Sequence[str], swept: Iterable[str] | None = None) -> str | None:
    """The name of a run with command-line ``overrides`` (``key=value`` strings, Hydra's ``overrides.task``).

    Args:
        overrides: the run's (or the multirun job's) overrides.
        swept: the keys the sweep varies, when known (a multirun): the name is those overrides only. ``None`` or
            empty: every override but those :data:`NOT_IN_NAMES`.

    Returns:
        ``"key=value,key=value"`` sorted by key, or ``None`` when nothing is left.
    """
    parsed = [(_key(o), o.lstrip("+~")) for o in overrides]
    keys = set(swept or ())
    kept = [(k, text) for k, text in parsed if k in keys] if keys else []
    if not kept:
        kept = [(k, text) for k, text in parsed if not _left_out(k)]
    return ",".join(text for _, text in sorted(kept)) or None


def swept_keys(sweeper_params: Iterable[str], sweep_dir: str | Path | None) -> set[str] | None:
    """The keys a multirun varies: ``sweeper_params`` (its ``hydra.sweeper.params`` keys) and the command-line
    overrides with several values in ``<sweep_dir>/multirun.yaml``. ``None`` when that file cannot be read (the
    command line's sweeps are then unknown)."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = {str(k).lstrip("+~") for k in sweeper_params}
    path = Path(str(sweep_dir)) / "multirun.yaml" if sweep_dir else None
    if path is None or not path.is_file():
        return None
    try:
        saved = yaml.safe_load(path.read_text()) or {}
        command_line = list(((saved.get("hydra") or {}).get("overrides") or {}).get("task") or [])
        parsed = OverridesParser.create().parse_overrides(command_line)
    except Exception as err:  # noqa: BLE001 - a name is never worth failing a run for
        log.warning("run names: could not read the sweep's command line from %s: %s", path, err)
        return None
    return keys | {o.key_or_group.lstrip("+~") for o in parsed if o.is_sweep_override()}


def hydra_run_name() -> str | None:
    """:func:`run_name` of the current Hydra job (``None`` outside a Hydra run or ``compose_config``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    swept = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        params = hydra_cfg.sweeper.get("params") or {}
        swept = swept_keys(params.keys(), hydra_cfg.sweep.dir)
    return run_name(list(hydra_cfg.overrides.task), swept)

"""Training: compose the pieces named by a Hydra config, fit, validate the best checkpoint, report the metric.

``train(cfg)`` is the whole application; :func:`main` (the ``wbpose-train`` command, ``scripts/train.py``) only
composes the config and calls it, so tests, notebooks and sweeps share one code path (lightning-hydra-template's
``train``/``main`` split).

Usage::

    wbpose-train experiment=w32_256x192_msra                  # a seed-table row (8 GPUs: trainer=ddp)
    wbpose-train experiment=demo                              # tiny HRNet on synthetic data, CPU
    wbpose-train -m experiment=w32_256x192_msra seed=0,1,2    # several seeds (a multirun)
    wbpose-train ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt   # resume a killed run
    wbpose-train experiment=w32_256x192_msra ckpt_path=auto   # resume the same command's last.ckpt

The commands run from any directory, with the installed config tree (or this checkout's ``conf/``); Hydra's own
flags work as usual: ``-m`` for multiruns, ``--config-dir DIR`` to add a folder of your own configs (e.g. your
``experiment/my_run.yaml``), ``--cfg job`` to print the composed config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from wbpose.app.config import CONFIG_DIR, parse_override
from wbpose.app.extras import apply_extras, task_wrapper
from wbpose.app.resume import assign_wandb_id, remember_wandb_id, resolve_auto_resume
from wbpose.app.startup import check_output_dir, end_with_parent, unblock_stop_signals
from wbpose.build import (
    build_callbacks,
    build_codec,
    build_datamodule,
    build_loggers,
    build_module,
    model_arch,
    resolved,
)
from wbpose.checkpoints.io import check_same_arch, config_arch
from wbpose.checkpoints.reader import embedded_config, read_checkpoint
from wbpose.data.layout import ensure_dataset
from wbpose.metrics.tables import metrics_table, write_metrics_json

log = logging.getLogger(__name__)

__all__ = ["apply_cpu_threads", "keep_cpu_processes", "main", "task_overrides", "train"]


def apply_cpu_threads(cfg: DictConfig) -> None:
    """``torch.set_num_threads(cfg.cpu_threads)`` when set (loader workers always use one thread each)."""
    threads = cfg.get("cpu_threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def task_overrides() -> list[str]:
    """This run's command-line overrides (``[]`` outside a Hydra run or ``compose_config``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def keep_cpu_processes(cfg: DictConfig, overrides: list[str]) -> None:
    """Under ``debug=...`` (one CPU process: ``devices: 1``), keep the processes of a CPU trainer option that asks
    for several (``trainer=ddp_sim`` / ``ddp_cpu``: 2), unless ``trainer.devices`` is on the command line."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or any(parse_override(o)[0] == "trainer.devices" for o in overrides):
        return
    choices = HydraConfig.get().runtime.choices
    debug, trainer_option = choices.get("debug"), choices.get("trainer")
    option_file = CONFIG_DIR / "trainer" / f"{trainer_option}.yaml"
    if not debug or not trainer_option or not option_file.is_file():
        return
    option = OmegaConf.load(option_file)
    devices = option.get("devices")
    several = isinstance(devices, int) and devices > 1
    if option.get("accelerator") == "cpu" and several and cfg.trainer.devices != devices:
        log.info("debug=%s with trainer=%s: keeping its %d CPU processes", debug, trainer_option, devices)
        with open_dict(cfg):
            cfg.trainer.devices = devices


def check_resume_checkpoint(cfg: DictConfig) -> None:
    """Fail clearly when ``cfg.ckpt_path`` is missing or was trained with another architecture."""
    path = cfg.get("ckpt_path")
    if not path:
        return
    if not Path(str(path)).is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist (a run's checkpoints are in <run dir>/checkpoints/)")
    checkpoint = read_checkpoint(path)  # weights_only: never runs code from the file
    # its stored config is checked as data (refused if it names code outside the project) before Lightning opens it
    check_same_arch(model_arch(cfg), config_arch(embedded_config(checkpoint, source=path)), str(path))


def _without_progress_bars(callbacks: list[Any]) -> list[Any]:
    """``callbacks`` less its progress bars: ``trainer.enable_progress_bar=false`` alone turns the bar off (Lightning
    refuses a progress-bar callback with it)."""
    from pytorch_lightning.callbacks import ProgressBar

    kept = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    if len(kept) < len(callbacks):
        log.info("trainer.enable_progress_bar=false: progress bar callback left out")
    return kept


def _best_checkpoint(trainer: pl.Trainer, monitor: str | None) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "monitor", None) == monitor and getattr(cb, "best_model_path", ""):
            return cb.best_model_path
    return None


def _log_hyperparameters(loggers: list[Any], cfg: DictConfig, module: pl.LightningModule) -> None:
    if not loggers:
        return
    hparams = resolved(cfg)
    hparams["model/params_total"] = sum(p.numel() for p in module.model.parameters())
    for logger in loggers:
        logger.log_hyperparams(hparams)


@task_wrapper
def train(cfg: DictConfig) -> tuple[float | None, dict[str, Any]]:
    """Fit the model described by ``cfg`` and validate the best checkpoint.

    Steps: seed; make sure the dataset exists (synthetic data is generated when absent); build codec,
    DataModule, module, callbacks, loggers and Trainer; ``fit`` (resuming from ``cfg.ckpt_path`` when set); then
    ``validate`` the best checkpoint (or the final weights when none was saved) and write the validation
    metrics to ``<output_dir>/metrics.json``.

    Args:
        cfg: a config composed from ``conf/train.yaml``.

    Returns:
        ``(value of cfg.optimized_metric or None, objects)`` where ``objects`` holds ``cfg``, ``module``,
        ``datamodule``, ``trainer`` and ``metrics`` (the final validation, floats).
    """
    check_output_dir(cfg.paths.output_dir)  # writable, before anything is written there
    end_with_parent()  # a rank started by rank 0 ends with it
    unblock_stop_signals()  # pre-emption must reach a re-queueable run
    apply_extras(cfg)
    resolve_auto_resume(cfg, task_overrides())
    keep_cpu_processes(cfg, task_overrides())
    apply_cpu_threads(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    ensure_dataset(cfg.data, train=bool(cfg.get("train", True)))
    check_resume_checkpoint(cfg)

    codec = build_codec(cfg)
    datamodule = build_datamodule(cfg, codec)
    module = build_module(cfg, codec=codec, ann_file=datamodule.val_ann_file)
    if cfg.get("train", True):
        check_output_dir(cfg.paths.output_dir, module.model)  # room for the checkpoints
    callbacks = build_callbacks(cfg)
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = _without_progress_bars(callbacks)
    assign_wandb_id(cfg)  # known before wandb starts: kept for ckpt_path=auto
    loggers = build_loggers(cfg)
    remember_wandb_id(cfg, loggers)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    _log_hyperparameters(loggers, cfg, module)

    objects: dict[str, Any] = {"cfg": cfg, "module": module, "datamodule": datamodule, "trainer": trainer}
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        log.info("training %s for %s epochs", OmegaConf.select(cfg, "model.net.arch"), cfg.trainer.max_epochs)
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    # fast_dev_run already validated the only weights there are (and saves no checkpoint)
    if cfg.get("validate", True) and not (trainer.fast_dev_run and metrics):
        best = _best_checkpoint(trainer, cfg.get("optimized_metric"))
        if not cfg.get("train", True) and cfg.get("ckpt_path"):
            best = cfg.ckpt_path
        log.info("validating %s", best or "the final weights")
        results = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        objects["validated_checkpoint"] = best

    objects["metrics"] = metrics
    if trainer.is_global_zero and metrics:
        out = Path(cfg.paths.output_dir)
        write_metrics_json(out / "metrics.json", metrics, checkpoint=objects.get("validated_checkpoint"))
        log.info(
            "validation (%s):\n%s",
            objects.get("validated_checkpoint") or "final weights",
            metrics_table({"val": metrics}),
        )
    name = cfg.get("optimized_metric")
    value = metrics.get(name) if name else None
    return value, objects


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """``wbpose-train [experiment=<name>] [group=option ...] [key=value ...]``; returns the optimised metric (to
    Hydra's sweepers; the command itself exits 0)."""
    value, _ = train(cfg)
    return value

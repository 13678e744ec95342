"""Training: compose the pieces named by a Hydra config, fit, validate the best checkpoint, report the metric.

``train(cfg)`` is the whole application; ``scripts/train.py`` only composes the config and calls it, so tests,
notebooks and sweeps share one code path (lightning-hydra-template's ``train``/``main`` split).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from wbpose.lit_module import CONFIG_KEY, TopdownPoseModule, build_module, check_same_arch, model_arch
from wbpose.utils.config import instantiate_callbacks, instantiate_loggers
from wbpose.utils.data_root import ensure_dataset
from wbpose.utils.summary import metrics_table, write_metrics_json

log = logging.getLogger(__name__)

__all__ = ["apply_cpu_threads", "build_datamodule", "finish_loggers", "train"]


#: Keys of the ``data`` node that belong to the codec (interpolated by ``conf/codec``), not to the DataModule.
CODEC_KEYS = ("heatmap_hw", "sigma")


def build_datamodule(cfg: DictConfig, codec: Any, **overrides: Any) -> pl.LightningDataModule:
    """Instantiate the ``data`` node (``WholeBodyDataModule``) with the shared codec (it encodes the targets)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)  # resolve first: a detached copy loses ${paths...}
    assert isinstance(data, dict)
    return instantiate({k: v for k, v in data.items() if k not in CODEC_KEYS}, codec=codec, **overrides)


def apply_cpu_threads(cfg: DictConfig) -> None:
    """``torch.set_num_threads(cfg.cpu_threads)`` when set (loader workers always use one thread each)."""
    threads = cfg.get("cpu_threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def check_resume_checkpoint(cfg: DictConfig) -> None:
    """Fail clearly when ``cfg.ckpt_path`` is missing or was trained with another architecture."""
    path = cfg.get("ckpt_path")
    if not path:
        return
    if not Path(str(path)).is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist (a run's checkpoints are in <run dir>/checkpoints/)")
    from wbpose.checkpoints.mmpose import read_checkpoint

    checkpoint = read_checkpoint(path)  # weights_only: never runs code from the file
    embedded = checkpoint.get(CONFIG_KEY) if isinstance(checkpoint, dict) else None
    if embedded is not None:
        check_same_arch(model_arch(cfg), model_arch(OmegaConf.create(embedded)), str(path))


def _best_checkpoint(trainer: pl.Trainer, monitor: str | None) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "monitor", None) == monitor and getattr(cb, "best_model_path", ""):
            return cb.best_model_path
    return None


def finish_loggers(loggers: list[Any]) -> None:
    """Flush and close the loggers that keep a background process (wandb)."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish()


def _log_hyperparameters(loggers: list[Any], cfg: DictConfig, module: TopdownPoseModule) -> None:
    if not loggers:
        return
    hparams = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(hparams, dict)
    hparams["model/params_total"] = sum(p.numel() for p in module.model.parameters())
    for logger in loggers:
        logger.log_hyperparams(hparams)


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
    apply_cpu_threads(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    ensure_dataset(cfg.data, train=bool(cfg.get("train", True)))
    check_resume_checkpoint(cfg)

    codec = instantiate(cfg.codec)
    datamodule = build_datamodule(cfg, codec)
    module = build_module(cfg, codec=codec)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    _log_hyperparameters(loggers, cfg, module)

    objects: dict[str, Any] = {"cfg": cfg, "module": module, "datamodule": datamodule, "trainer": trainer}
    metrics: dict[str, float] = {}
    try:
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
    finally:
        finish_loggers(loggers)

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

"""Evaluation: score a checkpoint on the val split with detector or ground-truth boxes, per part.

``evaluate(cfg, overrides)`` loads a checkpoint through the first loader in :data:`CHECKPOINT_LOADERS` that
recognises it, builds the evaluation config, runs ``Trainer.test`` and writes ``metrics.json`` (and the
MMPose-format results json) into the run folder.

Which config is used: a checkpoint written by ``scripts/train.py`` carries its config (the unresolved one, so
that ``${paths.data_dir}`` resolves on this machine). The evaluation config is that config, with this command's
``paths``/``trainer``/``logger`` and eval keys, and with every command-line override of the model, data, codec
and module groups applied on top (``data=coco_wholebody_256x192`` replaces the node; ``+data.batch_size=8`` or
``module.flip_test=false`` set one value). A checkpoint without a config (e.g. a converted MMPose file) needs
``model=``, ``data=`` and ``codec=`` on the command line.

To support another checkpoint format, append a loader to :data:`CHECKPOINT_LOADERS`: a function
``(path) -> LoadedCheckpoint | None`` returning ``None`` for files it does not handle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from wbpose.checkpoints.loaders import load_mmpose_for_eval
from wbpose.checkpoints.mmpose import read_checkpoint
from wbpose.lit_module import (
    CONFIG_KEY,
    RAW_CONFIG_KEY,
    build_module,
    check_same_arch,
    load_state_dict_checked,
    model_arch,
)
from wbpose.train import apply_cpu_threads, build_datamodule, finish_loggers
from wbpose.utils.config import instantiate_loggers
from wbpose.utils.data_root import ensure_dataset
from wbpose.utils.summary import metrics_table, write_metrics_json

log = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_LOADERS", "LoadedCheckpoint", "build_eval_config", "evaluate", "load_checkpoint"]

#: Config groups that a checkpoint's embedded config provides (and the command line may override).
MODEL_GROUPS = ("model", "data", "codec", "module", "optim", "sched")


@dataclass
class LoadedCheckpoint:
    """Weights and (optionally) the config of a checkpoint, whatever its file format.

    Attributes:
        state_dict: ``TopdownPoseModel`` keys (``backbone.*``, ``head.*``).
        config: the training config (unresolved when available), or ``None``.
        arch: the architecture the weights belong to, when known.
        source: the file, for messages.
    """

    state_dict: dict[str, torch.Tensor]
    config: DictConfig | None
    arch: str | None
    source: str


def load_lightning_checkpoint(path: Path) -> LoadedCheckpoint | None:
    """Our Lightning ``.ckpt`` files (``state_dict`` with ``model.`` keys and an embedded config)."""
    if path.suffix != ".ckpt":
        return None
    checkpoint = read_checkpoint(path)  # weights_only: never runs code from the file
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        return None
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    raw = checkpoint.get(RAW_CONFIG_KEY) or checkpoint.get(CONFIG_KEY)
    config = OmegaConf.create(raw) if raw is not None else None
    return LoadedCheckpoint(state, config, model_arch(config) if config is not None else None, str(path))


#: Tried in order; the first that returns a ``LoadedCheckpoint`` wins. MMPose ``.pth`` support plugs in here.
CHECKPOINT_LOADERS: list[Callable[[Path], LoadedCheckpoint | None]] = [load_lightning_checkpoint, load_mmpose_for_eval]


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load ``path`` with the first loader of :data:`CHECKPOINT_LOADERS` that recognises it."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (pass ckpt_path=<file.ckpt>)")
    for loader in CHECKPOINT_LOADERS:
        loaded = loader(path)
        if loaded is not None:
            return loaded
    names = ", ".join(getattr(f, "__name__", repr(f)) for f in CHECKPOINT_LOADERS)
    raise ValueError(f"no checkpoint loader recognises {path} (tried: {names})")


def _parse_override(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key.lstrip("+~"), value


def build_eval_config(cfg: DictConfig, embedded: DictConfig | None, overrides: Sequence[str] = ()) -> DictConfig:
    """Merge a checkpoint's training config with the evaluation config (see the module docstring).

    Args:
        cfg: the composed ``conf/eval.yaml`` (with this command's overrides applied).
        embedded: the checkpoint's config, or ``None``.
        overrides: this command's overrides (``HydraConfig.get().overrides.task``).
    """
    if embedded is None:
        missing = [g for g in ("model", "data", "codec", "module") if cfg.get(g) is None]
        if missing:
            raise ValueError(
                f"the checkpoint has no embedded config: select {', '.join(f'{g}=<name>' for g in missing)} "
                "on the command line (e.g. model=hrnet_w32 data=coco_wholebody_256x192 codec=msra module=topdown)"
            )
        return cfg
    final = OmegaConf.create(OmegaConf.to_container(embedded, resolve=False))
    with open_dict(final):
        for key in list(final.keys()):
            if key not in MODEL_GROUPS:
                del final[key]
        for key, value in cfg.items():  # eval keys, paths, trainer, logger, hydra-free
            if key not in MODEL_GROUPS:
                final[key] = value
        for item in overrides:
            key, _ = _parse_override(item)
            group = key.split(".", 1)[0]
            if group not in MODEL_GROUPS:
                continue
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
            if "." in key:
                OmegaConf.update(final, key, value, merge=False, force_add=True)
            elif value is not None:
                final[group] = cfg[group]
    return final


def _apply_bbox_source(cfg: DictConfig) -> None:
    with open_dict(cfg):
        cfg.data.val_bbox_source = cfg.bbox_source
        if cfg.get("det_file"):
            cfg.data.det_file = cfg.det_file


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[dict[str, float], dict[str, Any]]:
    """Score ``cfg.ckpt_path`` on the val split and write ``metrics.json`` into ``cfg.paths.output_dir``.

    Args:
        cfg: a config composed from ``conf/eval.yaml``.
        overrides: the command-line overrides (to re-apply them over the checkpoint's config).

    Returns:
        ``(metrics, objects)``: metric name -> value (``test/body_ap`` ...), and ``cfg``, ``module``,
        ``datamodule``, ``trainer``.
    """
    loaded = load_checkpoint(cfg.ckpt_path)
    final = build_eval_config(cfg, loaded.config, overrides)
    check_same_arch(model_arch(final), loaded.arch, loaded.source)
    _apply_bbox_source(final)
    apply_cpu_threads(final)
    if final.get("seed") is not None:
        pl.seed_everything(int(final.seed), workers=True)
    ensure_dataset(final.data, train=False)

    codec = instantiate(final.codec)
    datamodule = build_datamodule(final, codec)
    module = build_module(final, codec=codec, load_init_weights=False)
    if not final.get("save_results", True):
        module.test_metric.outfile = None
    load_state_dict_checked(module.model, loaded.state_dict, loaded.source)
    loggers = instantiate_loggers(final.get("logger"))
    trainer: pl.Trainer = instantiate(final.trainer, logger=loggers or False, callbacks=[])
    try:
        results = trainer.test(module, datamodule=datamodule, verbose=False)
    finally:
        finish_loggers(loggers)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if trainer.is_global_zero:
        out = Path(final.paths.output_dir)
        write_metrics_json(
            out / "metrics.json",
            metrics,
            checkpoint=loaded.source,
            bbox_source=final.bbox_source,
            arch=model_arch(final),
        )
        OmegaConf.save(final, out / "eval_config.yaml")
        print(f"{loaded.source} ({final.bbox_source} boxes):\n{metrics_table({model_arch(final) or 'model': metrics})}")
    return metrics, {"cfg": final, "module": module, "datamodule": datamodule, "trainer": trainer}

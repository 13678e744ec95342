"""Builders: the objects of a run, made from a composed config (Hydra ``_target_`` is the only registry).

Each builder makes one thing and reads only the config nodes it names, so the Predictor builds a model and a
codec without a LightningModule, and evaluation builds no optimiser.

=====================  =============================  ==========================================
builder                config nodes                   result
=====================  =============================  ==========================================
``build_model``        ``model``                      the network (+ ImageNet / pose init weights)
``build_codec``        ``codec`` (interpolates input)  heatmap encoder/decoder
``build_datamodule``   ``data`` (interpolates input)   ``WholeBodyDataModule``
``build_metric``       ``module.<val|test>_metric``   ``CocoWholeBodyMetric`` on the DataModule's file
``build_module``       ``module``, ``optim``, ``sched``  ``TopdownPoseModule``
``build_callbacks``    ``callbacks``                  Lightning callbacks
``build_loggers``      ``logger``                     Lightning loggers
=====================  =============================  ==========================================

This layer sits between the Lightning glue and the domain packages: it imports no Lightning code of ours
(``TopdownPoseModule`` and ``WholeBodyDataModule`` are reached through their ``_target_``).
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from wbpose.checkpoints.init_weights import load_init_weights
from wbpose.checkpoints.io import config_arch

log = logging.getLogger(__name__)

__all__ = [
    "build_callbacks",
    "build_codec",
    "build_datamodule",
    "build_loggers",
    "build_metric",
    "build_model",
    "build_module",
    "model_arch",
]


def model_arch(cfg: DictConfig | dict | None) -> str | None:
    """The architecture name of a config (``model.net.arch``), or ``None`` when it has none."""
    return config_arch(cfg)


def build_model(cfg: DictConfig, init_weights: bool = True) -> nn.Module:
    """The network of ``cfg.model.net``; ``init_weights`` applies ``model.pretrained`` / ``model.init.pretrained``."""
    net = instantiate(cfg.model.net)
    if init_weights:
        load_init_weights(net, cfg.model)
    return net


def build_codec(cfg: DictConfig) -> Any:
    """The heatmap codec of ``cfg.codec`` (sizes and sigma interpolated from ``cfg.input``)."""
    return instantiate(cfg.codec)


def build_datamodule(cfg: DictConfig, codec: Any, **overrides: Any) -> Any:
    """The ``WholeBodyDataModule`` of ``cfg.data``, sharing ``codec`` (it encodes the training targets)."""
    return instantiate(cfg.data, codec=codec, **overrides)


def build_metric(cfg: DictConfig, which: str, ann_file: str) -> Any | None:
    """``module.<which>_metric`` (``which``: "val" or "test") scoring against ``ann_file``; ``None`` if unset."""
    node = cfg.module.get(f"{which}_metric")
    return None if node is None else instantiate(node, ann_file=ann_file)


def build_module(
    cfg: DictConfig,
    codec: Any | None = None,
    ann_file: str | None = None,
    with_metrics: bool = True,
    init_weights: bool = True,
) -> Any:
    """The ``TopdownPoseModule`` of ``cfg.module`` with model, codec, loss, optimiser/scheduler partials, metrics.

    Args:
        cfg: the composed (training or evaluation) config.
        codec: an already built codec (the DataModule shares it); built from ``cfg.codec`` when ``None``.
        ann_file: the annotation file the metrics score against; the DataModule's ``val_ann_file`` when
            ``None`` (the one place that path is defined).
        with_metrics: build the metrics (they read the annotation file); ``False`` for data-free use.
        init_weights: load ``model.pretrained`` / ``model.init.pretrained`` when set.
    """
    codec = build_codec(cfg) if codec is None else codec
    metrics: dict[str, Any] = {"val_metric": None, "test_metric": None}
    if with_metrics:
        if ann_file is None:
            ann_file = build_datamodule(cfg, codec).val_ann_file
        metrics = {f"{w}_metric": build_metric(cfg, w, ann_file) for w in ("val", "test")}
    optimizer = instantiate(cfg.optim) if cfg.get("optim") is not None else None
    scheduler = instantiate(cfg.sched) if cfg.get("sched") is not None else None
    module = instantiate(
        cfg.module,
        model=build_model(cfg, init_weights=init_weights),
        codec=codec,
        optimizer=optimizer,
        scheduler=scheduler,
        **metrics,
    )
    module.set_config(cfg)
    return module


#: How to install the package a logger needs (by the class name its ``_target_`` ends with).
LOGGER_INSTALL = {
    "TensorBoardLogger": 'pip install -e ".[tensorboard]"',
    "MLFlowLogger": 'pip install -e ".[mlflow]"',
    "CometLogger": 'pip install "comet-ml>=3.44.4"',
}


def _missing_module(error: BaseException) -> ModuleNotFoundError | None:
    """The ``ModuleNotFoundError`` behind ``error`` (Hydra wraps what a ``_target_`` raises), or ``None``."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _instantiate_nodes(cfg: DictConfig | None, kind: str) -> list[Any]:
    """Instantiate every ``_target_`` node under ``cfg`` (``null`` entries are skipped). A node whose package is
    not installed fails with a ``ModuleNotFoundError`` naming the node, the package and how to install it."""
    out: list[Any] = []
    for name, node in (cfg or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            log.debug("%s %s: %s", kind, name, node._target_)
            try:
                out.append(instantiate(node))
            except Exception as err:
                missing = _missing_module(err)
                if missing is None:
                    raise
                target = str(node._target_)
                hint = LOGGER_INSTALL.get(target.rsplit(".", 1)[-1]) if kind == "logger" else None
                raise ModuleNotFoundError(
                    f"{kind} {name} ({target}) needs a package that is not installed: {missing}"
                    + (f"; install it with: {hint}" if hint else "")
                ) from err
    return out


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """Every ``_target_`` node under ``cfg.callbacks``."""
    return _instantiate_nodes(cfg.get("callbacks"), "callback")


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Every ``_target_`` node under ``cfg.logger``."""
    return _instantiate_nodes(cfg.get("logger"), "logger")


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` as a plain resolved dict (for loggers' hyperparameters)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out

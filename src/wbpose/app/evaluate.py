"""Evaluation: score a checkpoint on the val split with detector or ground-truth boxes, per part.

Usage: ``wbpose-eval ckpt_path=<file> [data.val_bbox_source=det|gt] [data.det_file=<json>] [...]`` (or
``python scripts/eval.py ...``): prints the per-part AP/AR table and writes ``metrics.json``,
``results_keypoints.json`` (MMPose format) and the config used (``eval_config.yaml``) into the run folder.

``evaluate(cfg, overrides)`` loads the checkpoint through :func:`wbpose.checkpoints.load_checkpoint` (any supported
format), builds the evaluation config around it, runs ``Trainer.test`` and writes ``metrics.json`` (and the
MMPose-format results json) into the run folder.

Which config is used:

- our ``.ckpt`` files carry their training config (the unresolved one): its model, input, codec and module nodes
  are used (read as data, only the project's own classes: :mod:`wbpose.checkpoints.stored_config`), with this
  command's overrides of those groups on top (``input=384x288`` replaces the node; ``module.flip_test=false`` sets
  one value);
- weights without a config (MMPose ``.pth``, converted files) take model, input and codec from the recipe of
  their released file name (:mod:`wbpose.checkpoints.recipes`) unless given on the command line; a file with no
  recipe needs ``model=``, ``input=`` and ``codec=``;
- the data, paths, trainer and logger always come from ``conf/eval.yaml`` and this command line, never from the
  checkpoint: a checkpoint trained on synthetic data does not make evaluation generate data, and the data root is
  only read (``data=synthetic`` on the command line evaluates on a synthetic root, generated when absent into an
  empty or generator-marked folder only). The results file is written where this command says
  (``module.test_metric.outfile``, the run folder by default).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import TQDMProgressBar

from wbpose.app.config import CONFIG_DIR, parse_override
from wbpose.app.extras import apply_extras, task_wrapper
from wbpose.app.startup import end_with_parent
from wbpose.app.train import apply_cpu_threads
from wbpose.build import build_codec, build_datamodule, build_loggers, build_module, model_arch
from wbpose.checkpoints.io import LoadedCheckpoint, check_same_arch, load_checkpoint, load_state_dict_checked
from wbpose.checkpoints.recipes import Recipe
from wbpose.checkpoints.stored_config import CHECKPOINT_GROUPS
from wbpose.data.layout import ensure_dataset
from wbpose.engine.timing import StageTimer, format_split
from wbpose.metrics.tables import metrics_table, write_metrics_json

log = logging.getLogger(__name__)

__all__ = ["build_eval_config", "evaluate", "main", "recipe_nodes"]

#: Config groups that a checkpoint's embedded config provides (and the command line may override); data is not
#: one of them: what to score on is this command's choice.
MODEL_GROUPS = CHECKPOINT_GROUPS
#: Progress-bar refresh (batches) when the output is not a terminal: a plain TQDM line every 20 batches.
LOG_REFRESH_BATCHES = 20
#: Groups a weights-only checkpoint needs from its recipe or the command line.
RECIPE_GROUPS = ("model", "input", "codec")


def recipe_nodes(recipe: Recipe, config_dir: Path = CONFIG_DIR) -> dict[str, DictConfig]:
    """The ``model``, ``input`` and ``codec`` nodes of a recipe, read from the files of ``conf/``."""
    h, w = recipe.image_hw
    nodes = {
        "model": OmegaConf.load(config_dir / "model" / f"hrnet_{recipe.arch}.yaml"),
        "input": OmegaConf.load(config_dir / "input" / f"{h}x{w}.yaml"),
        "codec": OmegaConf.load(config_dir / "codec" / f"{recipe.codec}.yaml"),
    }
    nodes["input"].sigma = recipe.sigma
    return nodes  # type: ignore[return-value]


def _weights_only_config(cfg: DictConfig, loaded: LoadedCheckpoint) -> DictConfig:
    """``cfg`` with the groups the command line left empty filled from the checkpoint's recipe."""
    missing = [g for g in RECIPE_GROUPS if cfg.get(g) is None]
    if missing and loaded.recipe is not None:
        nodes = recipe_nodes(loaded.recipe)
        with open_dict(cfg):
            for group in missing:
                cfg[group] = nodes[group]
        log.info("%s: recipe %s (%s)", loaded.source, loaded.recipe.experiment, ", ".join(missing))
        missing = []
    if missing:
        raise ValueError(
            f"{loaded.source} has no embedded config and its name matches no released MMPose checkpoint: select "
            f"{', '.join(f'{g}=<name>' for g in missing)} on the command line "
            "(e.g. model=hrnet_w32 input=256x192 codec=msra)"
        )
    return cfg


def build_eval_config(cfg: DictConfig, loaded: LoadedCheckpoint, overrides: Sequence[str] = ()) -> DictConfig:
    """Merge a checkpoint's training config (or its recipe) with the evaluation config (see the module docstring).

    Args:
        cfg: the composed ``conf/eval.yaml`` (with this command's overrides applied).
        loaded: the checkpoint.
        overrides: this command's overrides (``HydraConfig.get().overrides.task``).
    """
    if loaded.raw_config is None:
        return _weights_only_config(cfg, loaded)
    final = OmegaConf.create(loaded.raw_config)
    with open_dict(final):
        for key in list(final.keys()):
            if key not in MODEL_GROUPS:
                del final[key]
        for key, value in cfg.items():  # eval keys, paths, trainer, logger
            if key not in MODEL_GROUPS:
                final[key] = value
        for item in overrides:
            key, _ = parse_override(item)
            group = key.split(".", 1)[0]
            if group not in MODEL_GROUPS:
                continue
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
            if "." in key:
                OmegaConf.update(final, key, value, merge=False, force_add=True)
            elif value is not None:
                final[group] = cfg[group]
        # where the metrics write is this command's choice (the checkpoint's outfile values are dropped as data)
        for which in ("val_metric", "test_metric"):
            if OmegaConf.select(final, f"module.{which}") is not None and OmegaConf.select(cfg, f"module.{which}"):
                final.module[which].outfile = cfg.module[which].get("outfile")
    return final


#: Keys of the evaluation config that moved into the data config (``key=...`` -> ``data.<new key>=...``).
MOVED_KEYS = {"bbox_source": "val_bbox_source", "det_file": "det_file"}


def _refuse_moved_keys(cfg: DictConfig) -> None:
    """Name the new spelling of a moved key (given as ``+bbox_source=gt`` it would otherwise be ignored)."""
    moved = [key for key in MOVED_KEYS if key in cfg]
    if moved:
        spelled = ", ".join(f"{key}= is data.{MOVED_KEYS[key]}=" for key in moved)
        raise ValueError(f"the box source is set in the data config: {spelled} (e.g. data.val_bbox_source=gt)")


@task_wrapper
def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[dict[str, float], dict[str, Any]]:
    """Score ``cfg.ckpt_path`` on the val split and write ``metrics.json`` into ``cfg.paths.output_dir``.

    Args:
        cfg: a config composed from ``conf/eval.yaml``.
        overrides: the command-line overrides (to re-apply them over the checkpoint's config).

    Returns:
        ``(metrics, objects)``: metric name -> value (``test/body_ap`` ...), and ``cfg``, ``module``,
        ``datamodule``, ``trainer``, ``timings`` (seconds per stage: :data:`wbpose.engine.timing.STAGES`, also
        printed as one line after the table).
    """
    _refuse_moved_keys(cfg)
    end_with_parent()  # a rank started by rank 0 ends with it
    apply_extras(cfg)
    loaded = load_checkpoint(cfg.ckpt_path)
    final = build_eval_config(cfg, loaded, overrides)
    check_same_arch(model_arch(final), loaded.arch, loaded.source)
    apply_cpu_threads(final)
    if final.get("seed") is not None:
        pl.seed_everything(int(final.seed), workers=True)
    ensure_dataset(final.data, train=False)

    codec = build_codec(final)
    datamodule = build_datamodule(final, codec)
    module = build_module(final, codec=codec, ann_file=datamodule.val_ann_file, init_weights=False)
    if not final.get("save_results", True):
        module.test_metric.outfile = None
    load_state_dict_checked(module.model, loaded.state_dict, loaded.source)
    loggers = build_loggers(final)
    timer = StageTimer()
    callbacks: list[pl.Callback] = [timer]
    if final.trainer.get("enable_progress_bar", True) and not sys.stdout.isatty():
        # Lightning's default bar (rich) draws only once at the end when the output is a log file
        callbacks.append(TQDMProgressBar(refresh_rate=LOG_REFRESH_BATCHES))
    trainer: pl.Trainer = instantiate(final.trainer, logger=loggers or False, callbacks=callbacks)
    datamodule.prepare_train = False  # evaluation reads the val split only: never parse the train json
    start = time.perf_counter()
    datamodule.prepare_data()  # parse (or read the cache of) the annotation and detector files, timed apart
    datamodule.setup("test")
    timer.seconds["loading"] = time.perf_counter() - start
    results = trainer.test(module, datamodule=datamodule, verbose=False)  # loggers closed by the task wrapper
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if trainer.is_global_zero:
        out = Path(final.paths.output_dir)
        write_metrics_json(
            out / "metrics.json",
            metrics,
            checkpoint=loaded.source,
            bbox_source=final.data.val_bbox_source,
            arch=model_arch(final),
        )
        OmegaConf.save(final, out / "eval_config.yaml")
        table = metrics_table({model_arch(final) or "model": metrics})
        print(f"{loaded.source} ({final.data.val_bbox_source} boxes):\n{table}")
        print(format_split(timer.seconds, boxes=len(datamodule.val_dataset)))
    objects = {"cfg": final, "module": module, "datamodule": datamodule, "trainer": trainer, "timings": timer.seconds}
    return metrics, objects


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """``wbpose-eval ckpt_path=<file> [data.val_bbox_source=det|gt] [...]``; returns whole-body AP."""
    from hydra.core.hydra_config import HydraConfig

    metrics, _ = evaluate(cfg, overrides=list(HydraConfig.get().overrides.task))
    return metrics.get("test/wholebody_ap")

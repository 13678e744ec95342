"""Console commands (``pyproject.toml`` ``[project.scripts]``): ``wbpose-train``, ``wbpose-eval``,
``wbpose-score``, ``wbpose-summarize``, ``wbpose-model-info``, ``wbpose-demo``, ``wbpose-synthetic``.

They run from any directory, with the installed config tree (or this checkout's ``conf/``); Hydra's own flags work
as usual: ``-m`` for multiruns, ``--config-dir DIR`` to add a folder of your own configs (e.g. your
``experiment/my_run.yaml``), ``--cfg job`` to print the composed config. ``scripts/*.py`` call the same functions.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from wbpose.app.config import CONFIG_DIR, compose_config, project_root

__all__ = ["demo", "eval_main", "model_info", "score", "summarize", "train_main"]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def train_main(cfg: DictConfig) -> float | None:
    """``wbpose-train [experiment=<name>] [group=option ...] [key=value ...]``; returns the optimised metric."""
    from wbpose.app.train import train

    value, _ = train(cfg)
    return value


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def eval_main(cfg: DictConfig) -> float | None:
    """``wbpose-eval ckpt_path=<file> [bbox_source=det|gt] [...]``; returns whole-body AP."""
    from hydra.core.hydra_config import HydraConfig

    from wbpose.app.evaluate import evaluate

    metrics, _ = evaluate(cfg, overrides=list(HydraConfig.get().overrides.task))
    return metrics.get("test/wholebody_ap")


DEMO_USAGE = """usage: wbpose-demo [key=value ...]

Train the tiny HRNet on synthetic data (generated on first use) and print the per-part AP/AR before and after;
writes outputs/demo/ (metrics_before.json, metrics.json, predictions.png, checkpoints, csv and offline wandb logs).
The arguments are Hydra overrides of conf/train.yaml with experiment=demo, e.g. trainer.max_epochs=5 seed=1."""


def demo(argv: list[str] | None = None) -> None:
    """``wbpose-demo [overrides]``: the README's main job (synthetic data, train, evaluate, picture)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(DEMO_USAGE)
        return
    from wbpose.app.demo import run_demo

    overrides = ["experiment=demo", "logger=[csv,wandb]", "callbacks=tqdm", *args]
    run_demo(compose_config("train", overrides, output_dir=project_root() / "outputs" / "demo"))


def score(argv: list[str] | None = None) -> int:
    """``wbpose-score ANN.json RESULTS.json [--out metrics.json]``."""
    from wbpose.app.score import main

    return main(argv)


def summarize(argv: list[str] | None = None) -> str:
    """``wbpose-summarize <multirun dir>``."""
    from wbpose.app.sweep import main

    return main(argv)


def model_info(argv: list[str] | None = None) -> str:
    """``wbpose-model-info [--archs ...] [--sizes ...]``."""
    from wbpose.app.model_info import main

    return main(argv)

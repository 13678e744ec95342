"""lightning-hydra-template's config names compose and instantiate; extras, model summary FLOPs, model_info."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.utils import instantiate
from pytorch_lightning.utilities.model_summary import ModelSummary

from helpers.extras import require_extra
from helpers.paths import REPO_ROOT
from wbpose.app.config import CONFIG_DIR, compose_config
from wbpose.app.extras import apply_extras
from wbpose.app.model_info import count
from wbpose.build import build_callbacks, build_loggers, build_module

TINY = ["model=hrnet_tiny", "data=synthetic"]


@pytest.mark.parametrize("debug", ["fdr", "fast_dev_run", "limit", "overfit", "profiler"])
def test_debug_modes(debug: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY, f"debug={debug}"], output_dir=tmp_path)
    trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=False)
    assert isinstance(trainer, pl.Trainer) and cfg.trainer.accelerator == "cpu"
    expected = {"fdr": "fast_dev_run", "fast_dev_run": "fast_dev_run", "profiler": "profiler"}.get(debug)
    if expected == "fast_dev_run":
        assert trainer.fast_dev_run
    if expected == "profiler":
        assert type(trainer.profiler).__name__ == "SimpleProfiler"


@pytest.mark.parametrize("logger", ["many_loggers", "many", "csv", "wandb", "tensorboard", "mlflow"])
def test_loggers(logger: str, tmp_path: Path) -> None:
    if logger == "mlflow":  # its client opens (creates) the store in the run folder: the one slow case here
        require_extra("mlflow", "mlflow")
    cfg = compose_config("train", [*TINY, f"logger={logger}"], output_dir=tmp_path)
    loggers = build_loggers(cfg)
    names = sorted(type(lg).__name__ for lg in loggers)
    expected = {
        "many_loggers": ["CSVLogger", "TensorBoardLogger", "WandbLogger"],
        "many": ["CSVLogger", "TensorBoardLogger", "WandbLogger"],
        "csv": ["CSVLogger"],
        "wandb": ["WandbLogger"],
        "tensorboard": ["TensorBoardLogger"],
        "mlflow": ["MLFlowLogger"],
    }[logger]
    assert names == expected
    if logger == "mlflow":
        assert (tmp_path / "mlflow.db").is_file() and not list(Path.cwd().glob("mlruns"))


def test_many_and_mlflow_compose_together(tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY, "logger=[many,mlflow]"], output_dir=tmp_path)
    targets = {name: node._target_.rsplit(".", 1)[-1] for name, node in cfg.logger.items()}
    assert targets == {"csv": "CSVLogger", "wandb": "WandbLogger", "tensorboard": "TensorBoardLogger",
                       "mlflow": "MLFlowLogger"}  # fmt: skip


def test_a_logger_without_its_package_names_it_and_its_install_line(tmp_path: Path, monkeypatch) -> None:
    """MLflow is an extra: without it, logger=mlflow stops at start, naming the node, the package and the extra."""
    import pytorch_lightning.loggers.mlflow as lightning_mlflow
    from lightning_utilities.core.imports import RequirementCache

    monkeypatch.setattr(lightning_mlflow, "_MLFLOW_AVAILABLE", RequirementCache("mlflow>=1000"))  # never met
    cfg = compose_config("train", [*TINY, "logger=mlflow"], output_dir=tmp_path)
    message = r"logger mlflow \(pytorch_lightning\.loggers\.MLFlowLogger\) needs a package that is not installed: "
    with pytest.raises(ModuleNotFoundError, match=message + r".*mlflow>=1000.*pip install -e \"\.\[mlflow\]\""):
        build_loggers(cfg)


def test_comet_composes_and_names_its_package(tmp_path: Path) -> None:
    """logger=comet (online: Lightning's offline CometLogger logs nothing) needs comet-ml, not one of the extras."""
    if importlib.util.find_spec("comet_ml") is not None:
        pytest.skip("comet-ml is installed: logger=comet would start an online experiment")
    cfg = compose_config("train", [*TINY, "logger=comet", "seed=2", "paths.log_dir=/elsewhere"], output_dir=tmp_path)
    assert cfg.logger.comet.project == "wbpose" and cfg.logger.comet.name == "data=synthetic,model=hrnet_tiny,seed=2"
    with pytest.raises(
        ModuleNotFoundError, match=r"logger comet .*comet-ml>=3\.44\.4.*pip install \"comet-ml>=3\.44\.4\""
    ):
        build_loggers(cfg)


@pytest.mark.parametrize("name", ["neptune", "aim"])
def test_loggers_not_offered_are_said_why(name: str) -> None:
    """The template's neptune and aim configs are not offered (Neptune has been sunset and Lightning's NeptuneLogger
    only raises; aim's logger is not Lightning's): the training page says so."""
    assert not (CONFIG_DIR / "logger" / f"{name}.yaml").exists()
    assert f"`{name}`" in (REPO_ROOT / "docs" / "training.md").read_text()


@pytest.mark.parametrize(
    ("callbacks", "expected"),
    [
        ("default", {"ModelCheckpoint", "LastCheckpoint", "RichModelSummary", "RichProgressBar",
                     "LearningRateMonitor", "DashboardSummary"}),
        ("early_stopping", {"EarlyStopping"}),
        ("model_checkpoint", {"ModelCheckpoint", "LastCheckpoint"}),
        ("model_summary", {"RichModelSummary"}),
        ("rich_progress_bar", {"RichProgressBar"}),
        ("learning_rate_monitor", {"LearningRateMonitor"}),
        ("dashboards", {"DashboardSummary"}),
        ("tqdm", {"ModelCheckpoint", "LastCheckpoint", "RichModelSummary", "TQDMProgressBar", "LearningRateMonitor",
                  "DashboardSummary"}),
        ("[default,early_stopping]", {"ModelCheckpoint", "LastCheckpoint", "RichModelSummary", "RichProgressBar",
                                      "LearningRateMonitor", "DashboardSummary", "EarlyStopping"}),
    ],
)  # fmt: skip
def test_callbacks(callbacks: str, expected: set[str], tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY, f"callbacks={callbacks}"], output_dir=tmp_path)
    built = build_callbacks(cfg)
    assert {type(cb).__name__ for cb in built} == expected
    instantiate(cfg.trainer, callbacks=built, logger=False, accelerator="cpu")  # Lightning accepts the set


@pytest.mark.parametrize(
    ("trainer", "accelerator", "devices", "strategy"),
    [("cpu", "cpu", 1, None), ("gpu", "gpu", 1, None), ("mps", "mps", 1, None), ("ddp", "gpu", 8, "ddp"),
     ("ddp_sim", "cpu", 2, "ddp_spawn"), ("ddp_cpu", "cpu", 2, "ddp")],
)  # fmt: skip
def test_trainers(trainer: str, accelerator: str, devices: int, strategy: str | None, tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY, f"trainer={trainer}"], output_dir=tmp_path)
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.get("strategy")) == (
        accelerator,
        devices,
        strategy,
    )
    if accelerator == "cpu":  # the ones this machine can build
        built = instantiate(cfg.trainer, logger=False, callbacks=[])
        assert built.num_devices == devices and built.accelerator.__class__.__name__ == "CPUAccelerator"


def test_extras_enforce_tags_and_print_the_tree(tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY, "tags=[]"], output_dir=tmp_path)
    with pytest.raises(ValueError, match="no tags"):
        apply_extras(cfg)
    cfg = compose_config("train", [*TINY, "tags=[ablation]"], output_dir=tmp_path)
    apply_extras(cfg)
    tree = (tmp_path / "config_tree.log").read_text()
    assert "CONFIG" in tree and "arch: tiny" in tree and tree.index("model") < tree.index("trainer")
    cfg = compose_config("train", [*TINY, "tags=[]", "extras.enforce_tags=false", "extras.print_config=false"],
                         output_dir=tmp_path / "quiet")  # fmt: skip
    apply_extras(cfg)
    assert not (tmp_path / "quiet" / "config_tree.log").exists()


def test_model_summary_shows_shapes_and_flops(tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY], output_dir=tmp_path)
    module = build_module(cfg, with_metrics=False, init_weights=False)
    summary = ModelSummary(module, max_depth=1)
    _, flops = count("tiny", "128x96")
    assert summary.total_flops == flops > 0
    assert summary.in_sizes[0] == [1, 3, 128, 96] and summary.out_sizes[0] == [1, 133, 32, 24]


@pytest.mark.parametrize(
    ("arch", "size", "params_m", "paper_gmacs"),
    # HRNet paper (Sun et al. 2019, Table 1, 17-keypoint COCO models): params and GFLOPs (multiply-adds)
    [("w32", "256x192", 28.5, 7.1), ("w32", "384x288", 28.5, 16.0), ("w48", "256x192", 63.6, 14.6),
     ("w48", "384x288", 63.6, 32.9)],
)  # fmt: skip
def test_model_info_against_the_hrnet_paper(arch: str, size: str, params_m: float, paper_gmacs: float) -> None:
    """Parameters match; torch's FLOP counter gives 7-8% more multiply-adds than the paper at every size (the same
    ratio everywhere, so the difference is one of counting convention, not of the network)."""
    params, flops = count(arch, size)
    assert params / 1e6 == pytest.approx(params_m, rel=0.005)
    ratio = flops / 2e9 / paper_gmacs
    assert 1.06 < ratio < 1.09

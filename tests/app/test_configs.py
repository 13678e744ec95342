"""Every config composes and its model, codec and module instantiate (no data needed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers.paths import REPO_ROOT
from wbpose.app.config import CONFIG_DIR, compose_config, list_experiments
from wbpose.build import build_module
from wbpose.codecs import DarkHeatmap, MSRAHeatmap
from wbpose.engine.module import TopdownPoseModule

EXPERIMENTS = list_experiments()
SEED_ROWS = {
    "w32_256x192_msra": ("w32", [256, 192], [64, 48], 2, MSRAHeatmap, 64),
    "w32_384x288_msra": ("w32", [384, 288], [96, 72], 3, MSRAHeatmap, 64),
    "w48_256x192_msra": ("w48", [256, 192], [64, 48], 2, MSRAHeatmap, 32),
    "w48_384x288_msra": ("w48", [384, 288], [96, 72], 3, MSRAHeatmap, 32),
    "w32_256x192_dark": ("w32", [256, 192], [64, 48], 2, DarkHeatmap, 64),
    "w48_384x288_dark_plus": ("w48", [384, 288], [96, 72], 3, DarkHeatmap, 32),
}


def test_six_seed_rows_present() -> None:
    assert set(SEED_ROWS) <= set(EXPERIMENTS)


#: Columns of the seed tables (MMPose's hrnet / hrnet_dark COCO-WholeBody result tables), in their order.
SEED_COLUMNS = ("body_ap", "body_ar", "foot_ap", "foot_ar", "face_ap", "face_ar", "hand_ap", "hand_ar",
                "wholebody_ap", "wholebody_ar")  # fmt: skip


def seed_tables() -> dict[str, dict[str, float]]:
    """The rows of the seed tables (``$WBPOSE_SEED_TABLES`` or ``<checkout>/../shared/seeds``, ``*.txt``) by
    checkpoint URL: the ten AP/AR numbers of each."""
    folder = Path(os.environ.get("WBPOSE_SEED_TABLES") or REPO_ROOT.parent / "shared" / "seeds")
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"no seed tables in {folder} (set WBPOSE_SEED_TABLES or put shared/ beside the checkout)")
    rows = {}
    for path in files:
        for line in path.read_text().splitlines():
            ckpt = re.search(r"\[ckpt\]\((\S+?)\)", line)
            if not line.startswith("| [pose_hrnet") or not ckpt:
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[ckpt.group(1)] = dict(zip(SEED_COLUMNS, (float(c) for c in cells[2:12])))
    return rows


def test_reference_numbers_equal_the_seed_tables(tmp_path) -> None:
    """Each seed experiment's ``reference`` block holds its seed-table row: same checkpoint, same ten numbers."""
    tables = seed_tables()
    assert len(tables) >= len(SEED_ROWS)
    for name in SEED_ROWS:
        reference = compose_config("train", [f"experiment={name}"], output_dir=tmp_path).reference
        assert reference.checkpoint in tables, f"{name}: {reference.checkpoint} is in no seed table"
        row = tables[reference.checkpoint]
        assert {k: float(reference[k]) for k in SEED_COLUMNS} == row, name


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_instantiates(name: str, tmp_path) -> None:
    cfg = compose_config("train", [f"experiment={name}"], output_dir=tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.optimized_metric == "val/wholebody_ap"
    codec = instantiate(cfg.codec)
    # one home: input.* is what data and codec see
    assert list(codec.image_hw) == list(cfg.data.image_hw) == list(cfg.input.image_hw)
    assert list(codec.heatmap_hw) == list(cfg.input.heatmap_hw) and codec.sigma == cfg.input.sigma
    assert "heatmap_hw" not in cfg.data and "sigma" not in cfg.data
    if name in SEED_ROWS:
        arch, image_hw, heatmap_hw, sigma, codec_cls, batch = SEED_ROWS[name]
        assert cfg.model.net.arch == arch
        assert list(cfg.input.image_hw) == image_hw and list(cfg.input.heatmap_hw) == heatmap_hw
        assert cfg.input.sigma == sigma and isinstance(codec, codec_cls)
        assert cfg.data.batch_size == batch and cfg.trainer.devices == 8
        assert cfg.optim.lr == 5e-4 and list(cfg.sched.milestones) == [170, 200]
        assert cfg.trainer.max_epochs == 210
        assert 0.0 < cfg.reference.wholebody_ap < 1.0
        if codec_cls is DarkHeatmap:
            assert cfg.codec.blur_kernel == 11
    # big models on the meta device: shapes only, no memory, no init time
    with torch.device("meta"):
        module = build_module(cfg, codec=codec, with_metrics=False, init_weights=False)
    assert isinstance(module, TopdownPoseModule)
    h, w = cfg.data.image_hw
    out = module.model(torch.empty(1, 3, h, w, device="meta"))
    assert tuple(out.shape) == (1, 133, *cfg.input.heatmap_hw)


@pytest.mark.parametrize("model", ["hrnet_w32", "hrnet_w48", "hrnet_tiny"])
@pytest.mark.parametrize("input_size", ["256x192", "384x288", "128x96"])
@pytest.mark.parametrize("data", ["coco_wholebody", "synthetic"])
def test_model_input_data_grid(model: str, input_size: str, data: str, tmp_path) -> None:
    overrides = [f"model={model}", f"data={data}", f"input={input_size}", "codec=dark"]
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    h, w = cfg.data.image_hw
    assert f"{h}x{w}" == input_size  # the command line beats the data group's default input
    assert [h // 4, w // 4] == list(cfg.input.heatmap_hw)
    assert cfg.codec.image_hw == cfg.data.image_hw


def test_synthetic_data_defaults_to_small_input(tmp_path) -> None:
    cfg = compose_config("train", ["data=synthetic"], output_dir=tmp_path)
    assert list(cfg.input.image_hw) == [128, 96] and list(cfg.codec.heatmap_hw) == [32, 24]


def test_recipe_warmup_quirk_flag(tmp_path) -> None:
    cfg = compose_config("train", ["experiment=w48_384x288_msra"], output_dir=tmp_path)
    assert cfg.sched.warmup_iters == 500  # 1.x default
    cfg = compose_config("train", ["experiment=w48_384x288_msra", "sched=multistep"], output_dir=tmp_path)
    assert cfg.sched.warmup_iters == 0  # 0.x: warmup=None


def test_command_line_trainer_beats_experiment(tmp_path) -> None:
    cfg = compose_config("train", ["experiment=w32_256x192_msra", "trainer=cpu"], output_dir=tmp_path)
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1 and "strategy" not in cfg.trainer


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "hparams_search").glob("*.yaml")))
def test_hparams_search_composes(name: str, tmp_path) -> None:
    cfg = compose_config("train", [f"hparams_search={name}", "experiment=w32_256x192_msra"], output_dir=tmp_path)
    assert cfg.optimized_metric == "val/wholebody_ap"


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "debug").glob("*.yaml")))
def test_debug_configs_compose(name: str, tmp_path) -> None:
    cfg = compose_config("train", [f"debug={name}"], output_dir=tmp_path)
    assert cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "logger").glob("*.yaml")))
def test_logger_configs_compose(name: str, tmp_path) -> None:
    cfg = compose_config("train", [f"logger={name}"], output_dir=tmp_path)
    OmegaConf.resolve(cfg)
    if name in ("wandb", "many"):
        assert cfg.logger.wandb.project == "wbpose"
    if name == "mlflow":  # a store in the run folder, never in the launch directory
        assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
        assert cfg.logger.mlflow.artifact_location.startswith(str(tmp_path))


@pytest.mark.parametrize("name", ["default", "cpu", "gpu", "ddp", "ddp_cpu", "multinode"])
def test_trainer_configs_compose(name: str, tmp_path) -> None:
    cfg = compose_config("train", [f"trainer={name}"], output_dir=tmp_path)
    assert cfg.trainer.use_distributed_sampler is False


def test_eval_config_composes(tmp_path) -> None:
    cfg = compose_config("eval", ["ckpt_path=x.ckpt"], output_dir=tmp_path)
    assert cfg.data.val_bbox_source == "det" and cfg.get("model") is None
    assert "bbox_source" not in cfg and "det_file" not in cfg  # one place: the data config


def test_eval_box_source_has_one_spelling(tmp_path) -> None:
    """The old top-level keys are refused with the new spelling, never silently ignored."""
    from wbpose.app.evaluate import evaluate

    cfg = compose_config("eval", ["ckpt_path=x.ckpt", "data.val_bbox_source=gt"], output_dir=tmp_path)
    assert cfg.data.val_bbox_source == "gt"
    with pytest.raises(Exception, match="bbox_source"):  # Hydra: not in the config
        compose_config("eval", ["ckpt_path=x.ckpt", "bbox_source=gt"], output_dir=tmp_path)
    added = compose_config("eval", ["ckpt_path=x.ckpt", "+bbox_source=gt", "+det_file=d.json"], output_dir=tmp_path)
    message = r"bbox_source= is data\.val_bbox_source=, det_file= is data\.det_file="
    with pytest.raises(ValueError, match=message):
        evaluate(added)


def test_unknown_experiment_lists_choices(tmp_path) -> None:
    with pytest.raises(ValueError, match="available: .*w32_256x192_msra"):
        compose_config("train", ["experiment=w99_nope"], output_dir=tmp_path)


@pytest.mark.parametrize("data", ["coco_wholebody", "synthetic"])
def test_datamodule_builds_from_default_paths(data: str, tmp_path) -> None:
    from wbpose.build import build_datamodule

    cfg = compose_config("train", [f"data={data}"], output_dir=tmp_path)
    codec = instantiate(cfg.codec)
    dm = build_datamodule(cfg, codec)  # constructing reads no files
    assert dm.data_root == str(CONFIG_DIR.parent / "data" / ("synthetic" if data == "synthetic" else "coco_wholebody"))
    assert dm.image_hw == tuple(cfg.data.image_hw)

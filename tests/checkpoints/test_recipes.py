"""Released MMPose checkpoints carry their recipe (arch, input size, codec, sigma) by file name."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from wbpose.app.config import CONFIG_DIR, compose_config
from wbpose.checkpoints.recipes import RECIPES, recipe_for_file, recipe_from_name


def test_six_released_files_one_per_seed_row() -> None:
    assert len(RECIPES) == 6
    assert {r.experiment for r in RECIPES.values()} == {
        "w32_256x192_msra",
        "w32_384x288_msra",
        "w48_256x192_msra",
        "w48_384x288_msra",
        "w32_256x192_dark",
        "w48_384x288_dark_plus",
    }
    for name, recipe in RECIPES.items():
        assert recipe.url.endswith("/" + name)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_matches_its_experiment_config(name: str, tmp_path: Path) -> None:
    """The table and conf/experiment agree: same checkpoint file, arch, input size, heatmap size, sigma, codec."""
    recipe = RECIPES[name]
    cfg = compose_config("train", [f"experiment={recipe.experiment}"], output_dir=tmp_path)
    assert Path(cfg.reference.checkpoint).name == name
    assert cfg.model.net.arch == recipe.arch
    assert tuple(cfg.input.image_hw) == recipe.image_hw and tuple(cfg.input.heatmap_hw) == recipe.heatmap_hw
    assert cfg.input.sigma == recipe.sigma
    assert cfg.codec._target_.endswith("DarkHeatmap" if recipe.codec == "dark" else "MSRAHeatmap")


def test_names_are_matched_by_pattern_and_unknown_names_give_none() -> None:
    renamed = recipe_from_name("/ckpts/copy_of_hrnet_w32_coco_wholebody_384x288.pth")
    assert renamed is not None and (renamed.arch, renamed.image_hw, renamed.codec) == ("w32", (384, 288), "msra")
    assert renamed.sigma == 3.0 and renamed.url == ""
    dark = recipe_for_file(Path("x/hrnet_w48_coco_wholebody_256x192_dark.pth"))
    assert dark is not None and (dark.arch, dark.image_hw, dark.codec, dark.sigma) == ("w48", (256, 192), "dark", 2.0)
    for unknown in ("model.pth", "hrnet_w18_coco_wholebody_256x192.pth", "hrnet_w32_coco_256x192.pth", "last.ckpt"):
        assert recipe_from_name(unknown) is None, unknown


def test_input_groups_exist_for_every_recipe() -> None:
    for recipe in RECIPES.values():
        h, w = recipe.image_hw
        node = OmegaConf.load(CONFIG_DIR / "input" / f"{h}x{w}.yaml")
        assert tuple(node.image_hw) == recipe.image_hw and node.sigma == recipe.sigma

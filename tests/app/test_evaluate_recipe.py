"""scripts/eval.py on weights without a config: the recipe of a released file name fills model, input and codec."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from wbpose.app.config import compose_config
from wbpose.app.evaluate import build_eval_config
from wbpose.build import build_codec
from wbpose.checkpoints.io import LoadedCheckpoint
from wbpose.checkpoints.recipes import RECIPES, recipe_from_name
from wbpose.codecs import DarkHeatmap, MSRAHeatmap

W48_DARK = "hrnet_w48_coco_wholebody_384x288_dark-f5726563_20200918.pth"


def weights_only(name: str, arch: str = "w48") -> LoadedCheckpoint:
    return LoadedCheckpoint({}, "mmpose", arch, None, None, recipe_from_name(name), f"/ckpts/{name}")


def test_released_name_fills_model_input_codec(tmp_path: Path) -> None:
    cfg = compose_config("eval", [f"ckpt_path=/ckpts/{W48_DARK}"], output_dir=tmp_path)
    final = build_eval_config(cfg, weights_only(W48_DARK))
    OmegaConf.resolve(final)
    assert final.model.net.arch == "w48"
    assert list(final.input.image_hw) == [384, 288] and final.input.sigma == 3
    codec = build_codec(final)
    assert isinstance(codec, DarkHeatmap) and codec.input_wh == (288, 384) and codec.blur_kernel == 11
    assert list(final.data.image_hw) == [384, 288]  # the data node interpolates the same input


def test_command_line_beats_the_recipe(tmp_path: Path) -> None:
    cfg = compose_config("eval", [f"ckpt_path={W48_DARK}", "codec=msra", "input=256x192"], output_dir=tmp_path)
    final = build_eval_config(cfg, weights_only(W48_DARK), ["codec=msra", "input=256x192"])
    assert isinstance(build_codec(final), MSRAHeatmap) and list(final.input.image_hw) == [256, 192]
    assert final.model.net.arch == "w48"  # not given: from the recipe


def test_unknown_weights_name_the_missing_flags(tmp_path: Path) -> None:
    cfg = compose_config("eval", ["ckpt_path=/ckpts/model.pth", "model=hrnet_w32"], output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"model.pth .* select input=<name>, codec=<name>"):
        build_eval_config(cfg, weights_only("model.pth", "w32"))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_released_name_builds_its_codec(name: str, tmp_path: Path) -> None:
    recipe = RECIPES[name]
    cfg = compose_config("eval", [f"ckpt_path={name}"], output_dir=tmp_path)
    final = build_eval_config(cfg, weights_only(name, recipe.arch))
    codec = build_codec(final)
    assert tuple(codec.image_hw) == recipe.image_hw and tuple(codec.heatmap_hw) == recipe.heatmap_hw
    assert codec.sigma == recipe.sigma and final.model.net.arch == recipe.arch
    with torch.device("meta"):
        from wbpose.build import build_model

        model = build_model(final, init_weights=False)
    assert model.head.final_layer.out_channels == 133

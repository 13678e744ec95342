"""The codec factory by name and the default-sigma rule (wbpose.codecs.factory), and the configs that repeat it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from wbpose.checkpoints.recipes import RECIPES
from wbpose.codecs import CODECS, DarkHeatmap, MSRAHeatmap, default_sigma, make_codec

CONF_INPUT = Path(__file__).resolve().parents[2] / "conf" / "input"
#: conf/input files that deliberately depart from the recipe rule: the small synthetic / CPU size (not an MMPose
#: recipe) uses sigma 1 on its 32x24 heatmaps.
OWN_SIGMA = {"128x96.yaml": 1.0}


@pytest.mark.parametrize(
    ("image_hw", "sigma"),
    [((256, 192), 2.0), ((384, 288), 3.0), ((128, 96), 2.0), ((257, 192), 3.0), ((260, 192), 3.0)],
)
def test_default_sigma_is_the_recipe_rule(image_hw, sigma):
    assert default_sigma(image_hw) == sigma


def test_every_recipe_uses_the_default_sigma():
    assert RECIPES, "no recipes"
    for name, recipe in RECIPES.items():
        assert recipe.sigma == default_sigma(recipe.image_hw), name


def test_conf_input_sigmas_follow_the_rule():
    files = sorted(CONF_INPUT.glob("*.yaml"))
    assert {f.name for f in files} >= {"256x192.yaml", "384x288.yaml"}
    for f in files:
        node = yaml.safe_load(f.read_text())
        hw = tuple(node["image_hw"])
        assert tuple(node["heatmap_hw"]) == (hw[0] // 4, hw[1] // 4), f.name
        assert float(node["sigma"]) == OWN_SIGMA.get(f.name, default_sigma(hw)), f.name


@pytest.mark.parametrize("name", CODECS)
def test_make_codec_builds_the_named_class(name):
    codec = make_codec(name, (384, 288))
    assert type(codec) is {"msra": MSRAHeatmap, "dark": DarkHeatmap}[name]
    assert tuple(codec.image_hw) == (384, 288) and tuple(codec.heatmap_hw) == (96, 72)
    assert codec.sigma == 3.0
    if name == "dark":
        assert codec.blur_kernel == 11


def test_make_codec_explicit_values_win():
    codec = make_codec("dark", (128, 96), sigma=1.0, heatmap_hw=(32, 24), blur_kernel=17)
    assert codec.sigma == 1.0 and tuple(codec.heatmap_hw) == (32, 24) and codec.blur_kernel == 17
    direct = DarkHeatmap((128, 96), (32, 24), 1.0, blur_kernel=17)
    kp = np.tile(np.array([[40.3, 60.7]], dtype=np.float32), (133, 1))
    vis = np.ones(133, dtype=np.float32)
    np.testing.assert_array_equal(codec.encode(kp, vis).heatmaps, direct.encode(kp, vis).heatmaps)


def test_make_codec_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown codec 'udp'"):
        make_codec("udp", (256, 192))
    with pytest.raises(ValueError, match="divisible by the heatmap stride 4"):
        make_codec("msra", (255, 192))

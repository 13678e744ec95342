"""The geometric augmentation as one config node (``data.geometric``, conf/augment/geometric.yaml).

The published recipes must train with MMPose 1.x's augmentation: RandomFlip(prob 0.5), RandomHalfBody(prob 0.3),
RandomBBoxTransform(shift_factor 0.16, shift_prob 0.3, scale_factor (0.5, 1.5), scale_prob 1, rotate_factor 80,
rotate_prob 0.6) (MMPose 1.3.2 ``common_transforms.py`` defaults; the HRNet whole-body configs pass none). The
values below are written out from that source, not read from this project's files.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from wbpose.app.config import CONFIG_DIR, compose_config, list_experiments
from wbpose.data.augment import GeometricAugment, RandomBBoxTransform, RandomFlip, RandomHalfBody

#: MMPose 1.x's training augmentation values (the recipe of every published HRNet whole-body row).
MMPOSE_RECIPE = {
    "flip_prob": 0.5,
    "half_body_prob": 0.3,
    "half_body_mode": "1.x",
    "shift_factor": 0.16,
    "shift_prob": 0.3,
    "scale_factor": (0.5, 1.5),
    "rotate_factor": 80.0,
    "rotate_prob": 0.6,
}
RECIPES = [name for name in list_experiments() if name != "demo"]


def _values(augment: GeometricAugment) -> dict:
    return {k: getattr(augment, k) for k in MMPOSE_RECIPE}


def test_recipes_exist() -> None:
    assert len(RECIPES) >= 6 and "w48_384x288_dark_plus" in RECIPES


@pytest.mark.parametrize("experiment", RECIPES)
def test_recipe_augmentation_is_mmposes(experiment: str, tmp_path) -> None:
    """The composed recipe, and the DataModule and transforms built from it, carry MMPose's values."""
    from wbpose.build import build_datamodule

    cfg = compose_config("train", [f"experiment={experiment}"], output_dir=tmp_path)
    assert _values(GeometricAugment.from_config(cfg.data.geometric)) == MMPOSE_RECIPE
    dm = build_datamodule(cfg, None)
    assert _values(dm.geometric) == MMPOSE_RECIPE
    flip, half_body, bbox = dm.geometric.build().transforms
    assert isinstance(flip, RandomFlip) and flip.prob == 0.5
    assert isinstance(half_body, RandomHalfBody) and (half_body.prob, half_body.mode) == (0.3, "1.x")
    assert isinstance(bbox, RandomBBoxTransform)
    assert (bbox.shift_factor, bbox.shift_prob, bbox.scale_factor, bbox.scale_prob) == (0.16, 0.3, (0.5, 1.5), 1.0)
    assert (bbox.rotate_factor, bbox.rotate_prob) == (80.0, 0.6)


def test_defaults_are_the_recipe_in_code_and_in_the_config_file() -> None:
    assert _values(GeometricAugment()) == MMPOSE_RECIPE
    node = OmegaConf.load(CONFIG_DIR / "augment" / "geometric.yaml")
    assert set(node) == set(MMPOSE_RECIPE)
    assert _values(GeometricAugment.from_config(node)) == MMPOSE_RECIPE


def test_demo_and_overfit_change_their_keys_only(tmp_path) -> None:
    demo = GeometricAugment.from_config(
        compose_config("train", ["experiment=demo"], output_dir=tmp_path).data.geometric
    )
    assert _values(demo) == {
        **MMPOSE_RECIPE,
        "rotate_factor": 30.0,
        "scale_factor": (0.75, 1.25),
        "half_body_prob": 0.1,
    }
    cfg = compose_config("train", ["debug=overfit"], output_dir=tmp_path)
    overfit = GeometricAugment.from_config(cfg.data.geometric)
    off = {"flip_prob": 0.0, "half_body_prob": 0.0, "shift_prob": 0.0, "scale_factor": (1.0, 1.0), "rotate_prob": 0.0}
    assert _values(overfit) == {**MMPOSE_RECIPE, **off}
    assert [type(t) for t in overfit.build().transforms] == [RandomBBoxTransform]  # flip and half-body dropped


def test_command_line_sets_one_value_and_the_old_flat_keys_are_refused(tmp_path) -> None:
    cfg = compose_config("train", ["data.geometric.rotate_prob=0.2"], output_dir=tmp_path)
    assert _values(GeometricAugment.from_config(cfg.data.geometric)) == {**MMPOSE_RECIPE, "rotate_prob": 0.2}
    with pytest.raises(Exception, match="rotate_factor"):  # a recipe's flat key no longer exists: not silently added
        compose_config("train", ["data.rotate_factor=30"], output_dir=tmp_path)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"rotate_prob": 1.5}, r"data.geometric.rotate_prob must be a probability in \[0, 1\], got 1.5"),
        ({"flip_prob": "yes"}, r"data.geometric.flip_prob must be a finite number, got 'yes'"),
        ({"scale_factor": [1.5, 0.5]}, r"scale_factor must be \[lo, hi\] with 0 < lo <= hi, got \[1.5, 0.5\]"),
        ({"scale_factor": 0.5}, r"data.geometric.scale_factor must be \[lo, hi\], got 0.5"),
        ({"half_body_mode": "2.x"}, r"half_body_mode must be '1.x' or '0.x', got '2.x'"),
        ({"rotation": 30}, r"data.geometric has unknown keys \['rotation'\]; expected some of \['flip_prob'"),
        ([0.5], r"data.geometric must be a mapping of"),
    ],
)
def test_bad_values_are_named(node, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeometricAugment.from_config(OmegaConf.create(node) if not isinstance(node, list) else node)

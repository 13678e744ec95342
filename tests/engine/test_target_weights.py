"""Training-target weights of the recipes on the real sample: MMPose's rule by default, ``inside_crop`` on request.

MMPose (0.x ``TopDownGenerateTarget``, 1.x ``generate_(unbiased_)gaussian_heatmaps``) gives a keypoint weight 1 when
it is visible (``v > 0``) and the codec's 3-sigma square around it still touches the heatmap, whether or not the
point itself lies inside the crop. The reference below recomputes each training sample's crop keypoints from the
raw annotation json and the geometry the augmentation drew (flip, centre, scale, rotation), then applies that rule
one keypoint at a time; it shares no code with the pipeline (``tests/helpers/references.ref_warp_matrix`` is
MMPose's three-point warp, built with ``cv2.getAffineTransform``).

Runs only when ``WBPOSE_SAMPLE_DATA`` names the real COCO-WholeBody sample (see tests/integration/test_real_sample.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers.paths import FIXTURE_DIR, SAMPLE_ANN, SAMPLE_DET, sample_root
from helpers.references import ref_warp_matrix
from wbpose.app.config import compose_config, list_experiments
from wbpose.build import build_codec, build_datamodule
from wbpose.engine.datamodule import WholeBodyDataModule

SAMPLE = os.environ.get("WBPOSE_SAMPLE_DATA")
ANN, DET = SAMPLE_ANN, SAMPLE_DET
PART_KEYS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")  # 17 + 6 + 68 + 21 + 21
EPOCHS = 25  # x 12 training instances of the sample: 300 augmented draws per recipe

needs_sample = pytest.mark.skipif(
    not SAMPLE, reason="set WBPOSE_SAMPLE_DATA to a folder like the real COCO-WholeBody sample"
)


@pytest.fixture(scope="module")
def root() -> Path:
    return sample_root()


@pytest.fixture(scope="module")
def raw_keypoints(root: Path) -> dict[int, np.ndarray]:
    """Annotation id -> (133, 3) keypoints (x, y, v) in MMPose's whole-body order, straight from the json."""
    anns = json.loads((root / ANN).read_text())["annotations"]
    return {a["id"]: np.concatenate([np.reshape(a[k], (-1, 3)) for k in PART_KEYS]).astype(np.float64) for a in anns}


FLIP_INDICES = json.loads((FIXTURE_DIR / "coco_wholebody_meta.json").read_text())["flip_indices"]


def recipe_train_set(root: Path, experiment: str, *overrides: str):
    """The recipe's training dataset (its augmentation, codec and target rule) over the sample folder."""
    cfg = compose_config(
        "train",
        [
            f"experiment={experiment}",
            f"data.data_root={root}",
            f"data.train_ann={ANN}",
            "data.train_img_dir=.",
            f"data.val_ann={ANN}",
            "data.val_img_dir=.",
            f"data.det_file={DET}",
            "data.num_workers=0",
            "data.cache_dir=null",
            *overrides,
        ],
    )
    codec = build_codec(cfg)
    dm = build_datamodule(cfg, codec)
    dm.setup("fit")
    return dm.train_dataset, codec


def mmpose_weight(xy: np.ndarray, v: float, codec, unbiased: bool) -> tuple[float, bool]:
    """MMPose's target weight of one keypoint in crop pixels (visible and its 3-sigma square ``[ul, br)`` touches
    the map), and whether its heatmap gets any non-zero pixel.

    MSRA draws the Gaussian inside the square only, so a square ending exactly at the map's first column or row
    (``br == 0``) keeps weight 1 with an empty patch, as in MMPose; DARK draws over the whole map.
    """
    if v <= 0:
        return 0.0, False
    w, h = codec.heatmap_wh
    radius = 3 * codec.sigma
    hm = xy / codec.stride
    mu = hm if unbiased else np.trunc(hm + 0.5)  # MSRA: (kp + 0.5).astype(int64)
    ul = mu - radius
    br = mu + radius + 1
    if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
        return 0.0, False
    return 1.0, unbiased or (br[0] > 0 and br[1] > 0)


def reference(sample, raw: np.ndarray, input_wh: tuple[int, int], codec, unbiased: bool):
    """(weights, drawn, inside) for one drawn sample, one keypoint at a time from the raw annotation: MMPose's
    weights, whether each heatmap has a non-zero pixel, and whether each point lies inside the crop."""
    xy, v = raw[:, :2].copy(), raw[:, 2].copy()
    if sample.flipped:  # the flip mirrors x in the image (W - 1 - x) and swaps left/right ids
        xy[:, 0] = sample.image_wh[0] - 1 - xy[:, 0]
        xy, v = xy[FLIP_INDICES], v[FLIP_INDICES]
    m = ref_warp_matrix(sample.center_xy, float(sample.scale_wh[0]), float(sample.rotation_deg), input_wh)
    weights, drawn, inside = np.zeros(len(xy)), np.zeros(len(xy), dtype=bool), np.zeros(len(xy), dtype=bool)
    for k in range(len(xy)):
        crop = m @ np.array([xy[k, 0], xy[k, 1], 1.0])
        weights[k], drawn[k] = mmpose_weight(crop, v[k], codec, unbiased)
        inside[k] = 0 <= crop[0] < input_wh[0] and 0 <= crop[1] < input_wh[1]
    return weights, drawn, inside


def draws(dataset):
    """Every (epoch, index) training sample's annotation half (augmentation, geometry, targets), no pixels."""
    for epoch in range(EPOCHS):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            yield dataset.prepare(dataset.load_sample(i, read_image=False), index=i)


@pytest.mark.parametrize(
    ("experiment", "unbiased", "sigma"),
    [("w32_256x192_msra", False, 2.0), ("w32_256x192_dark", True, 2.0), ("w32_384x288_msra", False, 3.0)],
)
@pytest.mark.data
@needs_sample
def test_recipe_weights_follow_mmpose_rule(
    root: Path, raw_keypoints: dict, experiment: str, unbiased: bool, sigma: float
) -> None:
    dataset, codec = recipe_train_set(root, experiment)
    assert codec.sigma == sigma and (type(codec).__name__ == "DarkHeatmap") == unbiased
    n_samples = n_outside_weighted = 0
    for s in draws(dataset):
        ref, drawn, inside = reference(s, raw_keypoints[s.instance_id], dataset.input_wh, codec, unbiased)
        bad = np.flatnonzero(s.weights != ref)
        assert bad.size == 0, f"{experiment} instance {s.instance_id}: keypoints {bad.tolist()} weights differ"
        # the (partial) Gaussian of every weighted point, none for the others
        np.testing.assert_array_equal(s.heatmaps.max(axis=(1, 2)) > 0, drawn)
        n_outside_weighted += int(((ref > 0) & ~inside).sum())
        n_samples += 1
    assert n_samples >= 300
    # the draws do move supervised points outside the crop, so this test tells the two rules apart
    assert n_outside_weighted > 100


@pytest.mark.data
@needs_sample
def test_inside_crop_option_zeroes_points_outside_the_crop(root: Path, raw_keypoints: dict) -> None:
    dataset, codec = recipe_train_set(root, "w32_256x192_msra", "data.target_weight=inside_crop")
    zeroed = 0
    for s in draws(dataset):
        ref, _, inside = reference(s, raw_keypoints[s.instance_id], dataset.input_wh, codec, unbiased=False)
        np.testing.assert_array_equal(s.weights, ref * inside)
        assert not s.heatmaps[~inside].any() and not s.visible[~inside].any()
        zeroed += int(((ref > 0) & ~inside).sum())
    assert zeroed > 100  # points MMPose would supervise that this rule drops


def test_every_recipe_and_the_demo_use_mmpose_rule(tmp_path: Path) -> None:
    for name in list_experiments():
        cfg = compose_config("train", [f"experiment={name}"], output_dir=tmp_path)
        assert cfg.data.target_weight == "mmpose", name
        assert not build_datamodule(cfg, build_codec(cfg)).zero_outside_crop, name


def test_unknown_target_weight_rule_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"target_weight must be one of \['inside_crop', 'mmpose'\], got 'outside'"):
        WholeBodyDataModule(tmp_path, target_weight="outside")

"""Top-down transforms: flip, warp and its inverse, half-body, box jitter, targets, normalisation, photometric."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from wbpose.codecs import MSRAHeatmap
from wbpose.data.augment import (
    PhotometricAugment,
    RandomBBoxTransform,
    RandomFlip,
    RandomHalfBody,
    flip_sample,
    truncnorm,
)
from wbpose.data.transforms import (
    MEAN_RGB,
    STD_RGB,
    GenerateTarget,
    TopdownAffine,
    TopdownSample,
    denormalize_image,
    normalize_image,
    pack_sample,
)
from wbpose.geometry import bbox_xyxy_to_center_scale, crop_to_image, warp_matrix
from wbpose.keypoints import FLIP_INDICES, LOWER_BODY_IDS, NUM_KEYPOINTS, UPPER_BODY_IDS

INPUT_WH = (192, 256)
IMAGE_WH = (320, 240)


_IMAGE = cv2.GaussianBlur(
    np.random.default_rng(0).integers(0, 256, (IMAGE_WH[1], IMAGE_WH[0], 3), dtype=np.uint8), (7, 7), 0
)


def make_sample(seed: int = 0, visible_frac: float = 0.8) -> TopdownSample:
    rng = np.random.default_rng(seed)
    image = _IMAGE.copy()
    bbox = np.array([90.0, 40.0, 190.0, 220.0])
    kp = np.stack([rng.uniform(95, 185, NUM_KEYPOINTS), rng.uniform(45, 215, NUM_KEYPOINTS)], -1)
    vis = (rng.random(NUM_KEYPOINTS) < visible_frac).astype(np.float32)
    center, scale = bbox_xyxy_to_center_scale(bbox, None, 1.25)
    return TopdownSample(image, IMAGE_WH, center, scale, bbox, kp, vis, image_id=1, instance_id=7)


def test_flip_twice_is_identity() -> None:
    s = make_sample()
    ref = TopdownAffine(INPUT_WH)(make_sample())
    twice = flip_sample(flip_sample(s))
    assert not twice.flipped
    np.testing.assert_allclose(twice.keypoints_xy, make_sample().keypoints_xy)
    np.testing.assert_array_equal(twice.visible, make_sample().visible)
    np.testing.assert_allclose(twice.center_xy, make_sample().center_xy)
    np.testing.assert_allclose(twice.bbox_xyxy, make_sample().bbox_xyxy)
    np.testing.assert_array_equal(TopdownAffine(INPUT_WH)(twice).image, ref.image)


def test_flip_mirrors_annotations() -> None:
    s = make_sample()
    f = flip_sample(make_sample())
    last_x = IMAGE_WH[0] - 1
    idx = np.asarray(FLIP_INDICES)
    np.testing.assert_allclose(f.keypoints_xy[:, 0], last_x - s.keypoints_xy[idx, 0])
    np.testing.assert_allclose(f.keypoints_xy[:, 1], s.keypoints_xy[idx, 1])
    np.testing.assert_array_equal(f.visible, s.visible[idx])
    assert f.center_xy[0] == pytest.approx(last_x - s.center_xy[0])
    np.testing.assert_allclose(f.bbox_xyxy, [last_x - 190, 40, last_x - 90, 220])


@pytest.mark.parametrize("rotation", [0.0, 30.0])
def test_lazy_flip_matches_flipping_the_image(rotation: float) -> None:
    """The flip folded into the warp matrix gives the crop of the mirrored image (MMPose's eager flip)."""
    lazy = flip_sample(make_sample())
    lazy.rotation_deg = rotation
    lazy = TopdownAffine(INPUT_WH)(lazy)
    eager = flip_sample(make_sample())
    eager.image, eager.flipped = cv2.flip(eager.image, 1), False
    eager.rotation_deg = rotation
    eager = TopdownAffine(INPUT_WH)(eager)
    diff = np.abs(lazy.image.astype(int) - eager.image.astype(int))
    assert diff.mean() < 0.2 and diff.max() <= 2  # fixed-point interpolation rounding only
    np.testing.assert_allclose(lazy.keypoints_xy, eager.keypoints_xy)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("rotation", [0.0, -50.0])
def test_keypoints_follow_the_pixels(flip: bool, rotation: float) -> None:
    """A bright dot drawn at a keypoint lands where the transformed keypoint says, flip and rotation included."""
    s = make_sample(visible_frac=1.0)
    s.image = np.zeros_like(s.image)
    x, y = 150, 100
    s.image[y - 1 : y + 2, x - 1 : x + 2] = 255
    s.keypoints_xy[0] = (x, y)
    if flip:
        s = flip_sample(s)
        k = FLIP_INDICES[0]
    else:
        k = 0
    s.rotation_deg = rotation
    s = TopdownAffine(INPUT_WH)(s)
    gray = s.image[..., 0].astype(float)
    centroid = (np.indices(gray.shape)[::-1] * gray).reshape(2, -1).sum(1) / gray.sum()
    np.testing.assert_allclose(s.keypoints_xy[k], centroid, atol=0.5)


def test_warp_and_inverse_roundtrip() -> None:
    s = make_sample()
    kp_image = s.keypoints_xy.copy()
    s = TopdownAffine(INPUT_WH)(s)
    back = crop_to_image(
        torch.from_numpy(s.keypoints_xy)[None],
        torch.from_numpy(s.center_xy)[None],
        torch.from_numpy(s.scale_wh)[None],
        INPUT_WH,
    )[0].numpy()
    assert np.abs(back - kp_image).max() < 1e-3
    # rotated crops: the inverse warp matrix
    r = make_sample()
    r.rotation_deg = 37.0
    r = TopdownAffine(INPUT_WH)(r)
    m_inv = warp_matrix(r.center_xy, r.scale_wh, r.rotation_deg, INPUT_WH, inverse=True)
    back = r.keypoints_xy @ m_inv[:, :2].T + m_inv[:, 2]
    assert np.abs(back - kp_image).max() < 1e-3


def _half_body_sample() -> TopdownSample:
    """Upper-body points near the top, legs/feet near the bottom, face and hands on the upper half."""
    s = make_sample(visible_frac=0.0)
    s.visible[:] = 0
    upper, lower = list(UPPER_BODY_IDS), list(LOWER_BODY_IDS)
    rng = np.random.default_rng(1)
    s.keypoints_xy[upper] = np.stack([rng.uniform(120, 160, len(upper)), rng.uniform(50, 90, len(upper))], -1)
    s.keypoints_xy[lower] = np.stack([rng.uniform(110, 170, len(lower)), rng.uniform(170, 215, len(lower))], -1)
    s.visible[upper + lower] = 1
    return s


@pytest.mark.parametrize("prefer_upper", [True, False])
def test_half_body_keeps_only_the_chosen_half(prefer_upper: bool) -> None:
    codec = MSRAHeatmap((256, 192), (64, 48), 2.0)
    s = _half_body_sample()
    rng = np.random.default_rng(0)
    half = RandomHalfBody(prob=1.0, upper_prioritized_prob=1.0 if prefer_upper else 0.0)
    s = half(s, rng)
    chosen, other = (UPPER_BODY_IDS, LOWER_BODY_IDS) if prefer_upper else (LOWER_BODY_IDS, UPPER_BODY_IDS)
    pts = _half_body_sample().keypoints_xy[list(chosen)]
    np.testing.assert_allclose(s.center_xy, pts.mean(0))
    np.testing.assert_allclose(s.scale_wh, (pts.max(0) - pts.min(0)) * 1.5)
    # the inside_crop rule: the other half, outside the half-body crop, loses its weight and visibility
    s = GenerateTarget(codec, zero_outside_crop=True)(TopdownAffine(INPUT_WH)(s))
    kp = s.keypoints_xy
    inside = (kp[:, 0] >= 0) & (kp[:, 0] < INPUT_WH[0]) & (kp[:, 1] >= 0) & (kp[:, 1] < INPUT_WH[1])
    assert inside[list(chosen)].all()  # the half-body box covers the chosen points
    assert (s.weights[list(chosen)] == 1).all()
    assert (s.weights[list(other)] == 0).all() and (s.visible[list(other)] == 0).all()


def test_half_body_skips_and_falls_back() -> None:
    rng = np.random.default_rng(0)
    half = RandomHalfBody(prob=1.0, upper_prioritized_prob=1.0)
    vis = np.zeros(NUM_KEYPOINTS)
    vis[:8] = 1
    assert half.select(vis, rng) is None  # fewer than 9 visible
    vis[91:100] = 1  # hands count towards the total but are never chosen (1.x)
    np.testing.assert_array_equal(half.select(vis, rng), np.arange(8))
    vis = np.zeros(NUM_KEYPOINTS)
    vis[[0, 11, 12, 13, 14]] = 1
    vis[91:100] = 1  # one upper point only: falls back to the lower half although upper is preferred
    np.testing.assert_array_equal(half.select(vis, rng), [11, 12, 13, 14])
    assert RandomHalfBody(prob=0.0).select(np.ones(NUM_KEYPOINTS), rng) is None


def test_half_body_0x_counts_face_and_hands_as_lower() -> None:
    half = RandomHalfBody(prob=1.0, mode="0.x")
    vis = np.zeros(NUM_KEYPOINTS)
    vis[[0, 1]] = 1  # two upper points: not enough (> 2 needed)
    vis[91:100] = 1  # left hand: "lower" in 0.x
    chosen = half.select(vis, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, np.arange(91, 100))
    with pytest.raises(ValueError, match="mode"):
        RandomHalfBody(mode="2.x")  # type: ignore[arg-type]


def test_truncnorm_and_bbox_transform_ranges() -> None:
    rng = np.random.default_rng(0)
    x = truncnorm(rng, 200_000)
    assert x.min() >= -1 and x.max() <= 1
    assert abs(x.mean()) < 0.01 and x.std() == pytest.approx(0.5396, abs=0.01)  # sd of N(0,1) cut at +-1
    t = RandomBBoxTransform()
    rots, scales, shifts = [], [], []
    base = make_sample()
    for _ in range(3000):
        s = t(TopdownSample(None, IMAGE_WH, base.center_xy, base.scale_wh, base.bbox_xyxy), rng)
        rots.append(s.rotation_deg)
        scales.append(s.scale_wh[0] / base.scale_wh[0])
        shifts.append((s.center_xy - base.center_xy) / base.scale_wh)
    rots, scales, shifts = np.array(rots), np.array(scales), np.array(shifts)
    assert np.abs(rots).max() <= 80 and np.mean(rots != 0) == pytest.approx(0.6, abs=0.04)
    assert scales.min() >= 0.5 and scales.max() <= 1.5
    assert np.abs(shifts).max() <= 0.16 + 1e-9 and np.mean(shifts[:, 0] != 0) == pytest.approx(0.3, abs=0.04)


def test_random_flip_probability() -> None:
    rng = np.random.default_rng(0)
    base = make_sample()
    flips = [RandomFlip(0.5)(TopdownSample(**base.__dict__), rng).flipped for _ in range(2000)]
    assert np.mean(flips) == pytest.approx(0.5, abs=0.04)


def test_target_weights_zero_for_invisible_and_out_of_crop() -> None:
    codec = MSRAHeatmap((256, 192), (64, 48), 2.0)
    s = make_sample(visible_frac=1.0)
    s = TopdownAffine(INPUT_WH)(s)
    s.visible[5] = 0  # invisible
    s.keypoints_xy[6] = (-3.0, 100.0)  # just outside the crop: its Gaussian still touches the heatmap
    s.keypoints_xy[7] = (500.0, 100.0)  # far outside
    strict = GenerateTarget(codec, zero_outside_crop=True)(TopdownSample(**{**s.__dict__}))
    assert strict.weights[5] == 0 and strict.weights[6] == 0 and strict.weights[7] == 0
    assert strict.heatmaps[5].max() == 0 and strict.heatmaps[6].max() == 0
    assert strict.visible[6] == 0 and (strict.weights[8:] == 1).all()
    mmpose = GenerateTarget(codec)(TopdownSample(**{**s.__dict__}))  # the default
    assert mmpose.weights[6] == 1 and mmpose.weights[7] == 0  # MMPose 1.x: the codec's map-bounds rule only
    assert mmpose.heatmaps[6].max() > 0 and mmpose.visible[6] == 1


def test_normalize_matches_reference_and_inverts() -> None:
    bgr = np.random.default_rng(0).integers(0, 256, (32, 24, 3), dtype=np.uint8)
    ref = (bgr[..., ::-1].astype(np.float32) - np.array(MEAN_RGB, np.float32)) / np.array(STD_RGB, np.float32)
    out = normalize_image(bgr)
    assert out.dtype == np.float32 and out.shape == (3, 32, 24)
    np.testing.assert_allclose(out, ref.transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_allclose(normalize_image(bgr[..., ::-1].copy(), bgr=False), out, atol=1e-6)
    np.testing.assert_array_equal(denormalize_image(out), bgr[..., ::-1])


def test_photometric_is_seeded_and_returns_rgb() -> None:
    aug = PhotometricAugment([{"type": "ColorJitter", "brightness": 0.5, "p": 1.0}])
    crop = TopdownAffine(INPUT_WH)(make_sample()).image

    def run(seed: int) -> TopdownSample:
        s = TopdownAffine(INPUT_WH)(make_sample())
        return aug(s, np.random.default_rng(seed))

    a, b, c = run(0), run(0), run(1)
    assert not a.bgr
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.image, crop[..., ::-1])
    with pytest.raises(ValueError, match="type"):
        PhotometricAugment([{"p": 1.0}])


def test_pack_sample_without_targets() -> None:
    s = TopdownAffine(INPUT_WH)(make_sample())
    out = pack_sample(s)
    assert set(out) == {"image", "center_xy", "scale_wh", "instance_id", "image_id", "bbox_score"}
    assert out["instance_id"].dtype == torch.int64 and out["instance_id"].item() == 7

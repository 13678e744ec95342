"""Codecs against the plain per-keypoint references of ``helpers.references`` (loops, numpy, cv2 full-map blur),
written from docs/conventions.md#msra-encoding, #dark-encoding, #msra-decoding and #dark-decoding.

Every comparison is to 1e-4 crop pixels (decode) or float32 rounding (encode). Parametrised over both codecs and
both recipes: 256x192 (heatmap 64x48, sigma 2) and 384x288 (heatmap 96x72, sigma 3).
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch

from helpers.references import mmpose_style_decode, mmpose_style_encode, ref_decode, ref_encode
from wbpose.codecs import DarkHeatmap, HeatmapCodec, MSRAHeatmap, opencv_gaussian_kernel
from wbpose.codecs import base as codec_base
from wbpose.codecs.gaussian import render_profiles

RECIPES = {"256x192": ((256, 192), (64, 48), 2), "384x288": ((384, 288), (96, 72), 3)}
TOL_PX = 1e-4


def make_codec(name: str, recipe: str, blur_kernel: int = 11, border_rule: str = "1.x"):
    image_hw, heatmap_hw, sigma = RECIPES[recipe]
    if name == "msra":
        return MSRAHeatmap(image_hw, heatmap_hw, sigma, border_rule=border_rule)
    return DarkHeatmap(image_hw, heatmap_hw, sigma, blur_kernel=blur_kernel)


# ----------------------------------------------------------------------------- map generators
def random_maps(rng, n, h, w):
    """Sums of 1-3 random Gaussians (some negative, various widths) plus noise: realistic and adversarial."""
    yy, xx = np.mgrid[0:h, 0:w]
    maps = rng.normal(0, rng.choice([0.0, 0.005, 0.05], size=(n, 1, 1)), (n, h, w))
    for _ in range(3):
        mx, my = rng.uniform(-3, w + 2, (n, 1, 1)), rng.uniform(-3, h + 2, (n, 1, 1))
        s = rng.uniform(0.7, 4.0, (n, 1, 1))
        amp = rng.uniform(-0.3, 1.0, (n, 1, 1)) * (rng.random((n, 1, 1)) < 0.8)
        maps += amp * np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * s**2))
    return maps.astype(np.float32)


def border_peak_maps(rng, h, w):
    """One sharp sub-pixel peak at each of the first/last three rows x columns (corners, borders, one inside)."""
    yy, xx = np.mgrid[0:h, 0:w]
    coords = [0, 1, 2, 3]
    xs = coords + [w - 1 - c for c in coords]
    ys = coords + [h - 1 - c for c in coords]
    maps = []
    for y in ys:
        for x in xs:
            mx, my = x + rng.uniform(-0.3, 0.3), y + rng.uniform(-0.3, 0.3)
            maps.append(np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * 1.5**2)) + rng.normal(0, 1e-3, (h, w)))
    return np.stack(maps).astype(np.float32)


def special_maps(h, w):
    """Flat, all-zero, negative, single-pixel and 'positive peak in a negative sea' maps."""
    flat = np.full((h, w), 0.3)
    zero = np.zeros((h, w))
    negative = -np.abs(np.random.default_rng(1).normal(0.5, 0.1, (h, w)))
    spike = np.zeros((h, w))
    spike[h // 2, w // 3] = 1.0
    sea = np.full((h, w), -0.5)
    sea[h // 2, w // 2] = 0.2
    sea[h // 2, w // 2 + 1] = 0.1
    plateau = np.zeros((h, w))
    plateau[10:14, 10:14] = 1.0  # ties: the first maximum in raster order wins
    return np.stack([flat, zero, negative, spike, sea, plateau]).astype(np.float32)


def rescale_maps(rng, n, h, w):
    """Maps that all take DARK's exact-rescale fallback, with the blurred maximum on their first or last rows.

    A bump (the argmax, 2+ pixels inside) in a negative sea, so that some of its 13 blurred values are clamped
    and the rescale factor moves the step; bright bands in the top-left and bottom-left corners, lower than the
    bump but brighter once blurred. Stacked in a batch, each map's edge rows sit next to its neighbours' edge rows.
    """
    yy, xx = np.mgrid[0:h, 0:w]
    maps = -0.25 + rng.normal(0, 0.01, (n, h, w))
    maps[:, :2, :6] = rng.uniform(0.6, 0.85, (n, 1, 1))
    maps[:, -2:, :6] = rng.uniform(0.6, 0.85, (n, 1, 1))
    cx, cy = rng.uniform(4, w - 5, (n, 1, 1)), rng.uniform(5, h - 6, (n, 1, 1))
    maps += 1.3 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0)
    return maps.astype(np.float32)


def assert_decode_matches_reference(codec, maps):
    kp, scores = codec.decode(torch.from_numpy(maps).reshape(2, -1, *maps.shape[1:]))
    assert kp.dtype == torch.float32 and kp.shape == (2, maps.shape[0] // 2, 2)
    assert torch.isfinite(kp).all()
    ref_kp, ref_scores = ref_decode(codec, maps.astype(np.float64))
    np.testing.assert_allclose(scores.reshape(-1).numpy(), ref_scores, rtol=1e-6, atol=1e-7)
    err = np.abs(kp.reshape(-1, 2).numpy().astype(np.float64) - ref_kp)
    worst = int(err.max(axis=1).argmax())
    assert err.max() < TOL_PX, f"map {worst}: got {kp.reshape(-1, 2)[worst].tolist()}, want {ref_kp[worst]}"


# ----------------------------------------------------------------------------- decode == reference
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("name", ["msra", "dark"])
def test_batched_decode_matches_reference_on_random_maps(name, recipe, monkeypatch):
    codec = make_codec(name, recipe)
    h, w = codec.heatmap_hw
    rescaled = []
    if name == "dark":  # spy: the exact-rescale fallback (maps whose blurred neighbourhood reaches <= 0) must run
        full_blur_max = codec._full_blur_max
        monkeypatch.setattr(
            codec, "_full_blur_max", lambda hm, maps: rescaled.append(len(maps)) or full_blur_max(hm, maps)
        )
    assert_decode_matches_reference(codec, random_maps(np.random.default_rng(7), 320, h, w))
    assert name == "msra" or 5 <= sum(rescaled) <= 300


@pytest.mark.parametrize("blur_kernel", [11, 17])
def test_dark_every_window_class_near_the_edges(blur_kernel):
    """A peak at every combination of distances 2 .. k//2 + 3 from each edge along both axes (plus the interior):
    every window pushed inward by a different amount uses its own kernel, and the windows are reordered by class."""
    codec = make_codec("dark", "384x288", blur_kernel=blur_kernel)
    h, w = codec.heatmap_hw
    near = range(2, blur_kernel // 2 + 4)
    ys = sorted({*near, h // 2, *(h - 1 - d for d in near)})
    xs = sorted({*near, w // 2, *(w - 1 - d for d in near)})
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(12)
    maps = [
        np.exp(-((xx - x - rng.uniform(-0.4, 0.4)) ** 2 + (yy - y - rng.uniform(-0.4, 0.4)) ** 2) / (2 * 3.0**2))
        for y in ys
        for x in xs
    ]
    maps = np.stack(maps + maps[: len(maps) % 2]).astype(np.float32)
    maps = maps[rng.permutation(len(maps))]  # classes interleaved in the batch
    assert_decode_matches_reference(codec, maps)


def test_dark_on_maps_smaller_than_the_blur_window():
    """8x6 heatmaps: the 15-wide blur window is capped to the map and every window is 'clamped'."""
    codec = DarkHeatmap((32, 24), (8, 6), 1)
    rng = np.random.default_rng(8)
    assert_decode_matches_reference(codec, np.concatenate([random_maps(rng, 60, 8, 6), special_maps(8, 6)[:4]]))


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("name", ["msra", "dark"])
def test_decode_matches_reference_at_borders_and_special_maps(name, recipe):
    codec = make_codec(name, recipe)
    h, w = codec.heatmap_hw
    maps = np.concatenate([border_peak_maps(np.random.default_rng(3), h, w), special_maps(h, w)])
    assert_decode_matches_reference(codec, maps)


@pytest.mark.parametrize("name", ["msra", "dark"])
def test_special_maps_scores_and_locations(name):
    codec = make_codec(name, "256x192")
    h, w = codec.heatmap_hw
    kp, scores = codec.decode(torch.from_numpy(special_maps(h, w))[None])
    kp, scores = kp[0], scores[0]
    assert torch.equal(kp[0], torch.zeros(2)) and scores[0] == pytest.approx(0.3)  # flat: first pixel, no step
    assert torch.equal(kp[1], torch.full((2,), -4.0)) and scores[1] == 0  # all zero: score 0, location -1
    assert torch.equal(kp[2], torch.full((2,), -4.0)) and scores[2] < 0  # negative: same
    if name == "msra":  # plateau: the first maximum in raster order, (10, 10), plus the quarter step to (11, 11)
        assert torch.equal(kp[5], torch.tensor([41.0, 41.0]))


@pytest.mark.parametrize("name", ["msra", "dark"])
def test_decode_dark_kernel_17_and_msra_0x_rule(name):
    codec = make_codec(name, "384x288", blur_kernel=17, border_rule="0.x")
    h, w = codec.heatmap_hw
    rng = np.random.default_rng(11)
    assert_decode_matches_reference(codec, np.concatenate([random_maps(rng, 126, h, w), border_peak_maps(rng, h, w)]))


def test_cpu_tensors_take_the_numpy_path():
    assert codec_base.numpy_path(torch.zeros(2))
    assert not codec_base.numpy_path(torch.zeros(2, device="meta"))


def test_torch_path_equals_numpy_path(monkeypatch):
    """CUDA runs the pure-torch path; run it on CPU and compare with the numpy-accelerated CPU path."""
    codec = make_codec("dark", "256x192")
    h, w = codec.heatmap_hw
    maps = torch.from_numpy(np.concatenate([random_maps(np.random.default_rng(5), 58, h, w), special_maps(h, w)]))
    fast = codec.decode(maps.reshape(4, 16, h, w))
    monkeypatch.setattr(codec_base, "numpy_path", lambda tensor: False)
    slow = codec.decode(maps.reshape(4, 16, h, w))
    torch.testing.assert_close(fast[0], slow[0], atol=TOL_PX, rtol=0)
    torch.testing.assert_close(fast[1], slow[1])


@pytest.mark.parametrize("torch_path", [False, True])
def test_dark_rescale_of_many_maps_matches_reference(torch_path, monkeypatch):
    """Every map takes the exact rescale (whole-map blur): stacked maps must not bleed into each other, and the
    torch path (CUDA's) must blur each map on its own, zero-padded."""
    codec = make_codec("dark", "256x192")
    h, w = codec.heatmap_hw
    maps = rescale_maps(np.random.default_rng(13), 16, h, w)
    if torch_path:
        monkeypatch.setattr(codec_base, "numpy_path", lambda tensor: False)
    full_blur_max = codec._full_blur_max
    rescaled = []
    monkeypatch.setattr(codec, "_full_blur_max", lambda hm, sel: rescaled.append(len(sel)) or full_blur_max(hm, sel))
    assert_decode_matches_reference(codec, maps)
    assert sum(rescaled) == len(maps)
    # The factor matters here: with the unblurred maximum in its place (factor 1) the keypoints move.
    monkeypatch.setattr(codec, "_full_blur_max", lambda hm, sel: hm[sel].amax(dim=1))
    kp, _ = codec.decode(torch.from_numpy(maps)[None])
    assert np.abs(kp[0].numpy() - ref_decode(codec, maps.astype(np.float64))[0]).max() > 100 * TOL_PX


def test_torch_path_matches_reference_on_random_and_border_maps(monkeypatch):
    """The torch path against the reference, with refinable peaks against every edge of the last map in the batch
    (its blur window ends on the batch's last element)."""
    codec = make_codec("dark", "256x192")
    h, w = codec.heatmap_hw
    rng = np.random.default_rng(14)
    maps = np.concatenate([random_maps(rng, 128, h, w), special_maps(h, w), border_peak_maps(rng, h, w)])
    corner = np.zeros((2, h, w), np.float32)
    corner[:, h - 3, w - 3], corner[:, h - 3, w - 4], corner[:, h - 4, w - 3] = 1.0, 0.6, 0.3
    monkeypatch.setattr(codec_base, "numpy_path", lambda tensor: False)
    assert_decode_matches_reference(codec, np.concatenate([maps, corner]))


def test_dark_many_maps_of_one_edge_window_class_match_reference():
    """More maps in one edge window class than one block of the window product holds (the product runs in row
    blocks plus a remainder), all with the peak near the top-left corner."""
    codec = make_codec("dark", "256x192")
    h, w = codec.heatmap_hw
    rng = np.random.default_rng(15)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = 3 + rng.uniform(-0.3, 0.3, (301, 1, 1)), 3 + rng.uniform(-0.3, 0.3, (301, 1, 1))
    maps = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5**2)) + rng.normal(0, 1e-3, (301, h, w))
    assert_decode_matches_reference(codec, np.concatenate([maps, maps[:1]]).astype(np.float32))


@pytest.mark.parametrize("torch_path", [False, True])
def test_dark_map_holding_inf_keeps_the_integer_argmax(torch_path, monkeypatch):
    """docs: a map whose step is undefined (it holds +inf next to the peak) keeps the integer argmax."""
    codec = make_codec("dark", "256x192")
    h, w = codec.heatmap_hw
    if torch_path:
        monkeypatch.setattr(codec_base, "numpy_path", lambda tensor: False)
    maps = random_maps(np.random.default_rng(16), 4, h, w)
    maps[1, 20, 30] = np.inf
    maps[3, 40, 10] = np.inf
    kp, scores = codec.decode(torch.from_numpy(maps)[None])
    assert torch.equal(kp[0, 1], torch.tensor([30.0, 20.0]) * codec.stride)
    assert torch.equal(kp[0, 3], torch.tensor([10.0, 40.0]) * codec.stride)
    assert torch.isinf(scores[0, [1, 3]]).all()
    ref_kp, _ = ref_decode(codec, maps[[0, 2]].astype(np.float64))
    assert np.abs(kp[0, [0, 2]].numpy() - ref_kp).max() < TOL_PX


@pytest.mark.parametrize("name", ["msra", "dark"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_decode_returns_float32_for_any_floating_input(name, dtype):
    codec = make_codec(name, "256x192")
    maps = torch.from_numpy(random_maps(np.random.default_rng(17), 6, 64, 48)).reshape(2, 3, 64, 48)
    kp, scores = codec.decode(maps.to(dtype))
    assert kp.dtype == torch.float32 and scores.dtype == torch.float32
    torch.testing.assert_close(scores, maps.to(dtype).float().amax(dim=(2, 3)), rtol=0, atol=0)


def test_dark_blur_kernel_1_is_no_blur():
    """The smallest odd kernel is accepted and means no modulation blur (OpenCV's 1-tap kernel)."""
    codec = DarkHeatmap((256, 192), (64, 48), 2, blur_kernel=1)
    assert_decode_matches_reference(codec, random_maps(np.random.default_rng(18), 16, 64, 48))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["msra", "dark"])
def test_cuda_decode_equals_cpu(name):
    codec = make_codec(name, "256x192")
    maps = torch.from_numpy(random_maps(np.random.default_rng(9), 256, *codec.heatmap_hw)).reshape(2, 128, 64, 48)
    cpu = codec.decode(maps)
    gpu = codec.decode(maps.cuda())
    assert gpu[0].device.type == "cuda"
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=TOL_PX, rtol=0)


def test_decode_accepts_half_and_grad_tensors():
    codec = make_codec("dark", "256x192")
    maps = torch.from_numpy(random_maps(np.random.default_rng(2), 8, 64, 48)).reshape(2, 4, 64, 48)
    ref = codec.decode(maps.half().float())
    got = codec.decode(maps.half().requires_grad_())
    torch.testing.assert_close(got[0], ref[0])


# ----------------------------------------------------------------------------- encode == reference, weights
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("name", ["msra", "dark"])
def test_encode_matches_reference(name, recipe):
    codec = make_codec(name, recipe)
    iw, ih = codec.input_wh
    rng = np.random.default_rng(4)
    # Inside, near and beyond every edge (some windows half off the map, some entirely off), plus invisible.
    kp = np.stack([rng.uniform(-40, iw + 40, 24), rng.uniform(-40, ih + 40, 24)], axis=1)
    kp[:4] = [[-0.5 * codec.stride, 10], [iw + 3 * codec.sigma * codec.stride, 50], [30, -1.9], [iw - 1, ih - 1]]
    visible = (rng.random(24) < 0.8).astype(np.float32)
    target = codec.encode(kp.astype(np.float32), visible)
    ref_hm, ref_w = ref_encode(
        kp.astype(np.float32), visible, codec.heatmap_wh, codec.stride, codec.sigma, name == "dark"
    )
    assert target.heatmaps.dtype == np.float32 and target.weights.dtype == np.float32
    assert target.heatmaps.shape == (24, *codec.heatmap_hw)
    np.testing.assert_allclose(target.heatmaps, ref_hm, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(target.weights, ref_w)
    assert 0 < ref_w.sum() < visible.sum()  # the case mix did exercise the off-map rule


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("name", ["msra", "dark"])
def test_profiles_multiply_out_to_the_encoded_maps_bit_for_bit(name, recipe):
    """encode_profiles (what loader workers send with data.decode_on=gpu) rendered in numpy and as a torch outer
    product (the device side, wbpose.data.gpu_pixels) give exactly encode()'s heatmaps and weights."""
    codec = make_codec(name, recipe)
    iw, ih = codec.input_wh
    rng = np.random.default_rng(5)
    kp = np.stack([rng.uniform(-40, iw + 40, 40), rng.uniform(-40, ih + 40, 40)], axis=1).astype(np.float32)
    visible = (rng.random(40) < 0.8).astype(np.float32)
    target = codec.encode(kp, visible)
    gx, gy, weights = codec.encode_profiles(kp, visible)
    assert gx.shape == (40, codec.heatmap_wh[0]) and gy.shape == (40, codec.heatmap_wh[1])
    assert gx.dtype == gy.dtype == np.float32
    np.testing.assert_array_equal(weights, target.weights)
    np.testing.assert_array_equal(render_profiles(gx, gy), target.heatmaps)
    outer = torch.from_numpy(gy)[:, :, None] * torch.from_numpy(gx)[:, None, :]
    assert torch.equal(outer, torch.from_numpy(target.heatmaps))
    assert 0 < weights.sum() < visible.sum() and target.heatmaps.any()


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("name", ["msra", "dark"])
def test_mmpose_style_baselines_match_the_references(name, recipe):
    """The baselines that benchmarks/codecs.py times wbpose against (and checks its results with) are the codecs."""
    codec = make_codec(name, recipe)
    iw, ih = codec.input_wh
    rng = np.random.default_rng(6)
    kp = np.stack([rng.uniform(-40, iw + 40, 24), rng.uniform(-40, ih + 40, 24)], axis=1).astype(np.float32)
    kp[:4] = [[-0.5 * codec.stride, 10], [iw + 3 * codec.sigma * codec.stride, 50], [30, -1.9], [iw - 1, ih - 1]]
    visible = (rng.random(24) < 0.8).astype(np.float32)
    visible[:4] = 1
    heatmaps, weights = mmpose_style_encode(kp, visible, codec, name == "dark")
    ref_hm, ref_w = ref_encode(kp, visible, codec.heatmap_wh, codec.stride, codec.sigma, name == "dark")
    np.testing.assert_allclose(heatmaps, ref_hm, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(weights, ref_w)
    assert 0 < ref_w.sum() < visible.sum()
    h, w = codec.heatmap_hw
    maps = np.concatenate([random_maps(rng, 64, h, w), border_peak_maps(rng, h, w), special_maps(h, w)])
    maps = maps.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # all-zero maps: 0 / 0 in the rescale, never used
        got = mmpose_style_decode(maps, codec)
    np.testing.assert_allclose(got, ref_decode(codec, maps)[0], rtol=0, atol=TOL_PX)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("name", ["msra", "dark"])
def test_encode_at_the_edges_of_the_bounds_rule_and_visibility_one_half(name, recipe):
    """Keypoints swept in quarter heatmap pixels across both ends of the off-map rule (``ul >= size`` or
    ``br < 0``, where ``br = mu + 3 sigma + 1`` may be exactly 0) on both axes, and visibility exactly 0.5, which
    counts as visible (weight 0.5)."""
    codec = make_codec(name, recipe)
    (w, h), s, r = codec.heatmap_wh, codec.stride, 3 * codec.sigma
    low = np.arange(-r - 3, -r + 1.01, 0.25)  # heatmap pixels around br = 0
    high = np.concatenate([np.arange(w + r - 2, w + r + 1.01, 0.25), np.arange(h + r - 2, h + r + 1.01, 0.25)])
    xs = np.concatenate([low, high[: len(high) // 2], np.full(len(low) + len(high) // 2, w / 2)])
    ys = np.concatenate([np.full(len(low) + len(high) // 2, h / 2), low, high[len(high) // 2 :]])
    kp = np.stack([xs, ys], axis=1) * s
    visible = np.where(np.arange(len(kp)) % 3 == 0, 0.5, 1.0)
    target = codec.encode(kp, visible)
    ref_hm, ref_w = ref_encode(kp, visible, codec.heatmap_wh, s, codec.sigma, name == "dark")
    np.testing.assert_allclose(target.heatmaps, ref_hm, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(target.weights, ref_w)
    assert {0.0, 0.5, 1.0} <= set(ref_w.tolist())  # on- and off-map keypoints of both visibilities
    # A visible keypoint with a non-finite coordinate is refused at 0.5 as at 1; an invisible one may hold NaN.
    with pytest.raises(ValueError, match="non-finite"):
        codec.encode(np.array([[np.nan, 1.0]]), np.array([0.5]))
    assert not codec.encode(np.array([[np.nan, 1.0]]), np.array([0.49])).heatmaps.any()


@pytest.mark.parametrize("name", ["msra", "dark"])
def test_invisible_and_off_map_keypoints(name):
    codec = make_codec(name, "256x192")
    kp = np.array([[100.0, 120.0], [100.0, 120.0], [-60.0, 40.0], [500.0, 40.0], [np.nan, np.nan]])
    target = codec.encode(kp, np.array([1, 0, 1, 1, 0]))
    np.testing.assert_array_equal(target.weights, [1, 0, 0, 0, 0])
    assert target.heatmaps[0].max() == pytest.approx(1.0, abs=0.05)
    assert not target.heatmaps[1:].any()  # invisible and off-map keypoints: all-zero maps


# ----------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("recipe", RECIPES)
def test_round_trip_dark_far_more_accurate_than_standard(recipe):
    rng = np.random.default_rng(0)
    errors = {}
    for name in ("msra", "dark"):
        codec = make_codec(name, recipe)
        iw, ih = codec.input_wh
        margin = 4 * codec.stride  # the DARK step needs the argmax 2 pixels inside the map
        kp = np.stack([rng.uniform(margin, iw - margin, (6, 133)), rng.uniform(margin, ih - margin, (6, 133))], axis=-1)
        maps = np.stack([codec.encode(k, np.ones(133)).heatmaps for k in kp])
        decoded, scores = codec.decode(torch.from_numpy(maps))
        errors[name] = float(np.linalg.norm(decoded.numpy() - kp, axis=-1).mean())
        assert (scores > 0.7).all()
    print(f"\n{recipe} round-trip mean error (crop px): msra {errors['msra']:.4f}, dark {errors['dark']:.4f}")
    assert errors["msra"] < 0.5 * codec.stride  # the quarter step bounds the standard error
    assert errors["dark"] < errors["msra"] / 3


# ----------------------------------------------------------------------------- API and bad input
def test_geometry_properties_and_protocol():
    codec = make_codec("dark", "384x288", blur_kernel=17)
    assert isinstance(codec, HeatmapCodec)
    assert codec.input_wh == (288, 384) and codec.heatmap_wh == (72, 96)
    assert codec.stride == 4 and codec.sigma == 3
    assert repr(codec) == "DarkHeatmap(image_hw=[384, 288], heatmap_hw=[96, 72], sigma=3, blur_kernel=17)"
    msra = make_codec("msra", "256x192", border_rule="0.x")
    assert repr(msra) == "MSRAHeatmap(image_hw=[256, 192], heatmap_hw=[64, 48], sigma=2, border_rule='0.x')"


@pytest.mark.parametrize("size", [1, 3, 5, 7, 9, 11, 17])
def test_blur_kernel_equals_opencv(size):
    np.testing.assert_allclose(
        opencv_gaussian_kernel(size), cv2.getGaussianKernel(size, 0, cv2.CV_64F)[:, 0], atol=1e-15
    )


@pytest.mark.parametrize("name", ["msra", "dark"])
def test_decode_rejects_bad_heatmaps(name):
    codec = make_codec(name, "256x192")
    shape_msg = r"expected heatmaps of shape \(B, K, h, w\) with h,w = 64,48"
    with pytest.raises(ValueError, match=shape_msg):
        codec.decode(torch.zeros(133, 64, 48))
    with pytest.raises(ValueError, match=shape_msg):
        codec.decode(torch.zeros(1, 133, 48, 64))
    with pytest.raises(ValueError, match="floating dtype"):
        codec.decode(torch.zeros(1, 133, 64, 48, dtype=torch.int64))
    with pytest.raises(TypeError, match=shape_msg):
        codec.decode(np.zeros((1, 133, 64, 48), dtype=np.float32))
    bad = torch.rand(2, 133, 64, 48)
    bad[1, 7, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="^heatmaps contain NaN$"):
        codec.decode(bad)
    with pytest.raises(TypeError, match="got ndarray$"):
        codec.decode(np.zeros((1, 133, 64, 48), dtype=np.float32))


@pytest.mark.parametrize("name", ["msra", "dark"])
def test_encode_rejects_bad_keypoints(name):
    codec = make_codec(name, "256x192")
    with pytest.raises(ValueError, match=r"keypoints_xy of shape \(K, 2\)"):
        codec.encode(np.zeros((133, 3)), np.ones(133))
    with pytest.raises(
        ValueError, match=r"^expected visible of shape \(K,\) = \(3,\) to match keypoints_xy, got \(2,\)$"
    ):
        codec.encode(np.zeros((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="^keypoints_xy has non-finite coordinates for visible keypoints$"):
        codec.encode(np.array([[np.nan, 1.0]]), np.ones(1))
    with pytest.raises(ValueError, match="^visible contains NaN$"):
        codec.encode(np.zeros((2, 2)), np.array([1.0, np.nan]))


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="image_hw"):
        MSRAHeatmap((256,), (64, 48), 2)
    with pytest.raises(ValueError, match="strides"):
        MSRAHeatmap((256, 192), (64, 64), 2)
    with pytest.raises(ValueError, match="sigma"):
        MSRAHeatmap((256, 192), (64, 48), 0)
    with pytest.raises(ValueError, match="border_rule"):
        MSRAHeatmap((256, 192), (64, 48), 2, border_rule="2.x")
    for bad_kernel in (10, 2.5, 0, -1):
        with pytest.raises(ValueError, match=f"^blur_kernel must be a positive odd integer, got {bad_kernel}$"):
            DarkHeatmap((256, 192), (64, 48), 2, blur_kernel=bad_kernel)
    pair = "must be a (height, width) pair of positive integers, got"
    sizes = [((256, 192), (0, 48), "heatmap_hw"), ((256, 192), (64, 0), "heatmap_hw")]
    sizes += [((0, 192), (64, 48), "image_hw"), ((256, 192.5), (64, 48), "image_hw")]
    for image_hw, heatmap_hw, bad in sizes:
        value = heatmap_hw if bad == "heatmap_hw" else image_hw
        with pytest.raises(ValueError, match=f"^{re.escape(f'{bad} {pair} {value!r}')}$"):
            MSRAHeatmap(image_hw, heatmap_hw, 2)
    tiny = MSRAHeatmap((4, 4), (1, 1), 1)  # one heatmap pixel is a valid size
    assert tiny.stride == 4 and tiny.heatmap_wh == (1, 1)


def test_dark_threaded_cpu_decode_equals_single_thread() -> None:
    """The CPU decode splits large batches over torch's threads; results must not depend on the split."""
    from wbpose.codecs import DarkHeatmap

    codec = DarkHeatmap((256, 192), (64, 48), 2.0)
    gen = torch.Generator().manual_seed(3)
    heatmaps = torch.rand(8, 133, 64, 48, generator=gen) * 0.1
    peaks = torch.randint(0, 64 * 48, (8, 133), generator=gen)
    heatmaps.view(8, 133, -1).scatter_(2, peaks[..., None], 1.0)
    heatmaps[0, :5] = 0.0  # all-zero maps: score 0, no step
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        kp1, sc1 = codec.decode(heatmaps)
        torch.set_num_threads(2)
        kp2, sc2 = codec.decode(heatmaps)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(sc1, sc2)
    assert torch.allclose(kp1, kp2, atol=1e-5, rtol=0)

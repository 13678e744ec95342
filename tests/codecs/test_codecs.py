"""Codecs against the plain per-keypoint references of ``helpers.references`` (loops, numpy, cv2 full-map blur),
written from docs/conventions.md#msra-encoding, #dark-encoding, #msra-decoding and #dark-decoding.

Every comparison is to 1e-4 crop pixels (decode) or float32 rounding (encode). Parametrised over both codecs and
both recipes: 256x192 (heatmap 64x48, sigma 2) and 384x288 (heatmap 96x72, sigma 3).
"""

from __future__ import annotations

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
    assert "blur_kernel=17" in repr(codec)


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
    with pytest.raises(ValueError, match="heatmaps contain NaN"):
        codec.decode(bad)


@pytest.mark.parametrize("name", ["msra", "dark"])
def test_encode_rejects_bad_keypoints(name):
    codec = make_codec(name, "256x192")
    with pytest.raises(ValueError, match=r"keypoints_xy of shape \(K, 2\)"):
        codec.encode(np.zeros((133, 3)), np.ones(133))
    with pytest.raises(ValueError, match=r"visible of shape \(K,\)"):
        codec.encode(np.zeros((133, 2)), np.ones(132))
    with pytest.raises(ValueError, match="non-finite"):
        codec.encode(np.array([[np.nan, 1.0]]), np.ones(1))


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="image_hw"):
        MSRAHeatmap((256,), (64, 48), 2)
    with pytest.raises(ValueError, match="strides"):
        MSRAHeatmap((256, 192), (64, 64), 2)
    with pytest.raises(ValueError, match="sigma"):
        MSRAHeatmap((256, 192), (64, 48), 0)
    with pytest.raises(ValueError, match="border_rule"):
        MSRAHeatmap((256, 192), (64, 48), 2, border_rule="2.x")
    with pytest.raises(ValueError, match="blur_kernel"):
        DarkHeatmap((256, 192), (64, 48), 2, blur_kernel=10)


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

"""Flip test (docs/conventions.md#flip-test): channel swap, width mirror, one-column shift, averaging.

The exact check builds the heatmaps of a mirrored crop analytically. Mirroring a crop of width ``W = s * w``
(stride ``s``) sends crop pixel ``x`` to ``W - 1 - x``; DARK's unbiased target puts its Gaussian at exactly
``x / s`` (no rounding, no truncation), so the mirrored crop's map for keypoint ``flip[i]`` is a Gaussian at
``(W - 1 - x_i) / s``. Mirroring that map (column ``u -> w - 1 - u``) centres it at ``x_i/s - 1 + 1/s``, and the
one-column shift adds 1: ``(x_i + 1) / s``. So, up to float rounding:

* ``flip_heatmaps(target(mirrored), shift=True)[..., 1:] == target(x + 1)[..., 1:]`` (column 0 keeps the value
  mirrored into it, which is not the shifted Gaussian's), and
* ``flip_heatmaps(target(mirrored), shift=False) == target(x + 1 - s)`` everywhere.

That is also the known +1 crop-pixel (0.25 heatmap-pixel at s = 4) bias of shifted flip testing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.references import ref_flip_heatmaps
from wbpose.codecs import DarkHeatmap, flip_heatmaps, flip_test_average
from wbpose.keypoints import FLIP_INDICES, NUM_KEYPOINTS

RECIPES = {"256x192": ((256, 192), (64, 48), 2), "384x288": ((384, 288), (96, 72), 3)}


def mirrored_keypoints(kp_xy: np.ndarray, crop_w: int) -> np.ndarray:
    """Keypoints of the horizontally mirrored crop: x' = W - 1 - x, and left/right swapped (MMPose RandomFlip)."""
    mirrored = kp_xy.copy()
    mirrored[:, 0] = crop_w - 1 - mirrored[:, 0]
    return mirrored[list(FLIP_INDICES)]


def targets(codec: DarkHeatmap, kp_xy: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(codec.encode(kp_xy, np.ones(len(kp_xy))).heatmaps)[None]


@pytest.fixture(params=list(RECIPES))
def codec_and_keypoints(request):
    image_hw, heatmap_hw, sigma = RECIPES[request.param]
    codec = DarkHeatmap(image_hw, heatmap_hw, sigma)
    rng = np.random.default_rng(0)
    crop_w, crop_h = codec.input_wh
    # 32 px (8 heatmap px) from the edges: the decode check's blur window (11 px) then never reaches column 0,
    # whose value the flip keeps instead of shifting.
    kp = np.stack([rng.uniform(32, crop_w - 32, NUM_KEYPOINTS), rng.uniform(32, crop_h - 32, NUM_KEYPOINTS)], axis=1)
    return codec, kp


def test_flipped_back_heatmaps_are_the_originals_shifted_by_one_crop_pixel(codec_and_keypoints):
    codec, kp = codec_and_keypoints
    mirrored = targets(codec, mirrored_keypoints(kp, codec.input_wh[0]))
    back = flip_heatmaps(mirrored)
    expected = targets(codec, kp + [1.0, 0.0])
    torch.testing.assert_close(back[..., 1:], expected[..., 1:], atol=2e-6, rtol=0)
    # Column 0 keeps its own (mirrored) value: exactly the unshifted flip's column 0.
    torch.testing.assert_close(back[..., 0], flip_heatmaps(mirrored, shift=False)[..., 0], atol=0, rtol=0)
    assert not torch.allclose(back[..., 0], expected[..., 0], rtol=0.1, atol=0)  # ... unlike the +1 target


def test_unshifted_flip_lands_one_heatmap_pixel_minus_a_crop_pixel_off(codec_and_keypoints):
    codec, kp = codec_and_keypoints
    back = flip_heatmaps(targets(codec, mirrored_keypoints(kp, codec.input_wh[0])), shift=False)
    torch.testing.assert_close(back, targets(codec, kp + [1.0 - codec.stride, 0.0]), atol=2e-6, rtol=0)


def test_flip_test_average_of_ideal_predictions_decodes_to_the_shifted_keypoints(codec_and_keypoints):
    codec, kp = codec_and_keypoints
    original = targets(codec, kp + [1.0, 0.0])
    average = flip_test_average(original, targets(codec, mirrored_keypoints(kp, codec.input_wh[0])))
    torch.testing.assert_close(average[..., 1:], original[..., 1:], atol=2e-6, rtol=0)
    decoded, _ = codec.decode(average)
    assert np.abs(decoded[0].numpy() - (kp + [1.0, 0.0])).max() < 0.05


def test_flip_heatmaps_matches_numpy_reference():
    rng = np.random.default_rng(1)
    hm = rng.standard_normal((2, NUM_KEYPOINTS, 8, 6)).astype(np.float32)
    ref = ref_flip_heatmaps(hm, FLIP_INDICES)
    out = flip_heatmaps(torch.from_numpy(hm))
    np.testing.assert_array_equal(out.numpy(), ref)
    unshifted = flip_heatmaps(torch.from_numpy(hm), shift=False)
    np.testing.assert_array_equal(unshifted.numpy(), ref_flip_heatmaps(hm, FLIP_INDICES, shift=False))
    # Without the shift, flipping twice is the identity (FLIP_INDICES is an involution).
    twice = flip_heatmaps(flip_heatmaps(torch.from_numpy(hm), shift=False), shift=False)
    np.testing.assert_array_equal(twice.numpy(), hm)


def test_custom_flip_indices_and_input_untouched():
    hm = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4)
    before = hm.clone()
    out = flip_heatmaps(hm, flip_indices=[2, 1, 0])
    assert torch.equal(hm, before)
    assert torch.equal(out[:, 0, :, 1:], hm[:, 2].flip(-1)[..., :-1])
    assert torch.equal(out[:, 0, :, 0], hm[:, 2, :, -1])


def test_flip_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(B, K, h, w\)"):
        flip_heatmaps(torch.zeros(NUM_KEYPOINTS, 64, 48))
    with pytest.raises(ValueError, match="flip indices"):
        flip_heatmaps(torch.zeros(1, 17, 64, 48))
    with pytest.raises(ValueError, match="flip indices"):
        flip_heatmaps(torch.zeros(1, 3, 4, 4), flip_indices=[0, 1, 3])
    with pytest.raises(ValueError, match="same shape"):
        flip_test_average(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), flip_indices=[0, 1, 2])


def test_flip_error_messages_name_what_was_given():
    with pytest.raises(ValueError, match=r"^expected heatmaps of shape \(B, K, h, w\), got \(3, 4, 4\)$"):
        flip_heatmaps(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"^expected heatmaps of shape \(B, K, h, w\), got ndarray$"):
        flip_heatmaps(np.zeros((1, 3, 4, 4)))
    # A (K, 1) index has K elements but is not one index per channel.
    with pytest.raises(ValueError, match=r"^expected 3 flip indices \(one per heatmap channel\), got shape \(3, 1\)$"):
        flip_heatmaps(torch.zeros(1, 3, 4, 4), flip_indices=[[2], [1], [0]])
    whole = r"^expected heatmaps and heatmaps_flipped as torch tensors of shape \(B, K, h, w\)$"
    for pair in ((torch.zeros(1, 3, 4, 4), np.zeros((1, 3, 4, 4))), (np.zeros((1, 3, 4, 4)), torch.zeros(1, 3, 4, 4))):
        with pytest.raises(ValueError, match=whole):
            flip_test_average(*pair, flip_indices=[2, 1, 0])


@pytest.mark.parametrize("shape", [(2, 1, 3, 5), (2, 3, 1, 5), (1, 3, 4, 2), (1, 3, 4, 1)])
@pytest.mark.parametrize("shift", [True, False])
def test_flip_of_small_maps_matches_numpy_reference(shape, shift):
    """One channel, one row, two columns, one column: the shift is decided by the width alone."""
    hm = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    flip = list(range(shape[1]))[::-1]
    ref = ref_flip_heatmaps(hm, flip, shift=shift)
    np.testing.assert_array_equal(flip_heatmaps(torch.from_numpy(hm), flip, shift=shift).numpy(), ref)
    other = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    average = flip_test_average(torch.from_numpy(other), torch.from_numpy(hm), flip, shift=shift)
    np.testing.assert_allclose(average.numpy(), (other + ref) / 2, rtol=1e-6, atol=1e-7)

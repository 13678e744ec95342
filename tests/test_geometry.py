"""Crop geometry: the closed-form warp equals MMPose's three-point construction
(docs/conventions.md#box-to-centre-and-scale); inverse and crop->image (docs/conventions.md#heatmap-to-image) agree.
"""

import numpy as np
import torch

from helpers.references import ref_warp_matrix
from wbpose.geometry import (
    apply_affine,
    bbox_xywh_to_xyxy,
    bbox_xyxy_to_center_scale,
    crop_to_image,
    fix_aspect_ratio,
    warp_matrix,
)


def test_warp_matrix_matches_three_point_construction():
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = rng.uniform(0, 600, 2)
        s = rng.uniform(20, 400, 2)
        rot = rng.uniform(-80, 80)
        m = warp_matrix(c, s, rot, (192, 256))
        np.testing.assert_allclose(m, ref_warp_matrix(c, s[0], rot, (192, 256)), rtol=1e-4, atol=1e-3)


def test_inverse_round_trip_and_crop_to_image():
    rng = np.random.default_rng(1)
    c = rng.uniform(100, 500, (8, 2))
    s = fix_aspect_ratio(rng.uniform(50, 300, (8, 2)), 192 / 256)
    pts = rng.uniform(0, 640, (8, 133, 2))
    fwd = warp_matrix(c, s, rng.uniform(-60, 60, 8), (192, 256))
    rot = np.rad2deg(np.arctan2(fwd[:, 0, 1], fwd[:, 0, 0]))
    inv = warp_matrix(c, s, rot, (192, 256), inverse=True)
    back = apply_affine(apply_affine(pts, fwd), inv)
    assert np.abs(back - pts).max() < 1e-6
    # unrotated: crop_to_image equals the inverse warp
    fwd0 = warp_matrix(c, s, 0.0, (192, 256))
    crop = apply_affine(pts, fwd0)
    img = crop_to_image(torch.from_numpy(crop), torch.from_numpy(c), torch.from_numpy(s), (192, 256))
    assert (img.numpy() - pts).__abs__().max() < 1e-6


def test_center_scale_padding_and_aspect():
    c, s = bbox_xyxy_to_center_scale(np.array([10.0, 20.0, 110.0, 220.0]), (192, 256))
    np.testing.assert_allclose(c, [60.0, 120.0])
    # 100x200 box, padded 1.25 -> 125x250; aspect 0.75 -> width grows to 187.5
    np.testing.assert_allclose(s, [187.5, 250.0])
    _, s2 = bbox_xyxy_to_center_scale(np.array([0.0, 0.0, 300.0, 100.0]), (192, 256))
    np.testing.assert_allclose(s2, [375.0, 500.0])


def test_bbox_xywh_to_xyxy_values_shapes_and_dtype():
    """Integer boxes come back as float64 corners; any leading shape is kept (found by mutation testing: the
    function had no test)."""
    out = bbox_xywh_to_xyxy(np.array([[10, 20, 30, 40], [0, 0, 5, 7]]))
    assert out.dtype == np.float64 and out.shape == (2, 4)
    np.testing.assert_array_equal(out, [[10, 20, 40, 60], [0, 0, 5, 7]])
    np.testing.assert_array_equal(bbox_xywh_to_xyxy([1.5, 2.0, 3.0, 4.0]), [1.5, 2.0, 4.5, 6.0])
    boxes = np.arange(24.0).reshape(2, 3, 4)
    out = bbox_xywh_to_xyxy(boxes)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out[1, 2], [20.0, 21.0, 42.0, 44.0])


def test_fix_aspect_ratio_grows_the_shorter_side():
    """At w / h = 0.75: a square grows in height, a thin box in width, a box already at the ratio is unchanged."""
    out = fix_aspect_ratio(np.array([[100.0, 100.0], [30.0, 100.0], [75.0, 100.0]]), 0.75)
    np.testing.assert_allclose(out, [[100.0, 400.0 / 3], [75.0, 100.0], [75.0, 100.0]])


def test_crop_to_image_keeps_the_keypoints_dtype():
    """float32 keypoints with float64 boxes give float32 image keypoints (the boxes are cast, not the keypoints)."""
    kp = torch.tensor([[[8.0, 16.0]]], dtype=torch.float32)
    out = crop_to_image(kp, torch.tensor([[50.0, 60.0]], dtype=torch.float64),
                        torch.tensor([[40.0, 80.0]], dtype=torch.float64), (32, 64))  # fmt: skip
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[[40.0, 40.0]]]))

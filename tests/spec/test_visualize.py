"""Drawing helpers put part colours where the keypoints are and tile grids correctly."""

import numpy as np
import pytest

from wbpose.data.transforms import denormalize_image as denormalize
from wbpose.keypoints import PART_COLORS
from wbpose.visualize import draw_pose, heatmap_overlay, make_grid, save_png


def test_draw_pose_colours_points_by_part():
    img = np.zeros((200, 200, 3), np.uint8)
    kpts = np.full((1, 133, 2), 10.0)
    kpts[0, 100] = (150, 60)  # a left-hand point
    scores = np.zeros((1, 133))
    scores[0, 100] = 1.0
    out = draw_pose(img, kpts, scores, radius=3)
    assert tuple(out[60, 150]) == PART_COLORS["lefthand"]
    assert out[10, 10].sum() == 0  # below the score threshold: not drawn
    assert img.sum() == 0  # input untouched


def test_draw_pose_rejects_bad_shapes():
    with pytest.raises(ValueError, match="133"):
        draw_pose(np.zeros((10, 10, 3), np.uint8), np.zeros((1, 17, 2)))


def test_grid_overlay_and_png(tmp_path):
    imgs = [np.full((20, 30, 3), i * 40, np.uint8) for i in range(5)]
    g = make_grid(imgs, ncols=3, pad=2)
    assert g.shape == (2 * 22 + 2, 3 * 32 + 2, 3)
    assert g[2 + 22, 2 + 32, 0] == 4 * 40  # fifth image: row 1, col 1
    hm = np.zeros((133, 5, 5), np.float32)
    hm[3, 2, 2] = 1.0
    ov = heatmap_overlay(np.zeros((20, 20, 3), np.uint8), hm)
    assert ov[10, 10].sum() > ov[0, 0].sum()
    chw = (np.full((3, 4, 4), 100.0) - np.array([123.675, 116.28, 103.53])[:, None, None]) / np.array(
        [58.395, 57.12, 57.375]
    )[:, None, None]
    assert np.all(denormalize(chw) == 100)
    p = save_png(tmp_path / "a" / "g.png", g)
    assert p.exists() and p.stat().st_size > 0

"""Drawing helpers put part colours where the keypoints are and tile grids correctly; a training crop shows its
weighted keypoints, links, caption and (optionally) its target heatmaps."""

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from wbpose.data.transforms import denormalize_image as denormalize
from wbpose.keypoints import NUM_KEYPOINTS, PART_COLORS
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


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset root (6 train, 3 val images)."""
    from wbpose.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("visualize_synthetic")
    generate_dataset(root, num_train=6, num_val=3, seed=0)
    return root


def _train_samples(root: Path, count: int, input_hw: tuple[int, int] = (128, 96)) -> list:
    from wbpose.codecs import MSRAHeatmap
    from wbpose.data.coco_wholebody import CocoWholeBodyDataset
    from wbpose.data.layout import TRAIN_ANN

    h, w = input_hw
    codec = MSRAHeatmap((h, w), (h // 4, w // 4), 2.0)
    dataset = CocoWholeBodyDataset(root / TRAIN_ANN, root / "train2017", (w, h), codec=codec)
    return [dataset.transform(dataset.load_sample(i), index=i) for i in range(count)]


def test_draw_training_sample_draws_the_weighted_keypoints(synthetic):
    from wbpose.data.transforms import denormalize_image
    from wbpose.visualize import draw_training_sample

    scale = 2
    sample = next(s for s in _train_samples(synthetic, 6) if (s.weights > 0).sum() >= 10)
    plain = cv2.resize(denormalize_image(sample.image_chw), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

    bare = dataclasses.replace(sample, heatmaps=None)  # keypoints, skeleton and caption only
    tile = draw_training_sample(bare, scale)
    assert tile.shape == plain.shape == (128 * scale, 96 * scale, 3) and tile.dtype == np.uint8
    pts = np.round(sample.keypoints_xy[sample.weights > 0] * scale).astype(int)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < tile.shape[1]) & (pts[:, 1] >= 20) & (pts[:, 1] < tile.shape[0])
    pts = pts[inside]
    assert len(pts) >= 5
    changed = np.any(tile != plain, axis=-1)
    assert changed[pts[:, 1], pts[:, 0]].mean() > 0.9  # the keypoints are drawn
    # away from the points, the links and the caption the crop is untouched
    yy, xx = np.mgrid[: tile.shape[0], : tile.shape[1]]
    all_pts = sample.keypoints_xy[sample.weights > 0] * scale
    dist = np.min(np.hypot(yy[..., None] - all_pts[:, 1], xx[..., None] - all_pts[:, 0]), axis=-1)
    untouched = (dist > 5) & ~_near_links(sample, scale, tile.shape[:2]) & (yy > 20)
    assert untouched.mean() > 0.3
    assert not changed[untouched].any()

    # no weighted keypoint: only the caption changes the crop
    nothing = draw_training_sample(dataclasses.replace(bare, weights=np.zeros_like(sample.weights)), scale)
    assert not np.any(nothing[20:] != plain[20:])
    assert np.any(nothing[:20] != plain[:20])

    # with the heatmaps the target is blended in around the keypoints
    with_heatmaps = draw_training_sample(sample, scale)
    assert np.any(with_heatmaps != tile)


def _near_links(sample, scale: int, hw: tuple[int, int]) -> np.ndarray:
    """Mask of the pixels within 3 px of a drawn skeleton link (links may cross empty areas)."""
    from wbpose.keypoints import SKELETON

    mask = np.zeros(hw, np.uint8)
    on = sample.weights > 0
    pts = np.round(sample.keypoints_xy * scale).astype(int)
    for i, j in SKELETON:
        if on[i] and on[j]:
            cv2.line(mask, tuple(int(v) for v in pts[i]), tuple(int(v) for v in pts[j]), 1, 7)
    return mask.astype(bool)


def test_heatmap_overlay_per_pixel_and_grid_options():
    from wbpose.visualize import heatmap_overlay, make_grid

    image = np.full((20, 20, 3), 77, np.uint8)
    hm = np.zeros((NUM_KEYPOINTS, 5, 5), np.float32)
    hm[3, 2, 2] = 1.0
    per_pixel = heatmap_overlay(image, hm, alpha=0.65, per_pixel=True)
    assert np.all(per_pixel[0, 0] == 77)  # zero heatmap: untouched
    assert np.any(per_pixel[10, 10] != 77)
    assert np.any(heatmap_overlay(image, hm)[0, 0] != 77)  # default: the same blend everywhere (unchanged)

    tiles = [np.full((10, 6, 3), 200, np.uint8)] * 5
    grid = make_grid(tiles, ncols=None, pad=4, background=40)
    assert grid.shape == (2 * 14 + 4, 3 * 10 + 4, 3)  # ceil(sqrt(5)) = 3 columns, 2 rows
    assert grid[0, 0, 0] == 40 and grid[4, 4, 0] == 200
    assert make_grid(tiles).shape == (2 * 12 + 2, 4 * 8 + 2, 3) and make_grid(tiles)[0, 0, 0] == 0  # defaults


def test_draw_training_samples_grid(synthetic):
    from wbpose.visualize import draw_training_samples

    grid = draw_training_samples(_train_samples(synthetic, 5), scale=1)
    assert grid.shape == (2 * (128 + 4) + 4, 3 * (96 + 4) + 4, 3)

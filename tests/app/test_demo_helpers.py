"""The shared people selection (metric and demo) and the training-crop drawing (visualize and its script).

- ``select_people`` against a plain-loop reference of the evaluation's selection (dedupe by instance id, MMPose
  rescoring, greedy OKS-NMS per image), and the metric's results file and the demo both built from it;
- ``draw_training_sample`` / ``draw_training_samples`` and ``wbpose-training-crops`` end to end on a small
  synthetic dataset.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from wbpose.keypoints import NUM_KEYPOINTS, sigmas_array
from wbpose.metrics.oks import select_people

# ---------------------------------------------------------------------------------------------- selection


def reference_select(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray,
    bbox_scores: np.ndarray,
    areas: np.ndarray,
    instance_ids: np.ndarray | None = None,
    keypoint_score_thr: float = 0.2,
    nms_thr: float = 0.9,
) -> tuple[list[int], list[float]]:
    """The evaluation's selection written as plain loops (one instance, one pair at a time)."""
    n = len(image_ids)
    # 1. first occurrence of each instance id, in ascending id order (the canonical order)
    first: dict[int, int] = {}
    for i in range(n):
        key = i if instance_ids is None else int(instance_ids[i])
        if key not in first:
            first[key] = i
    rows = [first[key] for key in sorted(first)]
    # 2. instance score = box score * mean of the keypoint scores above the threshold (0 if none)
    score: dict[int, float] = {}
    for i in rows:
        kpt = keypoint_scores[i]
        above = kpt > keypoint_score_thr
        score[i] = float(bbox_scores[i] * (np.where(above, kpt, 0.0).sum() / above.sum())) if above.any() else 0.0
    # 3. greedy OKS-NMS per image, descending score, ties in canonical order
    variances = (sigmas_array() * 2) ** 2
    keep: list[int] = []
    for image_id in sorted({int(image_ids[i]) for i in rows}):
        candidates = [i for i in rows if int(image_ids[i]) == image_id]
        candidates.sort(key=lambda i: -score[i])  # stable: ties keep the canonical order
        kept_here: list[int] = []
        for i in candidates:
            suppressed = False
            for j in kept_here:
                d2 = ((keypoints[i] - keypoints[j]) ** 2).sum(-1)
                e = d2 / variances / ((areas[i] + areas[j]) / 2 + np.spacing(1)) / 2
                if np.mean(np.exp(-e)) > nms_thr:
                    suppressed = True
                    break
            if not suppressed:
                kept_here.append(i)
        keep.extend(kept_here)
    return keep, [score[i] for i in keep]


def random_predictions(seed: int, num_images: int = 5) -> dict[str, np.ndarray]:
    """Shuffled predictions over several images: distinct people, near-duplicates (OKS > 0.9), overlapping people
    around the NMS threshold, exact copies under new ids (score ties), zero-score people, and repeated instance ids
    (padding-like exact repeats and conflicting rows that must lose to the first occurrence)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("image_ids", "keypoints", "keypoint_scores", "bbox_scores", "areas")}

    def add(image_id: int, kpts: np.ndarray, kscores: np.ndarray, bbox_score: float, area: float) -> None:
        for key, value in zip(rows, (image_id, kpts, kscores, bbox_score, area)):
            rows[key].append(value)

    for image_id in rng.permutation(np.arange(100, 100 + 7 * num_images, 7)):
        for _ in range(int(rng.integers(1, 5))):
            side = rng.uniform(40, 200)
            base = rng.uniform(0, 400, 2) + rng.uniform(0, side, (NUM_KEYPOINTS, 2))
            area = side * side * rng.uniform(1.0, 1.6)
            kscores = rng.uniform(0, 1, NUM_KEYPOINTS)
            if rng.random() < 0.15:
                kscores *= 0.19  # nothing above the keypoint threshold: instance score 0
            add(image_id, base, kscores, rng.uniform(0.3, 1), area)
            for noise in rng.choice([0.2, 1.0, 3.0, 6.0, 12.0, 30.0], size=int(rng.integers(0, 4))):
                add(
                    image_id,
                    base + rng.normal(0, noise, base.shape),
                    np.clip(kscores + rng.normal(0, 0.1, NUM_KEYPOINTS), 0, 1),
                    rng.uniform(0.3, 1),
                    area * rng.uniform(0.9, 1.1),
                )
            if rng.random() < 0.3:
                add(image_id, base.copy(), kscores.copy(), rows["bbox_scores"][-1], rows["areas"][-1])  # a tie
    preds = {k: np.asarray(v, dtype=np.int64 if k == "image_ids" else np.float64) for k, v in rows.items()}
    n = len(preds["image_ids"])
    preds["instance_ids"] = rng.permutation(n) * 3 + 11  # unique, not in row order
    # repeats: exact copies of rows (sampler padding) and rows with a reused id but other content, appended after
    # the originals so that the original is the first occurrence
    padding = rng.integers(0, n, n // 4)
    conflict = rng.integers(0, n, n // 6)
    extra = {k: np.concatenate([v[padding], v[conflict]]) for k, v in preds.items()}
    extra["keypoints"][len(padding) :] += rng.normal(0, 50, extra["keypoints"][len(padding) :].shape)
    extra["keypoint_scores"][len(padding) :] = rng.uniform(0.5, 1, extra["keypoint_scores"][len(padding) :].shape)
    preds = {k: np.concatenate([preds[k], extra[k]]) for k in preds}
    order = np.concatenate([rng.permutation(n), n + rng.permutation(len(padding) + len(conflict))])
    return {k: v[order] for k, v in preds.items()}


def _args(preds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(preds[k] for k in ("image_ids", "keypoints", "keypoint_scores", "bbox_scores", "areas"))


@pytest.mark.parametrize("seed", range(6))
def test_select_people_matches_a_plain_loop(seed):
    preds = random_predictions(seed)
    keep, scores = select_people(*_args(preds), instance_ids=preds["instance_ids"])
    ref_keep, ref_scores = reference_select(*_args(preds), instance_ids=preds["instance_ids"])
    assert keep.tolist() == ref_keep  # same people, same order (image, then descending score)
    np.testing.assert_array_equal(scores, np.asarray(ref_scores))
    # the data exercises every step: duplicates dropped, some people suppressed, several images, zero scores
    num_unique = len(np.unique(preds["instance_ids"]))
    assert num_unique < len(preds["instance_ids"])
    assert len(keep) < num_unique
    assert len(np.unique(preds["image_ids"][keep])) > 1
    assert len(np.unique(preds["instance_ids"][keep])) == len(keep)


@pytest.mark.parametrize("nms_thr, keypoint_score_thr", [(0.5, 0.2), (0.95, 0.5), (0.9, 0.0)])
def test_select_people_thresholds_and_no_instance_ids(nms_thr, keypoint_score_thr):
    preds = random_predictions(7)
    kwargs = dict(keypoint_score_thr=keypoint_score_thr, nms_thr=nms_thr)
    for ids in (preds["instance_ids"], None):
        keep, scores = select_people(*_args(preds), instance_ids=ids, **kwargs)
        ref_keep, ref_scores = reference_select(*_args(preds), instance_ids=ids, **kwargs)
        assert keep.tolist() == ref_keep
        np.testing.assert_array_equal(scores, np.asarray(ref_scores))


def test_select_people_is_independent_of_input_order():
    preds = random_predictions(3)
    keep, scores = select_people(*_args(preds), instance_ids=preds["instance_ids"])
    # any order in which each id's first occurrence stays the same row (the originals come before the repeats)
    n = len(np.unique(preds["instance_ids"]))
    perm = np.concatenate([np.random.default_rng(0).permutation(n), np.arange(n, len(preds["instance_ids"]))])
    shuffled = {k: v[perm] for k, v in preds.items()}
    keep2, scores2 = select_people(*_args(shuffled), instance_ids=shuffled["instance_ids"])
    assert perm[keep2].tolist() == keep.tolist()
    np.testing.assert_array_equal(scores2, scores)


def test_select_people_empty():
    keep, scores = select_people(
        np.zeros(0, np.int64), np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros((0, NUM_KEYPOINTS)), np.zeros(0), np.zeros(0)
    )
    assert keep.shape == scores.shape == (0,)
    assert keep.dtype == np.int64


# ---------------------------------------------------------------------------------------------- synthetic data


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wbpose.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("demo_helpers_synthetic")
    generate_dataset(root, num_train=6, num_val=3, seed=0)
    return root


def test_metric_results_are_the_selected_people(synthetic, tmp_path):
    """The metric's results file holds exactly select_people's people, in its order, with its scores."""
    from wbpose.data.layout import VAL_ANN
    from wbpose.metrics import CocoWholeBodyMetric

    ann_file = synthetic / VAL_ANN
    image_ids = [img["id"] for img in json.loads(ann_file.read_text())["images"]]
    preds = random_predictions(11, num_images=len(image_ids))
    remap = dict(zip(sorted(np.unique(preds["image_ids"]).tolist()), image_ids))
    preds["image_ids"] = np.asarray([remap[int(i)] for i in preds["image_ids"]])
    metric = CocoWholeBodyMetric(ann_file, num_procs=1, outfile=tmp_path / "results.json")
    half = len(preds["image_ids"]) // 2  # two updates, like two batches
    for part in (slice(0, half), slice(half, None)):
        metric.update(**{k: torch.as_tensor(v[part]) for k, v in preds.items()})
    metric.compute()
    results = json.loads((tmp_path / "results.json").read_text())
    keep, scores = select_people(*_args(preds), instance_ids=preds["instance_ids"])
    assert [r["image_id"] for r in results] == preds["image_ids"][keep].tolist()
    assert [r["score"] for r in results] == scores.tolist()
    body = np.asarray([r["keypoints"] for r in results]).reshape(len(results), 17, 3)
    np.testing.assert_array_equal(body[..., :2], preds["keypoints"][keep][:, :17])


def test_demo_people_are_the_metric_selection_above_the_display_threshold(monkeypatch):
    """``_person_predictions`` draws select_people's people (with the module's metric thresholds) above min_score."""
    from wbpose.app import demo

    preds = random_predictions(5)
    n = len(preds["image_ids"])
    scale_wh = np.stack([np.sqrt(preds["areas"]), np.sqrt(preds["areas"])], 1)
    batches = [slice(i, min(i + 16, n)) for i in range(0, n, 16)]
    outputs = [
        {
            "keypoints": torch.as_tensor(preds["keypoints"][b]),
            "scores": torch.as_tensor(preds["keypoint_scores"][b]),
            "image_id": torch.as_tensor(preds["image_ids"][b]),
            "instance_id": torch.as_tensor(preds["instance_ids"][b]),
            "bbox_score": torch.as_tensor(preds["bbox_scores"][b]),
            "scale_wh": torch.as_tensor(scale_wh[b]),
        }
        for b in batches
    ]
    monkeypatch.setattr(
        demo, "_quiet_trainer", lambda cfg: SimpleNamespace(predict=lambda module, dataloaders: outputs)
    )
    module = SimpleNamespace(val_metric=SimpleNamespace(keypoint_score_thr=0.3, nms_thr=0.8))
    datamodule = SimpleNamespace(val_dataloader=lambda: None)
    per_image = demo._person_predictions(module, datamodule, cfg=None, min_score=0.25)

    areas = scale_wh.prod(-1)
    keep, scores = select_people(
        preds["image_ids"],
        preds["keypoints"],
        preds["keypoint_scores"],
        preds["bbox_scores"],
        areas,
        instance_ids=preds["instance_ids"],
        keypoint_score_thr=0.3,
        nms_thr=0.8,
    )
    keep, scores = keep[scores > 0.25], scores[scores > 0.25]
    assert len(keep) > 0
    assert sorted(per_image) == sorted(set(preds["image_ids"][keep].tolist()))
    for image_id, people in per_image.items():
        rows = keep[preds["image_ids"][keep] == image_id]
        np.testing.assert_array_equal(people["keypoints"], preds["keypoints"][rows])
        np.testing.assert_array_equal(people["scores"], preds["keypoint_scores"][rows])
        np.testing.assert_array_equal(people["instance_scores"], scores[preds["image_ids"][keep] == image_id])


# ---------------------------------------------------------------------------------------------- drawing


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


def test_training_crops_command_end_to_end(synthetic, tmp_path, capsys):
    from wbpose.app.training_crops import main

    out = tmp_path / "tmp" / "grid.png"
    argv = ["--data-root", str(synthetic), "--out", str(out), "--n", "4", "--input-hw", "128", "96"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "4 train crops" in printed
    grid = cv2.imread(str(out))
    assert grid is not None
    assert grid.shape == (2 * (128 + 4) + 4, 2 * (96 + 4) + 4, 3)  # 2 x 2 tiles of 128 x 96, 4 px padding
    assert np.all(grid[:4] == 40)  # the padding
    assert grid[4:-4, 4:-4].std() > 10  # the crops

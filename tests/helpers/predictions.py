"""Metric inputs made from COCO-WholeBody ground truth (see :mod:`helpers.annotations`).

:func:`gt_as_predictions` must score AP = AR = 1 on every part; :func:`detector_like_predictions` is what a detector
plus a pose model gives (noisy true people, false ones, heatmap-like scores). Both return the keyword arguments of
``CocoWholeBodyMetric.update()`` as numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, sigmas_array


def gt_keypoints(gt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return the 133 keypoints of every annotation.

    Shape:
        xy: (N, 133, 2); visible: (N, 133) float (the raw v values).
    """
    rows = [
        np.concatenate([np.asarray(a[f], dtype=np.float64) for f in PART_FIELDS.values()]) for a in gt["annotations"]
    ]
    kpts = np.stack(rows).reshape(len(rows), NUM_KEYPOINTS, 3)
    return kpts[..., :2], kpts[..., 2]


def gt_as_predictions(gt: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Turn the ground truth into metric inputs that must score AP = AR = 1 on every part.

    Labelled keypoints keep their position with score 1; unlabelled ones get score 0 and a random position in
    the person's box (real models never predict (0, 0), and identical zeros would make OKS-NMS merge people).

    Returns:
        ``update()`` keyword arguments as numpy arrays.
    """
    rng = np.random.default_rng(seed)
    xy, vis = gt_keypoints(gt)
    boxes = np.array([a["bbox"] for a in gt["annotations"]], dtype=np.float64)
    fill = boxes[:, None, :2] + rng.uniform(0.1, 0.9, xy.shape) * boxes[:, None, 2:]
    xy = np.where(vis[..., None] > 0, xy, fill)
    n = len(boxes)
    return {
        "instance_ids": np.arange(n, dtype=np.int64),
        "image_ids": np.array([a["image_id"] for a in gt["annotations"]], dtype=np.int64),
        "keypoints": xy,
        "keypoint_scores": (vis > 0).astype(np.float64),
        "bbox_scores": np.ones(n),
        "areas": boxes[:, 2] * boxes[:, 3] * 1.25**2,
    }


def detector_like_predictions(
    gt: dict[str, Any], seed: int = 0, num_false: int = 2, noise: float = 0.3
) -> dict[str, np.ndarray]:
    """Noisy predictions as a detector + pose model gives: one per person plus ``num_false`` false ones per image.

    The true-ish predictions are the person's keypoints plus Gaussian noise of ``c * 2 sigma_k * sqrt(box area)``
    with ``c = noise * U(0.3, 2)`` per person (so the expected OKS term ``e`` is about ``c^2`` on every part);
    false ones are random people. Scores are heatmap-max-like values in [0, 1].

    Returns:
        ``update()`` keyword arguments as numpy arrays (instance ids in order).
    """
    rng = np.random.default_rng(seed)
    xy, vis = gt_keypoints(gt)
    boxes = np.array([a["bbox"] for a in gt["annotations"]], dtype=np.float64)
    fill = boxes[:, None, :2] + rng.uniform(0.0, 1.0, xy.shape) * boxes[:, None, 2:]
    xy = np.where(vis[..., None] > 0, xy, fill)
    scale = np.sqrt(boxes[:, 2] * boxes[:, 3])[:, None, None]
    c = noise * rng.uniform(0.3, 2.0, (len(xy), 1, 1))
    true_xy = xy + rng.normal(0.0, 1.0, xy.shape) * c * 2 * sigmas_array()[None, :, None] * scale
    true_img = np.array([a["image_id"] for a in gt["annotations"]], dtype=np.int64)
    img_ids = np.array([im["id"] for im in gt["images"]], dtype=np.int64)
    w_img = np.array([im["width"] for im in gt["images"]], dtype=np.float64)
    h_img = np.array([im["height"] for im in gt["images"]], dtype=np.float64)
    nf = num_false * len(img_ids)
    false_img_idx = np.repeat(np.arange(len(img_ids)), num_false)
    side = rng.uniform(40.0, 200.0, nf)
    x0 = rng.uniform(0.0, 1.0, nf) * (w_img[false_img_idx] - side * 0.6)
    y0 = rng.uniform(0.0, 1.0, nf) * np.maximum(h_img[false_img_idx] - side, 1.0)
    false_xy = (
        np.stack([x0, y0], -1)[:, None, :]
        + rng.uniform(0, 1, (nf, NUM_KEYPOINTS, 2)) * np.stack([side * 0.6, side], -1)[:, None, :]
    )
    keypoints = np.concatenate([true_xy, false_xy])
    n = len(keypoints)
    scores = np.concatenate([rng.beta(5, 2, (len(true_xy), NUM_KEYPOINTS)), rng.beta(2, 5, (nf, NUM_KEYPOINTS))])
    bbox_scores = np.concatenate([rng.uniform(0.5, 1.0, len(true_xy)), rng.uniform(0.05, 0.6, nf)])
    areas = np.concatenate([boxes[:, 2] * boxes[:, 3], side * side * 0.6]) * 1.25**2
    image_ids = np.concatenate([true_img, img_ids[false_img_idx]])
    perm = rng.permutation(n)  # detector order is not grouped by truth
    return {
        "instance_ids": np.arange(n, dtype=np.int64),
        "image_ids": image_ids[perm],
        "keypoints": keypoints[perm],
        "keypoint_scores": scores[perm],
        "bbox_scores": bbox_scores[perm],
        "areas": areas[perm],
    }


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


def selection_args(preds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The positional arguments of ``select_people`` (and of its reference) from ``random_predictions``."""
    return tuple(preds[k] for k in ("image_ids", "keypoints", "keypoint_scores", "bbox_scores", "areas"))

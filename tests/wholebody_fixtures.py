"""Synthetic COCO-WholeBody ground truth and predictions for metric tests and benchmarks.

The annotation dicts carry every field of the real v1.0 files (see SPEC 1.5): the COCO person fields
(``keypoints``, ``num_keypoints``, ``bbox``, ``area``, ``iscrowd``, ``segmentation``, ...) plus ``foot_kpts``,
``face_kpts``, ``lefthand_kpts``, ``righthand_kpts``, the part boxes and the ``*_valid`` flags. Parts that are
not labelled are all zeros, as in the real files. People are a mix of small, medium and large so that the
AP(M)/AP(L) columns are defined.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES, sigmas_array

_PART_VALID = {"foot": "foot_valid", "face": "face_valid", "lefthand": "lefthand_valid", "righthand": "righthand_valid"}
_PART_BOX = {"face": "face_box", "lefthand": "lefthand_box", "righthand": "righthand_box"}


def _person(rng: np.random.Generator, image_wh: tuple[int, int], side: float, missing: tuple[str, ...]) -> dict:
    """One annotation without ids: a box of about ``side`` pixels and 133 keypoints inside it."""
    w_img, h_img = image_wh
    w = side * rng.uniform(0.5, 0.8)
    h = side
    x = rng.uniform(0, max(w_img - w, 1.0))
    y = rng.uniform(0, max(h_img - h, 1.0))
    xy = np.stack([rng.uniform(x, x + w, NUM_KEYPOINTS), rng.uniform(y, y + h, NUM_KEYPOINTS)], axis=-1)
    # Visibility: 0 (unlabelled), 1 (occluded) or 2 (visible); face and hands use floats as in the real files.
    vis = rng.choice([0.0, 1.0, 2.0], size=NUM_KEYPOINTS, p=[0.25, 0.25, 0.5])
    for part in missing:
        vis[PART_SLICES[part]] = 0.0
    xy[vis == 0] = 0.0
    ann: dict = {
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
        "num_keypoints": int(np.count_nonzero(vis[PART_SLICES["body"]] > 0)),
        "area": float(w * h * rng.uniform(0.5, 0.7)),
        "iscrowd": 0,
        "bbox": [float(x), float(y), float(w), float(h)],
        "category_id": 1,
    }
    for part, field in PART_FIELDS.items():
        sl = PART_SLICES[part]
        triples = np.concatenate([xy[sl], vis[sl, None]], axis=-1).reshape(-1)
        ints = part in ("body", "foot")  # the real files store body and foot as ints
        ann[field] = [round(float(v)) for v in triples] if ints else [float(v) for v in triples]
        labelled = bool(np.any(vis[sl] > 0))
        if part in _PART_VALID:
            ann[_PART_VALID[part]] = labelled
        if part in _PART_BOX:
            pts = xy[sl][vis[sl] > 0]
            box = [0.0, 0.0, 0.0, 0.0]
            if labelled:
                lo, hi = pts.min(0), pts.max(0)
                box = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
            ann[_PART_BOX[part]] = box
    return ann


def make_wholebody_gt(
    num_images: int = 4,
    people_per_image: int = 3,
    seed: int = 0,
    image_wh: tuple[int, int] = (640, 480),
    missing_parts: tuple[str, ...] = (),
    missing_prob: float = 0.3,
) -> dict:
    """Build a COCO-WholeBody v1.0 style ground-truth dict.

    Args:
        num_images: Number of images (ids 1000, 1001, ...).
        people_per_image: People per image.
        seed: Random seed.
        image_wh: Image size.
        missing_parts: Parts unlabelled for every person (e.g. ``("lefthand", "righthand")``).
        missing_prob: Probability that each of foot/face/hands is unlabelled for a person.

    Returns:
        A dict with ``info``, ``licenses``, ``categories``, ``images`` and ``annotations``.
    """
    rng = np.random.default_rng(seed)
    images, anns = [], []
    sides = [24.0, 60.0, 90.0, 150.0, 250.0, 400.0]  # small, medium and large people
    for i in range(num_images):
        image_id = 1000 + i
        images.append(
            {"file_name": f"{image_id:012d}.jpg", "height": image_wh[1], "width": image_wh[0], "id": image_id}
        )
        for j in range(people_per_image):
            missing = set(missing_parts)
            for part in ("foot", "face", "lefthand", "righthand"):
                if rng.random() < missing_prob:
                    missing.add(part)
            side = sides[(i * people_per_image + j) % len(sides)] * rng.uniform(0.9, 1.1)
            ann = _person(rng, image_wh, min(side, image_wh[1] - 1.0), tuple(sorted(missing)))
            ann.update(image_id=image_id, id=len(anns) + 1)
            anns.append(ann)
    categories = [{"supercategory": "person", "id": 1, "name": "person", "keypoints": [], "skeleton": []}]
    return {"info": {}, "licenses": [], "categories": categories, "images": images, "annotations": anns}


def write_json(path: str | Path, obj: dict | list) -> Path:
    """Write ``obj`` as json to ``path`` and return the path."""
    path = Path(path)
    path.write_text(json.dumps(obj))
    return path


def gt_keypoints(gt: dict) -> tuple[np.ndarray, np.ndarray]:
    """Return the 133 keypoints of every annotation.

    Shape:
        xy: (N, 133, 2); visible: (N, 133) float (the raw v values).
    """
    rows = [
        np.concatenate([np.asarray(a[f], dtype=np.float64) for f in PART_FIELDS.values()]) for a in gt["annotations"]
    ]
    kpts = np.stack(rows).reshape(len(rows), NUM_KEYPOINTS, 3)
    return kpts[..., :2], kpts[..., 2]


def gt_as_predictions(gt: dict, seed: int = 0) -> dict[str, np.ndarray]:
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


def detector_like_predictions(gt: dict, seed: int = 0, num_false: int = 2, noise: float = 0.3) -> dict[str, np.ndarray]:
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

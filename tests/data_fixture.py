"""Tiny COCO-WholeBody fixtures for the data tests: a json with hand-placed people and a few cv2-written JPEGs.

Independent of ``wbpose.synthetic.generate`` so the dataset tests pin down exactly the cases they check
(crowd, ``num_keypoints == 0``, zero-size boxes, unlabelled people, float visibilities).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES

IMAGE_WH = (160, 120)


def person(
    ann_id: int,
    image_id: int,
    bbox: list[float],
    keypoints: np.ndarray | None = None,
    iscrowd: int = 0,
    num_keypoints: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """An annotation with all COCO-WholeBody fields; keypoints (133, 3) default to random points in the box."""
    if keypoints is None:
        rng = np.random.default_rng(seed + ann_id)
        x, y, w, h = bbox
        xy = np.stack([rng.uniform(x, x + w, NUM_KEYPOINTS), rng.uniform(y, y + h, NUM_KEYPOINTS)], -1)
        v = np.where(rng.random(NUM_KEYPOINTS) < 0.8, 2.0, 0.0)
        keypoints = np.concatenate([xy * (v[:, None] > 0), v[:, None]], -1)
    kp = np.asarray(keypoints, dtype=np.float64)
    ann: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": iscrowd,
        "bbox": [float(b) for b in bbox],
        "area": float(bbox[2] * bbox[3]),
        "segmentation": [],
        "num_keypoints": int((kp[:17, 2] > 0).sum()) if num_keypoints is None else num_keypoints,
    }
    for part, field in PART_FIELDS.items():
        ann[field] = kp[PART_SLICES[part]].reshape(-1).tolist()
    return ann


def write_images(img_dir: Path, image_ids: list[int], wh: tuple[int, int] = IMAGE_WH) -> list[dict[str, Any]]:
    """Write textured JPEGs named ``{id:012d}.jpg`` and return their ``images`` records."""
    img_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for image_id in image_ids:
        rng = np.random.default_rng(image_id)
        img = rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (5, 5), 0)
        name = f"{image_id:012d}.jpg"
        cv2.imwrite(str(img_dir / name), img)
        records.append({"id": image_id, "file_name": name, "width": wh[0], "height": wh[1]})
    return records


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def standard_people() -> list[dict[str, Any]]:
    """Three good people and one of each skip reason, on images 1 and 2.

    Expected: kept ids {1, 2, 3, 8}; skipped crowd 1 (id 4), no_keypoints 1 (id 5), invalid_box 2 (ids 6, 7:
    zero width, and a box entirely left of the image that clips to zero width), no_labels 1 (id 9).
    """
    zeros = np.zeros((NUM_KEYPOINTS, 3))
    return [
        person(1, 1, [10, 10, 50, 90]),
        person(2, 1, [80, 20, 60, 80]),
        person(3, 2, [30, 5, 70, 100]),
        person(4, 2, [0, 0, 100, 100], iscrowd=1),
        person(5, 2, [10, 10, 40, 40], num_keypoints=0),
        person(6, 1, [20, 20, 0, 30]),
        person(7, 1, [-50, 20, 30, 30]),
        person(8, 2, [100, 40, 80, 120]),  # runs past the image: clipped to x2 = W - 1, y2 = H - 1
        person(9, 2, [10, 10, 40, 40], keypoints=zeros, num_keypoints=3),
    ]


def make_root(root: Path, people: list[dict[str, Any]] | None = None, with_dets: bool = True) -> dict[str, Path]:
    """Write a dataset root in the real layout (train and val share the same people) and return the paths."""
    people = standard_people() if people is None else people
    image_ids = sorted({p["image_id"] for p in people})
    out = {}
    for split in ("train", "val"):
        images = write_images(root / f"{split}2017", image_ids)
        data = {"images": images, "annotations": people, "categories": [{"id": 1, "name": "person"}]}
        out[split] = write_json(root / "annotations" / f"coco_wholebody_{split}_v1.0.json", data)
    if with_dets:
        dets = [
            {"image_id": 1, "category_id": 1, "bbox": [12, 8, 50, 95], "score": 0.9},
            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 20], "score": 0.8},
            {"image_id": 2, "category_id": 1, "bbox": [-5, 30, 60, 100], "score": 0.3},
            {"image_id": 2, "category_id": 1, "bbox": [30, 5, 70, 100], "score": 0.05},
        ]
        out["det"] = write_json(root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json", dets)
    return out

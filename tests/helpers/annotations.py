"""The one builder of COCO-WholeBody annotation files for the tests and the benchmarks.

:func:`person` makes one annotation with every field of the real v1.0 files (docs/conventions.md#annotations): the
COCO person fields (``keypoints`` with the 17 body points, ``num_keypoints``, ``bbox``, ``area``, ``iscrowd``,
``segmentation``, ...) plus ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts``, the part boxes and
the ``*_valid`` flags, derived from the (133, 3) keypoints it is given. Unlabelled points are zeros, as in the real
files; crowd people, ``num_keypoints`` overrides and unlabelled parts are arguments.

Files: :func:`coco_wholebody` wraps images and annotations into the file's top-level dict, :func:`write_images`
writes textured JPEGs and returns their ``images`` records, :func:`write_json` writes any json, and
:func:`write_root` writes a whole dataset root in the real layout (train/val json, JPEGs, detection file).

Two ready-made data sets:

- :func:`standard_people`: hand-placed people on two small images, one per filtering case of the data pipeline
  (crowd, ``num_keypoints == 0``, zero-size and off-image boxes, unlabelled people, a box past the image);
- :func:`make_wholebody_gt`: random ground truth for the metric, small, medium and large people with randomly
  unlabelled parts (body and foot stored as ints, face and hands as floats, as in the real files).

Independent of ``wbpose.synthetic.generate`` on purpose: the tests pin down exactly the cases they check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES

#: Size (w, h) of the JPEGs that :func:`write_images` writes by default.
IMAGE_WH = (160, 120)
#: The dataset root's files (docs/conventions.md#annotations).
ANN_FILE = "annotations/coco_wholebody_{split}_v1.0.json"
DET_FILE = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"
#: The category record of the real files (its keypoint names and skeleton are not read by anything here).
CATEGORY = {"supercategory": "person", "id": 1, "name": "person", "keypoints": [], "skeleton": []}

_PART_VALID = {"foot": "foot_valid", "face": "face_valid", "lefthand": "lefthand_valid", "righthand": "righthand_valid"}
_PART_BOX = {"face": "face_box", "lefthand": "lefthand_box", "righthand": "righthand_box"}
_INT_PARTS = ("body", "foot")  # the real files store body and foot as ints


def random_keypoints(rng: np.random.Generator, bbox: Sequence[float], labelled: float = 0.8) -> np.ndarray:
    """133 keypoints uniform in ``bbox`` (x, y, w, h); each labelled (v = 2) with probability ``labelled``.

    Shape:
        (133, 3) float64; unlabelled points are (0, 0, 0).
    """
    x, y, w, h = bbox
    xy = np.stack([rng.uniform(x, x + w, NUM_KEYPOINTS), rng.uniform(y, y + h, NUM_KEYPOINTS)], -1)
    v = np.where(rng.random(NUM_KEYPOINTS) < labelled, 2.0, 0.0)
    return np.concatenate([xy * (v[:, None] > 0), v[:, None]], -1)


def person(
    ann_id: int,
    image_id: int,
    bbox: Sequence[float],
    keypoints: np.ndarray | None = None,
    *,
    iscrowd: int = 0,
    num_keypoints: int | None = None,
    area: float | None = None,
    unlabelled_parts: Iterable[str] = (),
    int_body_foot: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """One COCO-WholeBody annotation with every field of the real files.

    Args:
        ann_id: Annotation id.
        image_id: Image id.
        bbox: Person box ``[x, y, w, h]``.
        keypoints: (133, 3) ``x, y, v`` (v may be a float, as in the real face and hand fields); by default
            :func:`random_keypoints` in the box, seeded by ``seed + ann_id``.
        iscrowd: The ``iscrowd`` flag.
        num_keypoints: Override of ``num_keypoints`` (default: the labelled body points).
        area: The ``area`` (default: the box area).
        unlabelled_parts: Parts (``"foot"``, ``"face"``, ...) set to all zeros.
        int_body_foot: Store the body and foot triples as ints (rounded), as the real files do.
        seed: Seed of the default keypoints.

    Returns:
        The annotation dict. ``*_valid`` is true when a point of the part is labelled; a part box is the extent of
        the part's labelled points (zeros when none is).
    """
    if keypoints is None:
        keypoints = random_keypoints(np.random.default_rng(seed + ann_id), bbox)
    kp = np.array(keypoints, dtype=np.float64)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints of shape ({NUM_KEYPOINTS}, 3) expected, got {kp.shape}")
    for part in unlabelled_parts:
        kp[PART_SLICES[part]] = 0.0
    x, y, w, h = (float(b) for b in bbox)
    ann: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": iscrowd,
        "bbox": [x, y, w, h],
        "area": float(w * h) if area is None else float(area),
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
        "num_keypoints": int((kp[PART_SLICES["body"], 2] > 0).sum()) if num_keypoints is None else num_keypoints,
    }
    for part, field in PART_FIELDS.items():
        triples = kp[PART_SLICES[part]]
        flat = triples.reshape(-1).tolist()
        ann[field] = [round(v) for v in flat] if int_body_foot and part in _INT_PARTS else flat
        labelled = triples[:, 2] > 0
        if part in _PART_VALID:
            ann[_PART_VALID[part]] = bool(labelled.any())
        if part in _PART_BOX:
            box = [0.0, 0.0, 0.0, 0.0]
            if labelled.any():
                lo, hi = triples[labelled, :2].min(0), triples[labelled, :2].max(0)
                box = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
            ann[_PART_BOX[part]] = box
    return ann


def image_record(image_id: int, wh: tuple[int, int] = IMAGE_WH, file_name: str | None = None) -> dict[str, Any]:
    """The ``images`` record of image ``image_id`` (default file name ``{id:012d}.jpg``, as in COCO)."""
    file_name = f"{image_id:012d}.jpg" if file_name is None else file_name
    return {"id": image_id, "file_name": file_name, "width": wh[0], "height": wh[1]}


def write_images(img_dir: Path, image_ids: Iterable[int], wh: tuple[int, int] = IMAGE_WH) -> list[dict[str, Any]]:
    """Write textured JPEGs named ``{id:012d}.jpg`` and return their ``images`` records."""
    img_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for image_id in image_ids:
        rng = np.random.default_rng(image_id)
        img = rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (5, 5), 0)
        record = image_record(image_id, wh)
        cv2.imwrite(str(img_dir / record["file_name"]), img)
        records.append(record)
    return records


def coco_wholebody(images: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """The top-level dict of a COCO-WholeBody annotation file."""
    return {"info": {}, "licenses": [], "categories": [dict(CATEGORY)], "images": images, "annotations": annotations}


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as json to ``path`` (creating its folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


#: Detector boxes for :func:`standard_people`'s images: one of another category, one with a low score.
STANDARD_DETECTIONS = [
    {"image_id": 1, "category_id": 1, "bbox": [12, 8, 50, 95], "score": 0.9},
    {"image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 20], "score": 0.8},
    {"image_id": 2, "category_id": 1, "bbox": [-5, 30, 60, 100], "score": 0.3},
    {"image_id": 2, "category_id": 1, "bbox": [30, 5, 70, 100], "score": 0.05},
]


def standard_people() -> list[dict[str, Any]]:
    """Three good people and one of each skip reason, on images 1 and 2 (160x120).

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


def write_root(
    root: Path,
    people: list[dict[str, Any]] | None = None,
    detections: list[dict[str, Any]] | None = STANDARD_DETECTIONS,
    splits: Sequence[str] = ("train", "val"),
    wh: tuple[int, int] = IMAGE_WH,
) -> dict[str, Path]:
    """Write a dataset root in the real layout and return the written json files by split (and ``"det"``).

    Every split holds the same ``people`` (default :func:`standard_people`) and JPEGs of their images;
    ``detections`` (``None``: no detection file) go to the detector-box file.
    """
    people = standard_people() if people is None else people
    image_ids = sorted({p["image_id"] for p in people})
    out = {}
    for split in splits:
        images = write_images(root / f"{split}2017", image_ids, wh)
        out[split] = write_json(root / ANN_FILE.format(split=split), coco_wholebody(images, people))
    if detections is not None:
        out["det"] = write_json(root / DET_FILE, detections)
    return out


def _random_person(
    rng: np.random.Generator, ann_id: int, image_id: int, image_wh: tuple[int, int], side: float, missing: Sequence[str]
) -> dict[str, Any]:
    """A box of about ``side`` pixels in the image, 133 points inside it, some occluded or unlabelled."""
    w_img, h_img = image_wh
    w = side * rng.uniform(0.5, 0.8)
    h = side
    x = rng.uniform(0, max(w_img - w, 1.0))
    y = rng.uniform(0, max(h_img - h, 1.0))
    xy = np.stack([rng.uniform(x, x + w, NUM_KEYPOINTS), rng.uniform(y, y + h, NUM_KEYPOINTS)], axis=-1)
    # Visibility: 0 (unlabelled), 1 (occluded) or 2 (visible); face and hands keep floats as in the real files.
    vis = rng.choice([0.0, 1.0, 2.0], size=NUM_KEYPOINTS, p=[0.25, 0.25, 0.5])
    for part in missing:
        vis[PART_SLICES[part]] = 0.0
    xy[vis == 0] = 0.0
    area = w * h * rng.uniform(0.5, 0.7)  # a person covers part of the box
    kp = np.concatenate([xy, vis[:, None]], axis=-1)
    return person(ann_id, image_id, [x, y, w, h], kp, area=area, int_body_foot=True)


def make_wholebody_gt(
    num_images: int = 4,
    people_per_image: int = 3,
    seed: int = 0,
    image_wh: tuple[int, int] = (640, 480),
    missing_parts: tuple[str, ...] = (),
    missing_prob: float = 0.3,
) -> dict[str, Any]:
    """Random COCO-WholeBody v1.0 ground truth for the metric (no image files).

    People are a mix of small, medium and large, so that the AP(M)/AP(L) columns are defined.

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
        images.append(image_record(image_id, image_wh))
        for j in range(people_per_image):
            missing = set(missing_parts)
            for part in ("foot", "face", "lefthand", "righthand"):
                if rng.random() < missing_prob:
                    missing.add(part)
            side = sides[(i * people_per_image + j) % len(sides)] * rng.uniform(0.9, 1.1)
            side = min(side, image_wh[1] - 1.0)
            anns.append(_random_person(rng, len(anns) + 1, image_id, image_wh, side, tuple(sorted(missing))))
    return coco_wholebody(images, anns)

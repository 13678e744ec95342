"""A learnable synthetic COCO-WholeBody dataset, written in exactly the real file formats.

``generate_dataset(root, ...)`` writes the layout of a real COCO-WholeBody root (docs/architecture.md)::

    root/annotations/coco_wholebody_{train,val}_v1.0.json
    root/train2017/%012d.jpg   root/val2017/%012d.jpg
    root/person_detection_results/COCO_val2017_detections_AP_H_56_person.json

The annotation files carry every v1.0 field (docs/conventions.md#annotations): body ``keypoints`` (17 x 3),
``foot_kpts``, ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts``, the part boxes and ``*_valid`` flags,
``bbox``, ``area``, ``segmentation``, ``num_keypoints`` (labelled body points), ``iscrowd`` and the person
category with the 1-based COCO skeleton. The detection file is in the standard results format: jittered
ground-truth boxes with high scores, low-scoring duplicates and false positives, and an occasional missed
person, like a real person detector.

The people (:mod:`wbpose.synthetic.people`, drawn by :mod:`wbpose.synthetic.draw`, placed and
labelled by :mod:`wbpose.synthetic.scene`) are articulated cartoon figures whose every keypoint is marked
in the pixels, so that a tiny network can learn them at low resolution.

Where it writes: only into an empty (or absent) folder, or one it marked itself. Every generated root gets
:data:`MARKER_FILE` (written first, holding the generator's parameters), and a folder that holds anything but no
marker is refused with a ``FileExistsError`` naming it, so pointing the generator (or ``data=synthetic``) at a
real dataset never overwrites it. A marked root is regenerated in place.

Determinism: each image is drawn from its own generator seeded with ``(seed, split, index)``, the json is
written with fixed key order and rounded floats, and nothing depends on time or the machine, so the same
seed gives byte-identical json files (and identical JPEGs with the same OpenCV build).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from wbpose.keypoints import KEYPOINT_NAMES, PART_FIELDS, PART_SLICES, SKELETON
from wbpose.synthetic.scene import PersonLabel, part_box, render_scene

log = logging.getLogger(__name__)

DETECTIONS_FILE = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"
#: The file that marks a folder as written by :func:`generate_dataset` (json: the generator's parameters).
MARKER_FILE = ".wbpose_synthetic.json"
_SPLIT_CODE = {"train": 0, "val": 1}
_FIRST_IMAGE_ID = {"train": 1, "val": 1_000_001}


def wholebody_categories() -> list[dict]:
    """The person category exactly as in the real files (17 body names, 1-based COCO skeleton)."""
    skeleton = [[a + 1, b + 1] for a, b in SKELETON[:19]]
    return [{"supercategory": "person", "id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES[:17]),
             "skeleton": skeleton}]  # fmt: skip


def annotation_record(label: PersonLabel, image_id: int, ann_id: int, hw: tuple[int, int]) -> dict:
    """Return the COCO-WholeBody annotation dict of one person (field order as in the real files)."""
    kp = label.keypoints

    def flat(part: str) -> list[float | int]:
        rows = kp[PART_SLICES[part]]
        return [v for x, y, vis in rows.tolist() for v in (x, y, int(vis))]

    return {
        "segmentation": label.segmentation,
        "num_keypoints": int(np.count_nonzero(kp[PART_SLICES["body"], 2] > 0)),
        "area": round(label.area, 2),
        "iscrowd": 0,
        "keypoints": flat("body"),
        "image_id": image_id,
        "bbox": label.bbox,
        "category_id": 1,
        "id": ann_id,
        "face_box": part_box(kp[PART_SLICES["face"]], hw),
        "lefthand_box": part_box(kp[PART_SLICES["lefthand"]], hw),
        "righthand_box": part_box(kp[PART_SLICES["righthand"]], hw),
        "lefthand_kpts": flat("lefthand"),
        "righthand_kpts": flat("righthand"),
        "face_kpts": flat("face"),
        "face_valid": label.valid["face"],
        "lefthand_valid": label.valid["lefthand"],
        "righthand_valid": label.valid["righthand"],
        "foot_valid": label.valid["foot"],
        "foot_kpts": flat("foot"),
    }


def simulate_detections(
    rng: np.random.Generator, labels: list[PersonLabel], image_id: int, hw: tuple[int, int]
) -> list[dict]:
    """Person-detector output for one image: jittered true boxes, duplicates, false positives and misses.

    A person is missed with a probability that grows with occlusion and truncation; its box is jittered by
    about 4 % of its size and scored 0.6-1.0 by how much of the body shows. A third of the people get a second,
    looser box with a low score, and each image gets about one false positive with a low score.
    """
    height, width = hw
    out = []
    for lab in labels:
        seen = float(np.mean(lab.keypoints[:17, 2] == 2))
        if rng.random() < 0.02 + 0.25 * (1.0 - seen) ** 2:
            continue
        x, y, w, h = lab.bbox
        for sigma, score in ((0.04, 0.99 - 0.35 * (1.0 - seen) - abs(rng.normal(0, 0.03))),
                             (0.15, rng.uniform(0.05, 0.45))):  # fmt: skip
            x1, y1, x2, y2 = np.array([x, y, x + w, y + h]) + rng.normal(0, sigma, 4) * [w, h, w, h]
            x1, y1 = max(0.0, min(x1, x2 - 2)), max(0.0, min(y1, y2 - 2))
            x2, y2 = min(float(width - 1), x2), min(float(height - 1), y2)
            if x2 - x1 > 2 and y2 - y1 > 2:
                out.append(_det(image_id, [x1, y1, x2 - x1, y2 - y1], score))
            if rng.random() > 1 / 3:
                break
    for _ in range(int(rng.poisson(0.8))):
        h = rng.uniform(0.15, 0.6) * height
        w = h * rng.uniform(0.3, 0.8)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        out.append(_det(image_id, [x1, y1, w, h], rng.uniform(0.0, 1.0) ** 2 * 0.5 + 0.01))
    return sorted(out, key=lambda d: -d["score"])


def _det(image_id: int, bbox: list[float], score: float) -> dict:
    """One detection in the standard results format."""
    return {"bbox": [round(float(v), 2) for v in bbox], "category_id": 1, "image_id": image_id,
            "score": round(float(np.clip(score, 0.0, 1.0)), 5)}  # fmt: skip


def _image_hw(rng: np.random.Generator, image_hw: tuple[int, int] | None, hw_range: tuple) -> tuple[int, int]:
    """A fixed size, or a random even size within ``hw_range = ((min_h, min_w), (max_h, max_w))``."""
    if image_hw is not None:
        return int(image_hw[0]), int(image_hw[1])
    (h0, w0), (h1, w1) = hw_range
    return int(rng.integers(h0 // 2, h1 // 2 + 1)) * 2, int(rng.integers(w0 // 2, w1 // 2 + 1)) * 2


def _generate_split(root: Path, split: str, count: int, seed: int, options: dict) -> tuple[dict, list, dict]:
    """Render and write one split's images; return its annotation json, detections and stats."""
    img_dir = root / f"{split}2017"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, detections = [], [], []
    stats = {"images": count, "people": 0, "detections": 0, "area_small": 0, "area_medium": 0, "area_large": 0}
    stats.update({f"{part}_{k}": 0 for part in PART_SLICES for k in ("labelled", "visible", "instances")})
    for index in range(count):
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
        hw = _image_hw(rng, options["image_hw"], options["image_hw_range"])
        image, labels = render_scene(rng, *hw, part_label_prob=options["part_label_prob"])
        image_id = _FIRST_IMAGE_ID[split] + index
        file_name = f"{image_id:012d}.jpg"
        cv2.imwrite(str(img_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, options["jpeg_quality"]])
        images.append({"license": 1, "file_name": file_name, "height": hw[0], "width": hw[1],
                       "date_captured": "2020-09-18 00:00:00", "id": image_id})  # fmt: skip
        for k, lab in enumerate(labels):
            annotations.append(annotation_record(lab, image_id, image_id * 100 + k, hw))
            _count(stats, lab)
        if split == "val":
            detections.extend(simulate_detections(rng, labels, image_id, hw))
    stats["detections"] = len(detections)
    info = {"description": f"wbpose synthetic COCO-WholeBody ({split})", "url": "", "version": "1.0",
            "year": 2020, "contributor": "wbpose.synthetic.generate", "date_created": "2020/09/18",
            "seed": seed}  # fmt: skip
    data = {"info": info, "licenses": [{"url": "", "id": 1, "name": "Synthetic, no restrictions"}],
            "categories": wholebody_categories(), "images": images, "annotations": annotations}  # fmt: skip
    return data, detections, stats


def _count(stats: dict, lab: PersonLabel) -> None:
    """Add one person to the split statistics."""
    stats["people"] += 1
    bucket = "small" if lab.area < 32**2 else "medium" if lab.area < 96**2 else "large"
    stats[f"area_{bucket}"] += 1
    for part, sl in PART_SLICES.items():
        vis = lab.keypoints[sl, 2]
        stats[f"{part}_labelled"] += int(np.count_nonzero(vis > 0))
        stats[f"{part}_visible"] += int(np.count_nonzero(vis == 2))
        stats[f"{part}_instances"] += int(np.any(vis > 0))


def _write_json(path: Path, obj: object) -> None:
    """Write compact, deterministic json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")))


def check_generation_root(root: str | Path) -> None:
    """Raise unless the generator may write into ``root``: absent, an empty folder, or a folder it marked.

    Raises:
        FileExistsError: ``root`` is a file, or a folder holding anything without :data:`MARKER_FILE` (a real
            dataset, or files of another program), named in the message.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"cannot generate synthetic data into {root}: it is a file, not a folder")
    if root.is_dir() and not (root / MARKER_FILE).is_file() and any(root.iterdir()):
        raise FileExistsError(
            f"refusing to generate synthetic data into {root}: the folder is not empty and was not written by the "
            f"generator (no {MARKER_FILE}), so it may hold a real dataset. Point data.data_root (or --out) at an "
            "empty folder, or at a synthetic root this generator made"
        )


def claim_root(root: str | Path, params: dict) -> Path:
    """Make ``root`` the generator's (:func:`check_generation_root`), create it and write :data:`MARKER_FILE` with
    ``params`` first, so that even an interrupted generation leaves a marked folder."""
    check_generation_root(root)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = {"generator": "wbpose.synthetic.generate", **params}
    (root / MARKER_FILE).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
    return root


def generate_dataset(
    root: str | Path,
    num_train: int = 300,
    num_val: int = 100,
    seed: int = 0,
    image_hw: tuple[int, int] | None = None,
    image_hw_range: tuple[tuple[int, int], tuple[int, int]] = ((240, 320), (360, 480)),
    jpeg_quality: int = 90,
    part_label_prob: dict[str, float] | None = None,
) -> dict:
    """Write a synthetic COCO-WholeBody dataset under ``root`` (see the module docstring for the layout).

    Args:
        root: Dataset root directory: created if missing; an existing one must be empty or marked by the generator
            (:data:`MARKER_FILE`; its generated files are overwritten).
        num_train: Number of training images.
        num_val: Number of validation images (these also get detector results).
        seed: Seed; the same seed gives byte-identical json files.
        image_hw: Fixed image size (height, width); if None each image draws its size from ``image_hw_range``.
        image_hw_range: ``((min_h, min_w), (max_h, max_w))`` for random image sizes.
        jpeg_quality: JPEG quality of the written images.
        part_label_prob: Probability that a visible-enough part is labelled, per part (face, lefthand,
            righthand, foot); defaults to :data:`wbpose.synthetic.scene.PART_LABEL_PROB`.

    Returns:
        Statistics: ``{"train": {...}, "val": {...}, "seconds", "images_per_s", "root"}``; each split has
        counts of images, people, detections, people per COCO area range and, per part, labelled points
        (v > 0), visible points (v = 2) and instances with any labelled point.

    Raises:
        FileExistsError: ``root`` holds files the generator did not mark (:func:`check_generation_root`).
    """
    params = {
        "num_train": int(num_train),
        "num_val": int(num_val),
        "seed": int(seed),
        "jpeg_quality": int(jpeg_quality),
        "image_hw": None if image_hw is None else [int(v) for v in image_hw],
        "image_hw_range": [[int(v) for v in hw] for hw in image_hw_range],
        "part_label_prob": None if part_label_prob is None else {k: float(v) for k, v in part_label_prob.items()},
    }
    root = claim_root(root, params)
    options = {"image_hw": image_hw, "image_hw_range": image_hw_range, "jpeg_quality": jpeg_quality,
               "part_label_prob": part_label_prob}  # fmt: skip
    start = time.perf_counter()
    stats: dict = {}
    for split, count in (("train", num_train), ("val", num_val)):
        data, detections, stats[split] = _generate_split(root, split, count, seed, options)
        _write_json(root / "annotations" / f"coco_wholebody_{split}_v1.0.json", data)
        if split == "val":
            _write_json(root / DETECTIONS_FILE, detections)
    stats["seconds"] = time.perf_counter() - start
    stats["images_per_s"] = (num_train + num_val) / max(stats["seconds"], 1e-9)
    stats["root"] = str(root)
    log.info("synthetic COCO-WholeBody in %s: %d images in %.1f s (%.1f images/s)", root,
             num_train + num_val, stats["seconds"], stats["images_per_s"])  # fmt: skip
    return stats


def format_stats(stats: dict) -> str:
    """Render generator statistics as a small Markdown table."""
    parts = list(PART_FIELDS)
    head = ["split", "images", "people", "S/M/L", "dets"] + [f"{p} vis/lab (inst)" for p in parts]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for split in ("train", "val"):
        s = stats[split]
        row = [split, str(s["images"]), str(s["people"]),
               f"{s['area_small']}/{s['area_medium']}/{s['area_large']}", str(s["detections"])]  # fmt: skip
        row += [f"{s[p + '_visible']}/{s[p + '_labelled']} ({s[p + '_instances']})" for p in parts]
        lines.append("| " + " | ".join(row) + " |")
    lines.append(f"\n{stats['images_per_s']:.1f} images/s ({stats['seconds']:.1f} s) -> {stats['root']}")
    return "\n".join(lines)

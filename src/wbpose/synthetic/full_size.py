"""Full-size COCO-WholeBody stand-ins: annotation and detector files with the real counts, written fast.

``generate_full_size(root)`` writes a dataset root in the real layout (docs/conventions.md#annotations) with the
sizes of COCO-WholeBody v1.0 and of MMPose's AP_H_56 person detections:

=====  ========  ==================  ===================  ======================
split  images    person annotations  with keypoints       detector boxes
=====  ========  ==================  ===================  ======================
train  118,287   262,465             149,813              -
val    5,000     11,004              6,352                104,125
=====  ========  ==================  ===================  ======================

and the fields of the real files: every COCO person field (``segmentation`` polygons, ``area``, ``iscrowd``,
``bbox``, ``num_keypoints``; crowd people and people without keypoints, ``num_keypoints == 0``), the four part
lists (body and foot as ints, face and hands as floats, unlabelled parts all zeros), part boxes and ``*_valid``
flags. About half the images hold nobody (as in COCO), the rest a skewed number of people. Detector boxes: one
per person (missed sometimes), duplicates and false positives, with a score distribution like the real file's
(a high-score mode for the people, a long tail of low scores). The people's keypoints follow a rough human layout
(face around the nose, hands at the wrists, feet at the ankles) so that OKS behaves as on real poses.

Images are hard links to a handful of generated JPEGs (one per image size used), so the folders have the real
number of files but take a few hundred KB. Deterministic from the seed; ``scale`` shrinks every count (tests).

The json is assembled from numpy arrays with ``orjson`` (whole columns at once), so the 0.7 GB train file takes
seconds, not minutes. Command line: ``wbpose-synthetic --full-size --out /tmp/wbpose_full``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import orjson

from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES

#: (images, person annotations, with keypoints, crowd) of the real splits; detector boxes of the val file.
REAL_COUNTS = {"train": (118_287, 262_465, 149_813, 2_011), "val": (5_000, 11_004, 6_352, 90)}
REAL_DETECTIONS = 104_125
#: Image sizes (w, h) used, one JPEG each (the long side of COCO images is 640 almost always).
IMAGE_SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 425), (500, 375), (640, 360), (612, 612))
LAYOUT = {
    "ann": "annotations/coco_wholebody_{split}_v1.0.json",
    "img": "{split}2017",
    "det": "person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
}


def _template() -> np.ndarray:
    """A rough (133, 2) human layout in a unit box: body points, feet at the ankles, face at the nose, hands at
    the wrists."""
    body = np.array(
        [[0.5, 0.08], [0.53, 0.06], [0.47, 0.06], [0.57, 0.07], [0.43, 0.07], [0.66, 0.22], [0.34, 0.22],
         [0.74, 0.38], [0.26, 0.38], [0.78, 0.52], [0.22, 0.52], [0.6, 0.55], [0.4, 0.55], [0.6, 0.75],
         [0.4, 0.75], [0.6, 0.93], [0.4, 0.93]]
    )  # fmt: skip
    feet = np.array([[0.42, 0.98], [0.38, 0.99], [0.4, 0.95], [0.58, 0.98], [0.62, 0.99], [0.6, 0.95]])
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    face = body[0] + 0.05 * np.stack([np.cos(t), 0.8 * np.sin(t)], -1) * np.linspace(0.3, 1.0, 68)[:, None]
    u = np.linspace(0, 1, 21)
    hand = np.stack([0.03 * np.cos(5 * u * np.pi), 0.02 + 0.06 * u], -1)
    return np.concatenate([body, feet, face, body[9] + hand, body[10] + hand])


TEMPLATE = _template()


def _rows(block: np.ndarray, fmt_int: bool = False) -> list[bytes]:
    """The json text of each row of a 2-D array (without brackets)."""
    if len(block) == 0:
        return []
    array = np.ascontiguousarray(block, dtype=np.int64 if fmt_int else np.float64)
    text = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)
    return text[2:-2].split(b"],[") if array.shape[1] else [b""] * len(array)


def _people_per_image(rng: np.random.Generator, num_images: int, num_people: int) -> np.ndarray:
    """A skewed count per image summing to ``num_people``; about 46% of the images hold nobody."""
    occupied = rng.random(num_images) < 0.54
    weights = np.where(occupied, rng.pareto(1.6, num_images) + 0.6, 0.0)
    counts = np.floor(weights / weights.sum() * num_people).astype(np.int64)
    short = num_people - counts.sum()
    counts[rng.choice(np.flatnonzero(occupied), short, p=weights[occupied] / weights[occupied].sum())] += 1
    return counts


def _people(rng: np.random.Generator, counts: np.ndarray, sizes: np.ndarray, num_kp: int, num_crowd: int) -> dict:
    """Boxes, areas, keypoints and flags of every person (image by image)."""
    n = int(counts.sum())
    image_index = np.repeat(np.arange(len(counts)), counts)
    wh_img = sizes[image_index].astype(np.float64)
    kind = np.zeros(n, np.int8)  # 0: keypoints, 1: no keypoints, 2: crowd
    perm = rng.permutation(n)
    kind[perm[:num_crowd]] = 2
    kind[perm[num_crowd : num_crowd + n - num_kp - num_crowd]] = 1
    # people with keypoints are larger (COCO's small people mostly have none)
    side = np.where(kind == 0, rng.lognormal(5.0, 0.55, n), rng.lognormal(3.9, 0.8, n))
    side = np.clip(side, 8.0, wh_img[:, 1] * 0.98)
    w = np.clip(side * rng.uniform(0.35, 0.7, n), 4.0, wh_img[:, 0] * 0.98)
    h = side
    x = rng.uniform(0, 1, n) * (wh_img[:, 0] - w)
    y = rng.uniform(0, 1, n) * (wh_img[:, 1] - h)
    crowd = kind == 2
    w[crowd], h[crowd] = wh_img[crowd, 0] * rng.uniform(0.3, 0.9, crowd.sum()), h[crowd]
    x[crowd] = rng.uniform(0, 1, crowd.sum()) * (wh_img[crowd, 0] - w[crowd])
    box = np.round(np.stack([x, y, w, h], -1), 2)
    area = np.round(w * h * rng.uniform(0.45, 0.7, n), 4)

    xy = TEMPLATE[None] + rng.normal(0, 0.03, (n, NUM_KEYPOINTS, 2))
    xy = box[:, None, :2] + xy * box[:, None, 2:]
    vis = np.where(rng.random((n, NUM_KEYPOINTS)) < 0.7, 2.0, 1.0)
    vis[rng.random((n, NUM_KEYPOINTS)) < 0.15] = 0.0
    has = {
        part: rng.random(n) < p for part, p in (("foot", 0.6), ("face", 0.55), ("lefthand", 0.4), ("righthand", 0.4))
    }
    for part, present in has.items():
        vis[~present, PART_SLICES[part]] = 0.0
    vis[:, PART_SLICES["face"]] = np.where(vis[:, PART_SLICES["face"]] > 0, 1.0, 0.0)  # face/hands: 0/1 floats
    vis[kind != 0] = 0.0
    body_vis = vis[:, PART_SLICES["body"]]
    lost = (kind == 0) & ~(body_vis > 0).any(axis=1)
    vis[lost, 0] = 2.0  # a person "with keypoints" has at least one body point
    xy[vis == 0] = 0.0
    return {"image_index": image_index, "box": box, "area": area, "xy": xy, "vis": vis, "kind": kind}


def _annotation_texts(people: dict, image_ids: np.ndarray, first_id: int) -> list[bytes]:
    n = len(people["kind"])
    xy, vis, box = people["xy"], people["vis"], people["box"]
    body_foot = np.concatenate([np.round(xy), vis[..., None]], -1).astype(np.int64)
    fields = []
    for part in PART_FIELDS:
        sl = PART_SLICES[part]
        if part in ("body", "foot"):
            fields.append(_rows(body_foot[:, sl].reshape(n, -1), fmt_int=True))
        else:
            triples = np.concatenate([np.round(xy[:, sl], 6), vis[:, sl, None]], -1)
            fields.append(_rows(triples.reshape(n, -1)))
    x, y, w, h = box.T
    poly = np.stack(
        [x, y, x + w * 0.5, y - 0.0, x + w, y + h * 0.3, x + w, y + h, x + w * 0.5, y + h, x, y + h * 0.7], -1
    )
    poly = np.round(poly[:, None, :] + np.zeros((1, 4, 1)), 2).reshape(n, -1)  # 24 points, as COCO polygons
    segs, boxes = _rows(poly), _rows(box)
    num_kp = (vis[:, PART_SLICES["body"]] > 0).sum(1)
    part_valid = {p: (vis[:, PART_SLICES[p]] > 0).any(1) for p in ("foot", "face", "lefthand", "righthand")}
    part_box = {}
    for p in ("face", "lefthand", "righthand"):
        lab = vis[:, PART_SLICES[p]] > 0
        pts = xy[:, PART_SLICES[p]]
        lo = np.where(lab[..., None], pts, np.inf).min(1)
        hi = np.where(lab[..., None], pts, -np.inf).max(1)
        pb = np.where(part_valid[p][:, None], np.concatenate([lo, hi - lo], -1), 0.0)
        part_box[p] = _rows(np.round(pb, 2))
    areas = orjson.dumps(people["area"], option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    img = image_ids[people["image_index"]].tolist()
    crowd = (people["kind"] == 2).tolist()
    out = []
    tf = (b"false", b"true")
    for i in range(n):
        out.append(
            b'{"segmentation":[[%b]],"num_keypoints":%d,"area":%b,"iscrowd":%d,"keypoints":[%b],"image_id":%d,'
            b'"bbox":[%b],"category_id":1,"id":%d,"face_box":[%b],"lefthand_box":[%b],"righthand_box":[%b],'
            b'"lefthand_kpts":[%b],"righthand_kpts":[%b],"face_kpts":[%b],"face_valid":%b,"lefthand_valid":%b,'
            b'"righthand_valid":%b,"foot_valid":%b,"foot_kpts":[%b]}'
            % (
                segs[i], int(num_kp[i]), areas[i], int(crowd[i]), fields[0][i], img[i], boxes[i], first_id + i,
                part_box["face"][i], part_box["lefthand"][i], part_box["righthand"][i], fields[3][i], fields[4][i],
                fields[2][i], tf[bool(part_valid["face"][i])], tf[bool(part_valid["lefthand"][i])],
                tf[bool(part_valid["righthand"][i])], tf[bool(part_valid["foot"][i])], fields[1][i],
            )
        )  # fmt: skip
    return out


def _detections(rng: np.random.Generator, people: dict, image_ids: np.ndarray, sizes: np.ndarray, total: int) -> bytes:
    """Detector boxes: most people found once (high scores), some duplicates, false positives with low scores."""
    box, kind = people["box"], people["kind"]
    found = (kind != 2) & (rng.random(len(kind)) < 0.93)
    tp = np.flatnonzero(found)
    dup = rng.choice(tp, len(tp) // 3)
    jitter = lambda b, s: b + rng.normal(0, s, b.shape) * np.concatenate([b[:, 2:], b[:, 2:]], 1)  # noqa: E731
    boxes = [jitter(box[tp], 0.05), jitter(box[dup], 0.12)]
    scores = [rng.beta(9, 1.6, len(tp)), rng.beta(2, 4, len(dup))]
    images = [people["image_index"][tp], people["image_index"][dup]]
    num_false = total - len(tp) - len(dup)
    fp_img = rng.integers(0, len(image_ids), num_false)
    wh = sizes[fp_img].astype(np.float64)
    fw, fh = wh[:, 0] * rng.uniform(0.03, 0.5, num_false), wh[:, 1] * rng.uniform(0.05, 0.8, num_false)
    boxes.append(np.stack([rng.uniform(0, 1, num_false) * (wh[:, 0] - fw), rng.uniform(0, 1, num_false) *
                           (wh[:, 1] - fh), fw, fh], -1))  # fmt: skip
    scores.append(np.minimum(rng.exponential(0.035, num_false) + 0.003, 0.99))
    images.append(fp_img)
    all_boxes = np.concatenate(boxes)
    all_boxes[:, 2:] = np.maximum(all_boxes[:, 2:], 1.0)
    all_boxes = np.round(all_boxes, 3)
    all_scores = np.round(np.concatenate(scores), 5)
    all_img = image_ids[np.concatenate(images)]
    order = np.lexsort((-all_scores, all_img))  # the real file is grouped by image
    box_rows = _rows(all_boxes[order])
    score_rows = orjson.dumps(all_scores[order], option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    parts = [
        b'{"bbox":[%b],"category_id":1,"image_id":%d,"score":%b}' % (b, i, s)
        for b, i, s in zip(box_rows, all_img[order].tolist(), score_rows)
    ]
    return b"[" + b",".join(parts) + b"]"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _jpegs(root: Path, seed: int) -> list[Path]:
    folder = root / "_jpegs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (w, h) in enumerate(IMAGE_SIZES):
        path = folder / f"{w}x{h}.jpg"
        if not path.exists():
            rng = np.random.default_rng(seed + k)
            img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (9, 9), 0)
            cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def generate_full_size(
    root: str | os.PathLike,
    scale: float = 1.0,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "val"),
    images: bool = True,
) -> dict[str, dict[str, int]]:
    """Write the full-size stand-in root (see the module docstring); returns the counts written per split.

    Args:
        root: Dataset root to write.
        scale: Multiplies every count (1.0 = the real sizes).
        seed: Random seed (same seed, same files).
        splits: Which splits to write (val also gets the detector file).
        images: Create the image folders (hard links to one JPEG per size).
    """
    root = Path(root)
    stats = {}
    jpegs = _jpegs(root, seed) if images else []
    for split in splits:
        start = time.perf_counter()
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        n_img, n_people, n_kp, n_crowd = (max(1, round(v * scale)) for v in REAL_COUNTS[split])
        image_ids = np.sort(rng.choice(np.arange(1, 600_000), n_img, replace=False))
        size_index = rng.integers(0, len(IMAGE_SIZES), n_img)
        sizes = np.asarray(IMAGE_SIZES)[size_index]
        counts = _people_per_image(rng, n_img, n_people)
        people = _people(rng, counts, sizes, n_kp, n_crowd)
        first_id = 1_000_000 if split == "val" else 2_000_000
        anns = _annotation_texts(people, image_ids, first_id)
        names = [b"%012d.jpg" % i for i in image_ids.tolist()]
        imgs = [
            b'{"license":1,"file_name":"%b","coco_url":"","height":%d,"width":%d,"date_captured":"","flickr_url":"",'
            b'"id":%d}' % (nm, h, w, i)
            for nm, (w, h), i in zip(names, sizes.tolist(), image_ids.tolist())
        ]
        category = (
            b'{"supercategory":"person","id":1,"name":"person","keypoints":["nose"],"skeleton":[[16,14]]}'
        )  # fmt: skip
        data = (
            b'{"info":{"description":"wbpose full-size stand-in"},"licenses":[],"images":['
            + b",".join(imgs) + b'],"annotations":[' + b",".join(anns) + b'],"categories":[' + category + b"]}"
        )  # fmt: skip
        del anns
        _write(root / LAYOUT["ann"].format(split=split), data)
        stats[split] = {
            "images": n_img,
            "people": n_people,
            "with_keypoints": int((people["kind"] == 0).sum()),
            "crowd": int((people["kind"] == 2).sum()),
            "json_mb": round(len(data) / 2**20),
        }
        del data
        if split == "val":
            n_det = max(1, round(REAL_DETECTIONS * scale))
            dets = _detections(rng, people, image_ids, sizes, n_det)
            _write(root / LAYOUT["det"], dets)
            stats[split]["detections"] = n_det
        if images:
            folder = root / LAYOUT["img"].format(split=split)
            folder.mkdir(parents=True, exist_ok=True)
            for nm, k in zip(names, size_index.tolist()):
                target = folder / nm.decode()
                if not target.exists():
                    os.link(jpegs[k], target)
        stats[split]["seconds"] = round(time.perf_counter() - start, 1)
    return stats

"""COCO-WholeBody v1.0 annotation and detection files -> per-instance numpy arrays (:class:`InstanceTable`).

Reads the official annotation json (https://github.com/jin-s13/COCO-WholeBody, ``data_format.md``) with
xtcocotools' ``COCO`` and the standard COCO detection-results json. Semantics are MMPose 1.x
(``mmpose/datasets/datasets/base/base_coco_style_dataset.py`` and ``wholebody/coco_wholebody_dataset.py``;
docs/conventions.md#annotations):

- keypoints: ``keypoints + foot_kpts + face_kpts + lefthand_kpts + righthand_kpts`` reshaped to (133, 3),
  ``visible = v > 0`` (binary, v = 1 and 2 alike; float visibilities allowed);
- ground-truth instances are dropped if ``iscrowd``, ``num_keypoints == 0`` (the body count), the clipped box has
  ``w <= 0`` or ``h <= 0``, or ``max`` over the 133 keypoint coordinates is ``<= 0``; each reason is counted and
  logged. The box is clipped to the image: ``x1 = clip(x, 0, W-1)``, ``x2 = clip(x + w, 0, W-1)`` (same for y);
- detector boxes: ``category_id == 1`` and ``score >= det_score_thr`` (default 0.0, as 0.x; 1.x applies none),
  used as given (xywh -> xyxy, no clipping); zero-size boxes are counted and skipped (they cannot be warped);
- every instance gets a unique ``instance_id`` (annotation id, or the detection's index in its file) for the
  metric's duplicate removal (docs/conventions.md#distributed-evaluation), its ``image_id``, box, ``bbox_score``
  (1.0 for GT), area, centre and scale (padding 1.25, not yet aspect-fixed: that happens in the warp, as 1.x).

The arrays are plain numpy (not a list of dicts), so forked loader workers share them cheaply, and the parsed
json is dropped after loading. Malformed input raises :class:`~wbpose.data.errors.DataError` naming the file, the
record and the field.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from xtcocotools.coco import COCO

from wbpose.data.coco_files import check_records, load_coco, read_json
from wbpose.data.errors import DataError
from wbpose.geometry import bbox_xyxy_to_center_scale
from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS, PART_SLICES

logger = logging.getLogger(__name__)

BBoxSource = Literal["gt", "det"]

#: Expected list length of each keypoint field (3 numbers per keypoint), in concatenation order.
FIELD_LENGTHS: dict[str, int] = {PART_FIELDS[p]: 3 * (sl.stop - sl.start) for p, sl in PART_SLICES.items()}
_DET_FIELDS = ("image_id", "category_id", "bbox", "score")


@dataclass
class InstanceTable:
    """Instances as numpy arrays: N instance rows, M image rows.

    Attributes:
        file_names: (M,) image file names.
        image_wh: (M, 2) image (width, height) from the json.
        image_index: (N,) row of each instance's image.
        image_ids: (N,) COCO image id.
        instance_ids: (N,) unique box id (annotation id or detection index).
        bbox_xyxy: (N, 4) box corners (clipped for GT, as given for detections).
        bbox_scores: (N,) detector score, 1.0 for GT.
        areas: (N,) annotation ``area`` (GT; box area if absent) or box area (detections).
        center_xy: (N, 2) box centre.
        scale_wh: (N, 2) padded box size (not aspect-fixed).
        keypoints_xy: (N, K, 2) float32 image pixels (GT only, else ``None``).
        visible: (N, K) uint8 0/1 (GT only, else ``None``).
        skipped: dropped instances per reason.
    """

    file_names: np.ndarray
    image_wh: np.ndarray
    image_index: np.ndarray
    image_ids: np.ndarray
    instance_ids: np.ndarray
    bbox_xyxy: np.ndarray
    bbox_scores: np.ndarray
    areas: np.ndarray
    center_xy: np.ndarray
    scale_wh: np.ndarray
    keypoints_xy: np.ndarray | None
    visible: np.ndarray | None
    skipped: dict[str, int] = field(default_factory=dict)


def _bbox_array(bbox: Any, path: str, what: str) -> list[float]:
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        raise DataError(f"{path}: {what} field 'bbox' must be [x, y, w, h], got {bbox!r}")
    return bbox


def _image_table(coco: COCO) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    ids = sorted(coco.imgs)
    file_names = np.array([coco.imgs[i]["file_name"] for i in ids])
    image_wh = np.array([[coco.imgs[i]["width"], coco.imgs[i]["height"]] for i in ids], dtype=np.int64)
    return file_names, image_wh, {image_id: row for row, image_id in enumerate(ids)}


class _GtRecords(NamedTuple):
    """The per-annotation fields of a GT file, one row per annotation (crowd rows: keypoint fields unread)."""

    rows: np.ndarray  # (n,) int64: image row of each annotation
    ann_ids: np.ndarray  # (n,) int64: annotation id
    crowd: np.ndarray  # (n,) bool: iscrowd
    num_kp: np.ndarray  # (n,) int64: num_keypoints (the body count; 0 for crowd)
    bbox: np.ndarray  # (n, 4) float64: xywh as given
    areas: np.ndarray  # (n,) float64: area, NaN when absent (or crowd)


def _check_keypoint_fields(ann: dict[str, Any], path: str) -> None:
    """Raise :class:`DataError` unless a non-crowd annotation has all 5 keypoint lists and ``num_keypoints``."""
    aid = ann["id"]
    for name, length in FIELD_LENGTHS.items():
        kp = ann.get(name)
        if not isinstance(kp, list) or len(kp) != length:
            got = "missing" if kp is None else f"of length {len(kp)}" if isinstance(kp, list) else repr(kp)
            raise DataError(
                f"{path}: annotation id {aid} field '{name}' is {got}; expected a list of {length} numbers "
                f"({length // 3} keypoints x (x, y, v))"
            )
    if "num_keypoints" not in ann:
        raise DataError(f"{path}: annotation id {aid} has no field 'num_keypoints'")


def _gt_records(anns: list[dict[str, Any]], row_of: dict[int, int], path: str) -> _GtRecords:
    """Read and check the fields of every annotation; annotation ids must be unique."""
    n = len(anns)
    rows, ann_ids = np.zeros(n, np.int64), np.zeros(n, np.int64)
    crowd, num_kp = np.zeros(n, bool), np.zeros(n, np.int64)
    bbox, areas = np.zeros((n, 4)), np.full(n, np.nan)
    for i, ann in enumerate(anns):
        aid = ann["id"]
        if ann["image_id"] not in row_of:
            raise DataError(f"{path}: annotation id {aid} has image_id {ann['image_id']}, which is not in 'images'")
        rows[i], ann_ids[i] = row_of[ann["image_id"]], aid
        bbox[i] = _bbox_array(ann["bbox"], path, f"annotation id {aid}")
        crowd[i] = bool(ann.get("iscrowd", 0))
        if crowd[i]:
            continue
        _check_keypoint_fields(ann, path)
        num_kp[i] = ann["num_keypoints"]
        areas[i] = ann.get("area", np.nan)
    if len(np.unique(ann_ids)) != n:
        raise DataError(f"{path}: annotation ids are not unique")
    return _GtRecords(rows, ann_ids, crowd, num_kp, bbox, areas)


def _gt_keypoints(anns: list[dict[str, Any]], index: np.ndarray, path: str) -> np.ndarray:
    """The 133 (x, y, v) keypoints of the annotations ``index``, concatenated in :data:`FIELD_LENGTHS` order.

    Shape:
        index: (m,) -> (m, NUM_KEYPOINTS, 3) float32
    """
    kpts = np.empty((len(index), NUM_KEYPOINTS * 3), np.float32)
    for j, i in enumerate(index):
        ann = anns[i]
        try:
            kpts[j] = [v for name in FIELD_LENGTHS for v in ann[name]]
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: annotation id {ann['id']} has non-numeric keypoint values: {e}") from e
    return kpts.reshape(-1, NUM_KEYPOINTS, 3)


def _gt_instances(coco: COCO, path: str) -> dict[str, Any]:
    anns = coco.dataset["annotations"]
    file_names, image_wh, row_of = _image_table(coco)
    rec = _gt_records(anns, row_of, path)

    # 1.x box clipping, then the 1.x validity rules in order (each instance counted under its first reason).
    wh = image_wh[rec.rows] - 1
    x1y1 = np.clip(rec.bbox[:, :2], 0, wh)
    x2y2 = np.clip(rec.bbox[:, :2] + rec.bbox[:, 2:], 0, wh)
    box_ok = np.all(x2y2 - x1y1 > 0, axis=1)
    has_kp = ~rec.crowd & (rec.num_kp != 0)
    cand = np.flatnonzero(has_kp & box_ok)
    kpts = _gt_keypoints(anns, cand, path)
    labelled = kpts[..., :2].max(axis=(1, 2)) > 0
    keep = cand[labelled]
    bbox_xyxy = np.concatenate([x1y1, x2y2], axis=1)[keep]
    box_area = np.prod(bbox_xyxy[:, 2:] - bbox_xyxy[:, :2], axis=1)
    return {
        "file_names": file_names,
        "image_wh": image_wh,
        "image_index": rec.rows[keep],
        "instance_ids": rec.ann_ids[keep],
        "bbox_xyxy": bbox_xyxy,
        "bbox_scores": np.ones(len(keep), np.float32),
        "areas": np.where(np.isnan(rec.areas[keep]), box_area, rec.areas[keep]),
        "keypoints_xy": np.ascontiguousarray(kpts[labelled, :, :2]),
        "visible": (kpts[labelled, :, 2] > 0).astype(np.uint8),
        "skipped": {
            "crowd": int(rec.crowd.sum()),
            "no_keypoints": int((~rec.crowd & (rec.num_kp == 0)).sum()),
            "invalid_box": int((has_kp & ~box_ok).sum()),
            "no_labels": int((~labelled).sum()),
        },
    }


def _det_instances(coco: COCO, path: str, det_file: str, score_thr: float) -> dict[str, Any]:
    dets = read_json(det_file, "detection file")
    if not isinstance(dets, list):
        raise DataError(
            f"detection file {det_file}: expected a json list of {{image_id, category_id, bbox, score}} records, "
            f"got a {type(dets).__name__}"
        )
    check_records(dets, _DET_FIELDS, det_file, "detection")
    file_names, image_wh, row_of = _image_table(coco)
    n = len(dets)
    image_ids = np.array([d["image_id"] for d in dets], dtype=np.int64).reshape(n)
    category = np.array([d["category_id"] for d in dets], dtype=np.int64).reshape(n)
    scores = np.array([d["score"] for d in dets], dtype=np.float64).reshape(n)
    xywh = np.array([_bbox_array(d["bbox"], det_file, f"detection #{i}") for i, d in enumerate(dets)], np.float64)
    xywh = xywh.reshape(n, 4)
    person = category == 1
    absent = sorted(set(image_ids[person].tolist()) - set(row_of))
    if absent:
        raise DataError(
            f"detection file {det_file} has person boxes for {len(absent)} image id(s) absent from {path}: "
            f"{absent[:10]}{' ...' if len(absent) > 10 else ''} (detections and annotations of different splits?)"
        )
    above = person & (scores >= score_thr)
    box_ok = np.all(xywh[:, 2:] > 0, axis=1)
    keep = np.flatnonzero(above & box_ok)
    bbox_xyxy = np.concatenate([xywh[keep, :2], xywh[keep, :2] + xywh[keep, 2:]], axis=1)
    return {
        "file_names": file_names,
        "image_wh": image_wh,
        "image_index": np.array([row_of[i] for i in image_ids[keep].tolist()], dtype=np.int64).reshape(-1),
        "instance_ids": keep.astype(np.int64),
        "bbox_xyxy": bbox_xyxy,
        "bbox_scores": scores[keep].astype(np.float32),
        "areas": np.prod(xywh[keep, 2:], axis=1),
        "keypoints_xy": None,
        "visible": None,
        "skipped": {
            "other_category": int((~person).sum()),
            "below_score_thr": int((person & ~above).sum()),
            "invalid_box": int((above & ~box_ok).sum()),
        },
    }


def load_instances(
    ann_file: str | os.PathLike,
    bbox_source: BBoxSource = "gt",
    det_file: str | os.PathLike | None = None,
    det_score_thr: float = 0.0,
    padding: float = 1.25,
) -> InstanceTable:
    """Parse and filter the instances of an annotation file (GT boxes) or of a detection file (``"det"``)."""
    path = str(ann_file)
    coco = load_coco(path)
    if bbox_source == "gt":
        parts = _gt_instances(coco, path)
    elif bbox_source == "det":
        if det_file is None:
            raise ValueError("bbox_source='det' needs det_file (a COCO detection-results json)")
        parts = _det_instances(coco, path, str(det_file), det_score_thr)
    else:
        raise ValueError(f"bbox_source must be 'gt' or 'det', got {bbox_source!r}")
    source = path if bbox_source == "gt" else str(det_file)
    n = len(parts["instance_ids"])
    if n == 0:
        raise DataError(f"{source}: no instances left after filtering (skipped: {parts['skipped']})")
    center, scale = bbox_xyxy_to_center_scale(parts["bbox_xyxy"], None, padding)
    table = InstanceTable(
        image_ids=np.array(sorted(coco.imgs), dtype=np.int64)[parts["image_index"]],
        center_xy=center,
        scale_wh=scale,
        **parts,
    )
    logger.info(
        "%s: %d instances (%s boxes) on %d images; skipped %s",
        os.path.basename(source),
        n,
        bbox_source,
        len(np.unique(table.image_index)),
        table.skipped,
    )
    return table

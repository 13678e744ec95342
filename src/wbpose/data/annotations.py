"""COCO-WholeBody v1.0 annotation and detection files -> per-instance numpy arrays (:class:`InstanceTable`).

Reads the official annotation json (https://github.com/jin-s13/COCO-WholeBody, ``data_format.md``) and the
standard COCO detection-results json with the streaming array parser of :mod:`wbpose.data.coco_files`, or from the
parsed-file cache of :mod:`wbpose.data.cache` when a cache folder is given (``cache_dir``, or the folder set by
:func:`wbpose.data.cache.use_cache_dir`, which the DataModule sets). Semantics are MMPose 1.x
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

The arrays are plain numpy (not a list of dicts), so forked loader workers share them cheaply; loaded from the
cache they are read-only memory maps of files in the page cache, shared by every rank and worker of a node.
Malformed input raises :class:`~wbpose.data.errors.DataError` naming the file, the
record and the field.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from wbpose.data import cache
from wbpose.data.coco_files import (
    FIELD_LENGTHS,
    CocoArrays,
    DetectionArrays,
    parse_annotation_file,
    parse_detection_file,
)
from wbpose.data.errors import DataError
from wbpose.geometry import bbox_xyxy_to_center_scale

logger = logging.getLogger(__name__)

BBoxSource = Literal["gt", "det"]

__all__ = ["FIELD_LENGTHS", "BBoxSource", "InstanceTable", "instances_from_arrays", "load_instances"]


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


def _gt_instances(coco: CocoArrays) -> dict[str, Any]:
    rows = coco.image_rows(coco.ann_image_ids)
    crowd, num_kp = coco.iscrowd.astype(bool), coco.num_keypoints
    # 1.x box clipping, then the 1.x validity rules in order (each instance counted under its first reason).
    wh = coco.image_wh[rows] - 1
    x1y1 = np.clip(coco.bbox[:, :2], 0, wh)
    x2y2 = np.clip(coco.bbox[:, :2] + coco.bbox[:, 2:], 0, wh)
    box_ok = np.all(x2y2 - x1y1 > 0, axis=1)
    has_kp = ~crowd & (num_kp != 0)
    cand = np.flatnonzero(has_kp & box_ok)
    kpts = coco.keypoints[cand].astype(np.float32)  # float32 as MMPose's data_info (its "max <= 0" test)
    labelled = kpts[..., :2].max(axis=(1, 2)) > 0 if len(cand) else np.zeros(0, bool)
    keep = cand[labelled]
    bbox_xyxy = np.concatenate([x1y1, x2y2], axis=1)[keep]
    box_area = np.prod(bbox_xyxy[:, 2:] - bbox_xyxy[:, :2], axis=1)
    return {
        "image_index": rows[keep],
        "instance_ids": coco.ann_ids[keep],
        "bbox_xyxy": bbox_xyxy,
        "bbox_scores": np.ones(len(keep), np.float32),
        "areas": np.where(np.isnan(coco.area[keep]), box_area, coco.area[keep]),
        "keypoints_xy": np.ascontiguousarray(kpts[labelled, :, :2]),
        "visible": (kpts[labelled, :, 2] > 0).astype(np.uint8),
        "skipped": {
            "crowd": int(crowd.sum()),
            "no_keypoints": int((~crowd & (num_kp == 0)).sum()),
            "invalid_box": int((has_kp & ~box_ok).sum()),
            "no_labels": int((~labelled).sum()),
        },
    }


def _det_instances(coco: CocoArrays, dets: DetectionArrays, score_thr: float) -> dict[str, Any]:
    person = dets.category_ids == 1
    absent = coco.unknown_images(dets.image_ids[person]).tolist()
    if absent:
        raise DataError(
            f"detection file {dets.source} has person boxes for {len(absent)} image id(s) absent from "
            f"{coco.source}: {absent[:10]}{' ...' if len(absent) > 10 else ''} (detections and annotations of "
            "different splits?)"
        )
    xywh = dets.bbox
    above = person & (dets.scores >= score_thr)
    box_ok = np.all(xywh[:, 2:] > 0, axis=1)
    keep = np.flatnonzero(above & box_ok)
    return {
        "image_index": coco.image_rows(dets.image_ids[keep]),
        "instance_ids": keep.astype(np.int64),
        "bbox_xyxy": np.concatenate([xywh[keep, :2], xywh[keep, :2] + xywh[keep, 2:]], axis=1),
        "bbox_scores": dets.scores[keep].astype(np.float32),
        "areas": np.prod(xywh[keep, 2:], axis=1),
        "keypoints_xy": None,
        "visible": None,
        "skipped": {
            "other_category": int((~person).sum()),
            "below_score_thr": int((person & ~above).sum()),
            "invalid_box": int((above & ~box_ok).sum()),
        },
    }


def instances_from_arrays(
    coco: CocoArrays,
    bbox_source: BBoxSource = "gt",
    dets: DetectionArrays | None = None,
    det_score_thr: float = 0.0,
    padding: float = 1.25,
) -> InstanceTable:
    """Filter the instances of a parsed annotation file (GT boxes) or of parsed detections (``"det"``)."""
    if bbox_source == "gt":
        parts = _gt_instances(coco)
    elif bbox_source == "det":
        if dets is None:
            raise ValueError("bbox_source='det' needs det_file (a COCO detection-results json)")
        parts = _det_instances(coco, dets, det_score_thr)
    else:
        raise ValueError(f"bbox_source must be 'gt' or 'det', got {bbox_source!r}")
    source = coco.source if bbox_source == "gt" else dets.source
    n = len(parts["instance_ids"])
    if n == 0:
        raise DataError(f"{source}: no instances left after filtering (skipped: {parts['skipped']})")
    center, scale = bbox_xyxy_to_center_scale(parts["bbox_xyxy"], None, padding)
    table = InstanceTable(
        file_names=coco.file_names,
        image_wh=coco.image_wh,
        image_ids=coco.image_ids[parts["image_index"]],
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


def _table_arrays(table: InstanceTable) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {k: v for k, v in vars(table).items() if isinstance(v, np.ndarray)}
    return arrays, {"skipped": table.skipped}


def _table_from_arrays(arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> InstanceTable:
    return InstanceTable(
        **{name: arrays.get(name) for name in InstanceTable.__dataclass_fields__ if name != "skipped"},
        skipped=dict(extra["skipped"]),
    )


def load_instances(
    ann_file: str | os.PathLike,
    bbox_source: BBoxSource = "gt",
    det_file: str | os.PathLike | None = None,
    det_score_thr: float = 0.0,
    padding: float = 1.25,
    cache_dir: str | os.PathLike | None = None,
) -> InstanceTable:
    """Parse and filter the instances of an annotation file (GT boxes) or of a detection file (``"det"``).

    Args:
        ann_file: COCO-WholeBody annotation json.
        bbox_source: "gt" or "det".
        det_file: detection results json (``"det"``).
        det_score_thr: keep detections with ``score >= det_score_thr``.
        padding: box -> scale padding.
        cache_dir: parsed-file cache folder (:mod:`wbpose.data.cache`): the parsed files and the filtered table
            are stored there once and memory-mapped afterwards. ``None``: the folder set by
            :func:`wbpose.data.cache.use_cache_dir` (the DataModule sets ``data.cache_dir``), else no cache.
    """
    if bbox_source not in ("gt", "det"):
        raise ValueError(f"bbox_source must be 'gt' or 'det', got {bbox_source!r}")
    if bbox_source == "det" and det_file is None:
        raise ValueError("bbox_source='det' needs det_file (a COCO detection-results json)")
    folder = cache.resolve_cache_dir(cache_dir)
    if folder is None:
        coco = parse_annotation_file(ann_file)
        dets = parse_detection_file(det_file) if bbox_source == "det" else None
        return instances_from_arrays(coco, bbox_source, dets, det_score_thr, padding)

    sources = [ann_file] + ([det_file] if bbox_source == "det" else [])
    name = f"instances-{bbox_source}-thr{det_score_thr!r}-pad{padding!r}"

    def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        coco = cache.annotation_arrays(ann_file, folder)
        dets = cache.detection_arrays(det_file, folder) if bbox_source == "det" else None
        return _table_arrays(instances_from_arrays(coco, bbox_source, dets, det_score_thr, padding))

    arrays, extra = cache.derived_arrays(folder, name, sources, build)
    table = _table_from_arrays(arrays, extra)
    logger.info(
        "%s: %d instances (%s boxes, cached in %s); skipped %s",
        os.path.basename(str(sources[-1])),
        len(table.instance_ids),
        bbox_source,
        folder,
        table.skipped,
    )
    return table

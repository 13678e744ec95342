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
- values no rule above expects (MMPose does not check them), kept apart in :attr:`InstanceTable.invalid` and
  logged as a warning naming the file and the first record ids: an annotation or detection whose box has a NaN or
  infinite number is dropped (``nonfinite_box``), so is a detection with a NaN, infinite (``nonfinite_score``) or
  negative score (``negative_score``: a score is a probability; 0 is kept, as ``det_score_thr=0`` keeps it); a
  keypoint with a NaN or infinite x, y or v (in float32, as the table stores it) becomes unlabelled, ``(0, 0)``
  with v = 0, so the person keeps its other labels (``nonfinite_keypoints`` counts keypoints; a person left
  without labels is then skipped as ``no_labels``); a NaN or infinite ``area`` is replaced by the box area
  (``nonfinite_area``), as an absent one is. JSON has no NaN or Infinity, but Python's ``json`` writes and reads
  them (such a file takes the parser's plain path);
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
from wbpose.data.coco_files import CocoArrays, parse_annotation_file
from wbpose.data.coco_json import FIELD_LENGTHS
from wbpose.data.detection_files import DetectionArrays, parse_detection_file
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
        skipped: dropped instances per MMPose rule (``crowd``, ``no_keypoints``, ``invalid_box``, ``no_labels``; for
            detections ``other_category``, ``below_score_thr``, ``invalid_box``).
        invalid: values no rule expects, per reason (the module docstring): instances dropped, or keypoints and
            areas repaired; only reasons that occurred.
        invalid_ids: the first :data:`SHOWN_IDS` record ids (annotation ids, or detection indices in their file)
            of each reason in ``invalid``, and of detections skipped as ``invalid_box``.
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
    invalid: dict[str, int] = field(default_factory=dict)
    invalid_ids: dict[str, list[int]] = field(default_factory=dict)


#: How many record ids a warning about invalid values names (per reason).
SHOWN_IDS = 10
#: Bumped when the filtering changes, so that cached tables (:mod:`wbpose.data.cache`) are rebuilt.
_TABLE_VERSION = 2


def _note(invalid: dict[str, int], ids: dict[str, list[int]], reason: str, mask: np.ndarray, record_ids: np.ndarray,
          count: int | None = None) -> None:  # fmt: skip
    """Record ``reason`` for the records where ``mask`` holds (``count`` of them unless given), when there are any."""
    rows = np.flatnonzero(mask)
    if len(rows):
        invalid[reason] = int(len(rows) if count is None else count)
        ids[reason] = record_ids[rows[:SHOWN_IDS]].tolist()


def _gt_instances(coco: CocoArrays) -> dict[str, Any]:
    rows = coco.image_rows(coco.ann_image_ids)
    crowd, num_kp = coco.iscrowd.astype(bool), coco.num_keypoints
    invalid: dict[str, int] = {}
    invalid_ids: dict[str, list[int]] = {}
    # 1.x box clipping, then the 1.x validity rules in order (each instance counted under its first reason); a box
    # with a NaN or infinite number is dropped before them (clipping would turn an infinite width into the image's)
    has_kp = ~crowd & (num_kp != 0)
    finite_box = np.isfinite(coco.bbox).all(axis=1)
    _note(invalid, invalid_ids, "nonfinite_box", has_kp & ~finite_box, coco.ann_ids)
    wh = coco.image_wh[rows] - 1
    x1y1 = np.clip(coco.bbox[:, :2], 0, wh)
    x2y2 = np.clip(coco.bbox[:, :2] + coco.bbox[:, 2:], 0, wh)
    box_ok = np.all(x2y2 - x1y1 > 0, axis=1)
    cand = np.flatnonzero(has_kp & finite_box & box_ok)
    kpts = coco.keypoints[cand].astype(np.float32)  # float32 as MMPose's data_info (its "max <= 0" test)
    if not np.isfinite(kpts).all():  # one flat pass; the per-keypoint test (slow over a 3-long axis) only when needed
        broken = ~np.isfinite(kpts).all(axis=2)  # (n, K): a NaN/infinite x, y or v: unlabelled
        _note(invalid, invalid_ids, "nonfinite_keypoints", broken.any(axis=1), coco.ann_ids[cand], int(broken.sum()))
        kpts[broken] = 0.0
    labelled = kpts[..., :2].max(axis=(1, 2)) > 0 if len(cand) else np.zeros(0, bool)
    keep = cand[labelled]
    bbox_xyxy = np.concatenate([x1y1, x2y2], axis=1)[keep]
    box_area = np.prod(bbox_xyxy[:, 2:] - bbox_xyxy[:, :2], axis=1)
    area = coco.area[keep]
    _note(invalid, invalid_ids, "nonfinite_area", np.isinf(area), coco.ann_ids[keep])  # NaN: absent
    return {
        "image_index": rows[keep],
        "instance_ids": coco.ann_ids[keep],
        "bbox_xyxy": bbox_xyxy,
        "bbox_scores": np.ones(len(keep), np.float32),
        "areas": np.where(np.isfinite(area), area, box_area),
        "keypoints_xy": np.ascontiguousarray(kpts[labelled, :, :2]),
        "visible": (kpts[labelled, :, 2] > 0).astype(np.uint8),
        "skipped": {
            "crowd": int(crowd.sum()),
            "no_keypoints": int((~crowd & (num_kp == 0)).sum()),
            "invalid_box": int((has_kp & finite_box & ~box_ok).sum()),
            "no_labels": int((~labelled).sum()),
        },
        "invalid": invalid,
        "invalid_ids": invalid_ids,
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
    xywh, scores = dets.bbox, dets.scores
    index = np.arange(len(scores), dtype=np.int64)  # a detection's record id: its place in the file
    invalid: dict[str, int] = {}
    invalid_ids: dict[str, list[int]] = {}
    finite_box = np.isfinite(xywh).all(axis=1)
    finite_score = np.isfinite(scores)
    _note(invalid, invalid_ids, "nonfinite_box", person & ~finite_box, index)
    _note(invalid, invalid_ids, "nonfinite_score", person & finite_box & ~finite_score, index)
    valid = person & finite_box & finite_score
    _note(invalid, invalid_ids, "negative_score", valid & (scores < 0), index)
    valid &= scores >= 0
    above = valid & (scores >= score_thr)
    box_ok = np.all(xywh[:, 2:] > 0, axis=1)
    keep = np.flatnonzero(above & box_ok)
    if (above & ~box_ok).any():
        invalid_ids["invalid_box"] = index[above & ~box_ok][:SHOWN_IDS].tolist()
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
            "below_score_thr": int((valid & ~above).sum()),
            "invalid_box": int((above & ~box_ok).sum()),
        },
        "invalid": invalid,
        "invalid_ids": invalid_ids,
    }


#: What each reason of :attr:`InstanceTable.invalid` did, for the warning.
_INVALID_WHAT = {
    "nonfinite_box": "dropped {n} {records} whose bbox has a NaN or infinite number",
    "nonfinite_score": "dropped {n} {records} whose score is NaN or infinite",
    "negative_score": "dropped {n} {records} with a negative score",
    "invalid_box": "skipped {n} {records} with a box of zero or negative width or height",
    "nonfinite_keypoints": "made {n} keypoint(s) with a NaN or infinite x, y or v unlabelled (v=0)",
    "nonfinite_area": "replaced {n} NaN or infinite area(s) by the box area",
}


def _warn_invalid(table: InstanceTable, source: str, bbox_source: str) -> None:
    """One warning per kind of invalid value: the file, the count and the first record ids."""
    records = "annotation(s)" if bbox_source == "gt" else "detection(s)"
    id_name = "annotation ids" if bbox_source == "gt" else "detections #"
    for reason, ids in table.invalid_ids.items():
        n = table.invalid.get(reason, table.skipped.get(reason, len(ids)))
        more = " ..." if len(ids) == SHOWN_IDS else ""
        what = _INVALID_WHAT[reason].format(n=n, records=records)
        logger.warning("%s: %s (%s %s%s)", source, what, id_name, ", ".join(map(str, ids)), more)


def instances_from_arrays(
    coco: CocoArrays,
    bbox_source: BBoxSource = "gt",
    dets: DetectionArrays | None = None,
    det_score_thr: float = 0.0,
    padding: float = 1.25,
    report: bool = True,
) -> InstanceTable:
    """Filter the instances of a parsed annotation file (GT boxes) or of parsed detections (``"det"``); with
    ``report``, log the counts (and warn about invalid values, naming the records)."""
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
        invalid = f", invalid: {parts['invalid']}" if parts["invalid"] else ""
        raise DataError(f"{source}: no instances left after filtering (skipped: {parts['skipped']}{invalid})")
    center, scale = bbox_xyxy_to_center_scale(parts["bbox_xyxy"], None, padding)
    table = InstanceTable(
        file_names=coco.file_names,
        image_wh=coco.image_wh,
        image_ids=coco.image_ids[parts["image_index"]],
        center_xy=center,
        scale_wh=scale,
        **parts,
    )
    if report:
        _warn_invalid(table, source, bbox_source)
        logger.info(
            "%s: %d instances (%s boxes) on %d images; skipped %s%s",
            os.path.basename(source),
            n,
            bbox_source,
            len(np.unique(table.image_index)),
            table.skipped,
            f"; invalid {table.invalid}" if table.invalid else "",
        )
    return table


_COUNTS = ("skipped", "invalid", "invalid_ids")


def _table_arrays(table: InstanceTable) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {k: v for k, v in vars(table).items() if isinstance(v, np.ndarray)}
    return arrays, {name: getattr(table, name) for name in _COUNTS}


def _table_from_arrays(arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> InstanceTable:
    return InstanceTable(
        **{name: arrays.get(name) for name in InstanceTable.__dataclass_fields__ if name not in _COUNTS},
        **{name: dict(extra.get(name, {})) for name in _COUNTS},
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
    name = f"instances-v{_TABLE_VERSION}-{bbox_source}-thr{det_score_thr!r}-pad{padding!r}"

    def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        coco = cache.annotation_arrays(ann_file, folder)
        dets = cache.detection_arrays(det_file, folder) if bbox_source == "det" else None
        return _table_arrays(instances_from_arrays(coco, bbox_source, dets, det_score_thr, padding, report=False))

    arrays, extra = cache.derived_arrays(folder, name, sources, build)
    table = _table_from_arrays(arrays, extra)
    _warn_invalid(table, str(sources[-1]), bbox_source)
    logger.info(
        "%s: %d instances (%s boxes, cached in %s); skipped %s%s",
        os.path.basename(str(sources[-1])),
        len(table.instance_ids),
        bbox_source,
        folder,
        table.skipped,
        f"; invalid {table.invalid}" if table.invalid else "",
    )
    return table

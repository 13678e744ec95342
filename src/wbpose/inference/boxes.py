"""Person boxes for top-down pose: one small interface, image in, boxes ``[x, y, w, h]`` + scores out.

A :class:`BoxSource` is called with a :class:`~wbpose.inference.sources.Frame` and returns :class:`Boxes`. The
sources:

- :class:`WholeImage`: the whole image is one person (single-person crops; the old default);
- :class:`DetectionFile`: a COCO detection-results json (``[{"image_id", "category_id", "bbox", "score"}]``);
  images are matched by ``file_name`` when records have one, else by the number of a COCO file name; video
  frames by ``image_id`` = frame index;
- :class:`~wbpose.inference.detector.OnnxPersonDetector`: an RTMDet/YOLOX person detector in ONNX Runtime;
- :class:`~wbpose.inference.tracking.PoseTracker` wraps any of them for videos: the detector every N frames,
  boxes from the last poses in between.

:func:`iou_matrix` and :func:`nms` are the vectorised box helpers the detector and the tracker share.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wbpose.inference.sources import Frame, FrameSource, coco_image_id

log = logging.getLogger(__name__)

__all__ = ["BoxSource", "Boxes", "DetectionFile", "WholeImage", "iou_matrix", "nms", "read_detections"]


@dataclass
class Boxes:
    """Person boxes of one image.

    Attributes:
        xywh: boxes ``[x, y, w, h]`` in image pixels, float64.
        scores: detector scores, float64.
        image_id: the image id the boxes were filed under (detection files), else ``None``.

    Shape:
        xywh: (N, 4); scores: (N,)
    """

    xywh: np.ndarray
    scores: np.ndarray
    image_id: int | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.xywh)

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4)), np.zeros(0))


class BoxSource:
    """Image -> person boxes. Subclasses implement ``__call__``; ``check_source`` may refuse a source early."""

    name = "boxes"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(self, frame: Frame) -> Boxes:
        raise NotImplementedError

    def check_source(self, source: FrameSource) -> None:
        """Raise a clear ``ValueError`` when these boxes cannot belong to ``source`` (default: accept)."""


class WholeImage(BoxSource):
    """The whole image as one person box with score 1 (for single-person crops)."""

    name = "whole image"

    def __repr__(self) -> str:
        return "WholeImage(the whole image is one person box)"

    def __call__(self, frame: Frame) -> Boxes:
        h, w = frame.image.shape[:2]
        return Boxes(np.array([[0.0, 0.0, float(w), float(h)]]), np.ones(1))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _invalid_box(bbox: list, score: float) -> str | None:
    """Why a person record cannot be a box (``None``: it can): non-finite numbers, width or height <= 0, or a
    non-finite or negative score."""
    names = ("x", "y", "width", "height")
    bad = [name for name, v in zip(names, bbox) if not math.isfinite(v)]
    if bad:
        return f"bbox {bbox}: non-finite {', '.join(bad)}"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return f"bbox {bbox}: width and height must be > 0"
    if not math.isfinite(score):
        return f"score {score}: not finite"
    if score < 0:
        return f"score {score}: negative"
    return None


def read_detections(path: Path, box_thr: float) -> tuple[dict[object, list[dict]], int, list[dict], list[str]]:
    """Person detections grouped by ``file_name`` (when present) or ``image_id``.

    A person record whose box has a NaN or infinite number or a width or height <= 0, or whose score is NaN,
    infinite or negative, is dropped before the score threshold, and counted: one warning names the file, the
    count and the first records (JSON itself has no NaN, but Python's json module writes and reads ``NaN`` and
    ``Infinity``).

    Returns:
        ``(groups, kept, records, dropped)``: the kept person records (category 1, valid, ``score >= box_thr``)
        by key, their count, every record of the file (for checks against a video), and ``"record #i: why"`` of
        each dropped invalid record.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a list of ``{image_id, category_id, bbox, score}`` records, a bbox that is not four
            numbers, or a score that is not a number (naming the file and the record).
    """
    if not path.is_file():
        raise FileNotFoundError(f"detection file not found: {path}")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"detection file {path} is not valid json: {err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"detection file {path} is not a json text file") from None
    if not isinstance(records, list):
        raise ValueError(f"detection file {path}: expected a json list of detections, got {type(records).__name__}")
    groups: dict[object, list[dict]] = defaultdict(list)
    kept = 0
    dropped: list[str] = []
    for i, det in enumerate(records):
        if not isinstance(det, dict) or "bbox" not in det or ("image_id" not in det and "file_name" not in det):
            raise ValueError(f"detection file {path}: record #{i} lacks 'bbox' and 'image_id' (or 'file_name')")
        if int(det.get("category_id", 1)) != 1:
            continue
        bbox, score = det["bbox"], det.get("score", 1.0)
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise ValueError(f"detection file {path}: record #{i} has bbox {bbox!r}, expected [x, y, w, h] numbers")
        if not _is_number(score):
            raise ValueError(f"detection file {path}: record #{i} has score {score!r}, expected a number")
        why = _invalid_box(bbox, float(score))
        if why is not None:
            dropped.append(f"record #{i}: {why}")
            continue
        if score < box_thr:
            continue
        key = Path(det["file_name"]).name if "file_name" in det else int(det["image_id"])
        groups[key].append(det)
        kept += 1
    if dropped:
        shown = "; ".join(dropped[:5]) + (f"; ... ({len(dropped) - 5} more)" if len(dropped) > 5 else "")
        log.warning("detection file %s: dropped %d invalid person records (non-finite or non-positive box, or "
                    "non-finite or negative score): %s", path, len(dropped), shown)  # fmt: skip
    return groups, kept, records, dropped


class DetectionFile(BoxSource):
    """Boxes from a COCO detection-results json, e.g. MMPose's ``COCO_val2017_detections_AP_H_56_person.json``.

    Person records (``category_id`` 1, or none) with ``score >= box_thr`` are kept; invalid ones (a NaN or infinite
    number, w or h <= 0, a NaN, infinite or negative score) are dropped on loading, counted in ``dropped`` and
    logged with the file and the records (:func:`read_detections`). An image takes the records with its
    ``file_name`` when records have one, else those whose ``image_id`` is the number of its COCO file name
    (``000000000785.jpg`` -> 785); a video frame takes ``image_id`` = its frame index. An image without records
    gets no poses.

    Args:
        path: the json file.
        box_thr: smallest detector score kept.
    """

    name = "detection file"

    def __init__(self, path: str | os.PathLike, box_thr: float = 0.3) -> None:
        self.path = Path(path)
        self.box_thr = float(box_thr)
        self.groups, self.kept, records, self.dropped = read_detections(self.path, self.box_thr)
        ids = [int(r["image_id"]) for r in records if "image_id" in r]
        self._id_range = (min(ids), max(ids)) if ids else None
        self._file_names = sorted({Path(r["file_name"]).name for r in records if "file_name" in r})
        log.info("%d person boxes with score >= %g in %s", self.kept, self.box_thr, self.path)

    def __repr__(self) -> str:
        invalid = f", {len(self.dropped)} invalid dropped" if self.dropped else ""
        return f"DetectionFile(path={self.path}, {self.kept} boxes, score>={self.box_thr:g}{invalid})"

    def check_source(self, source: FrameSource) -> None:
        """A video's detections must use ``image_id`` = frame index within its frame count (and its file name)."""
        if source.kind == "images":
            return
        expected = "image_id = frame index"
        if source.num_frames:
            expected += f" 0..{source.num_frames - 1}"
        if self._file_names and self._file_names != [source.name]:
            raise ValueError(
                f"detection file {self.path} is for {', '.join(self._file_names[:3])} (its file_name), not for "
                f"{source.kind} {source.name}; expected records of this video with {expected}"
            )
        if self._id_range is None:
            raise ValueError(f"detection file {self.path} has no image_id; expected records with {expected}")
        lo, hi = self._id_range
        if lo < 0 or (source.num_frames and hi >= source.num_frames):
            raise ValueError(
                f"detection file {self.path} does not belong to {source.kind} {source.name}: its image_id values "
                f"run {lo}..{hi} but the video has {source.num_frames} frames; expected {expected} "
                "(detections of another video?)"
            )

    def __call__(self, frame: Frame) -> Boxes:
        image_id: int | None
        if frame.path is None:  # a video or webcam frame
            image_id = frame.index
            dets = self.groups.get(frame.name.rsplit("#", 1)[0]) if self._file_names else None
            dets = [d for d in dets if int(d.get("image_id", -1)) == image_id] if dets else self.groups.get(image_id)
        else:
            image_id = coco_image_id(frame.path)
            dets = self.groups.get(frame.path.name)
            if dets is None and image_id is not None:
                dets = self.groups.get(image_id)
            if image_id is None and dets and "image_id" in dets[0]:
                image_id = int(dets[0]["image_id"])
        dets = dets or []
        boxes = np.asarray([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray([float(d.get("score", 1.0)) for d in dets], dtype=np.float64)
        return Boxes(boxes, scores, image_id)  # finite, w, h > 0: checked on loading


def iou_matrix(a_xywh: np.ndarray, b_xywh: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (``[x, y, w, h]``).

    Shape:
        a_xywh: (N, 4); b_xywh: (M, 4) -> (N, M)
    """
    a = np.asarray(a_xywh, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xywh, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    union = a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter
    return inter / np.maximum(union, 1e-9)


def nms(xywh: np.ndarray, scores: np.ndarray, thr: float = 0.45) -> np.ndarray:
    """Greedy IoU non-maximum suppression: indices kept, in descending score order (ties in input order).

    A box is dropped when its IoU with a kept, higher-scored box is greater than ``thr``.

    Shape:
        xywh: (N, 4); scores: (N,) -> (N_kept,)
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    iou = iou_matrix(xywh, xywh)[np.ix_(order, order)]
    alive = np.ones(len(order), dtype=bool)
    for i in range(len(order)):  # one vectorised step per kept box
        if alive[i]:
            alive[i + 1 :] &= iou[i, i + 1 :] <= thr
    return order[alive]

"""Pose tracking for videos: a detector every N frames, boxes from the last poses in between, stable track ids.

The scheme of rtmlib's ``PoseTracker`` and MMPose's video demo, in two calls per frame around the Predictor:

1. ``boxes = tracker(frame)``: on a *detection frame* (every ``det_every`` frames, and whenever no track is
   alive) the wrapped :class:`~wbpose.inference.boxes.BoxSource` is asked; on the frames between, each live track
   gives the box of its last pose: the extent of its keypoints scored above ``keypoint_thr``, grown by
   ``box_padding`` about its centre (1.25, as rtmlib) and clipped to the frame;
2. ``keep, track_ids = tracker.update(frame, prediction)``: the poses of those boxes update the tracks.

Matching (detection frames): every new pose is compared with every live track's last pose, by the IoU of their
keypoint boxes (``match="iou"``, the default, as rtmlib and MMPose's demo) or by OKS over the keypoints both
score above ``keypoint_thr`` (``match="oks"``; COCO-WholeBody sigmas, mean of the two keypoint-box areas), as one
matrix, and assigned with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``); a pair below
``match_thr`` stays unmatched. A matched pose keeps the track's id, an unmatched pose starts a new id, and a track
the detector no longer finds ends. Between detections the poses belong to the tracks whose boxes made them; a
track whose pose keeps fewer than ``min_keypoints`` confident keypoints ends after that frame, and when two tracks
converge on one person (similarity above ``dedupe_thr``) the younger one is dropped. Duplicate detections of one
person are merged the same way before matching.

Ids are never reused within a run; they start at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from wbpose.inference.boxes import Boxes, BoxSource, iou_matrix
from wbpose.inference.prediction import PosePrediction
from wbpose.inference.sources import Frame, FrameSource
from wbpose.keypoints import sigmas_array

__all__ = ["MATCH_METHODS", "PoseTracker", "Track", "keypoint_boxes", "keypoint_oks_matrix"]

MATCH_METHODS = ("iou", "oks")


@dataclass
class Track:
    """One tracked person: its id, last pose and the box it gives the next frame.

    Shape:
        keypoints: (K, 2); keypoint_scores: (K,); box_xywh: (4,)
    """

    track_id: int
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    box_xywh: np.ndarray
    box_score: float
    first_frame: int
    last_frame: int


def keypoint_boxes(
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray,
    fallback_xywh: np.ndarray,
    image_wh: tuple[int, int],
    keypoint_thr: float = 0.3,
    padding: float = 1.25,
    min_keypoints: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around each pose's confident keypoints, grown by ``padding`` about their centre, clipped to the image.

    Returns:
        ``(boxes_xywh, ok)``: ``ok`` is False where fewer than ``min_keypoints`` keypoints score above
        ``keypoint_thr``; those rows hold ``fallback_xywh``.

    Shape:
        keypoints: (N, K, 2); keypoint_scores: (N, K); fallback_xywh: (N, 4) -> (N, 4), (N,)
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    conf = (np.asarray(keypoint_scores) > keypoint_thr) & np.isfinite(kp).all(-1)
    ok = conf.sum(-1) >= min_keypoints
    lo = np.where(conf[..., None], kp, 0.0).min(1, initial=np.inf, where=conf[..., None])
    hi = np.where(conf[..., None], kp, 0.0).max(1, initial=-np.inf, where=conf[..., None])
    with np.errstate(invalid="ignore"):  # poses without a confident keypoint: inf - inf, replaced below
        center, half = (lo + hi) / 2, (hi - lo) / 2 * padding
    w, h = image_wh
    lo = np.clip(center - half, 0, [w, h])
    hi = np.clip(center + half, 0, [w, h])
    boxes = np.concatenate([lo, np.maximum(hi - lo, 1.0)], 1) if len(kp) else np.zeros((0, 4))
    ok &= np.isfinite(boxes).all(1)
    fallback = np.asarray(fallback_xywh, dtype=np.float64).reshape(-1, 4)
    return np.where(ok[:, None], boxes, fallback), ok


def keypoint_oks_matrix(
    keypoints_a: np.ndarray,
    scores_a: np.ndarray,
    areas_a: np.ndarray,
    keypoints_b: np.ndarray,
    scores_b: np.ndarray,
    areas_b: np.ndarray,
    keypoint_thr: float = 0.3,
) -> np.ndarray:
    """OKS of every pose of ``a`` with every pose of ``b``, over the keypoints both score above ``keypoint_thr``.

    ``mean_k exp(-d_k^2 / (2 sigma_k)^2 / ((area_a + area_b) / 2) / 2)`` over the shared confident keypoints (0
    when there are none): :func:`wbpose.metrics.oks.oks_matrix`'s formula restricted to keypoints both poses
    see, since a pose tracker compares predictions whose invisible points are noise.

    Shape:
        keypoints_a: (N, K, 2); scores_a: (N, K); areas_a: (N,); keypoints_b: (M, K, 2) ... -> (N, M)
    """
    variances = (2 * sigmas_array()) ** 2
    a = np.asarray(keypoints_a, dtype=np.float64)
    b = np.asarray(keypoints_b, dtype=np.float64)
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    mean_area = (np.asarray(areas_a, np.float64)[:, None] + np.asarray(areas_b, np.float64)[None]) / 2
    e = d2 / variances / (mean_area[..., None] + np.spacing(1)) / 2
    shared = (np.asarray(scores_a)[:, None] > keypoint_thr) & (np.asarray(scores_b)[None] > keypoint_thr)
    total = np.where(shared, np.exp(-np.where(shared, e, 0.0)), 0.0).sum(-1)
    return total / np.maximum(shared.sum(-1), 1)


class PoseTracker(BoxSource):
    """Track people through a video around a box source (see the module docstring).

    Args:
        detector: the box source asked on detection frames.
        det_every: run the detector every this many frames (1: every frame).
        match: ``"iou"`` or ``"oks"``.
        match_thr: smallest similarity of a pose and a track to be matched.
        keypoint_thr: keypoint score above which a keypoint counts (boxes, OKS).
        box_padding: growth of a pose's keypoint box into the next frame's box.
        min_keypoints: a pose with fewer confident keypoints gives no box (its track ends).
        dedupe_thr: similarity above which two poses are one person.
    """

    name = "tracking"

    def __init__(
        self,
        detector: BoxSource,
        det_every: int = 5,
        match: str = "iou",
        match_thr: float = 0.3,
        keypoint_thr: float = 0.3,
        box_padding: float = 1.25,
        min_keypoints: int = 3,
        dedupe_thr: float = 0.8,
    ) -> None:
        if det_every < 1:
            raise ValueError(f"det_every must be >= 1, got {det_every}")
        if match not in MATCH_METHODS:
            raise ValueError(f"unknown match {match!r}; choose one of {MATCH_METHODS}")
        self.detector = detector
        self.det_every = int(det_every)
        self.match = match
        self.match_thr = float(match_thr)
        self.keypoint_thr = float(keypoint_thr)
        self.box_padding = float(box_padding)
        self.min_keypoints = int(min_keypoints)
        self.dedupe_thr = float(dedupe_thr)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (a new video)."""
        self.tracks: list[Track] = []
        self.next_id = 0
        self.detections = 0
        self._last_detection: int | None = None
        self._pending: tuple[int, bool, list[Track]] | None = None

    def __repr__(self) -> str:
        return (
            f"PoseTracker(detector={self.detector.name}, det_every={self.det_every}, match={self.match}, "
            f"match_thr={self.match_thr})"
        )

    def check_source(self, source: FrameSource) -> None:
        self.detector.check_source(source)
        self.reset()

    # ------------------------------------------------------------------ per frame
    def is_detection_frame(self, index: int) -> bool:
        return not self.tracks or self._last_detection is None or index - self._last_detection >= self.det_every

    def __call__(self, frame: Frame) -> Boxes:
        """This frame's person boxes: the detector's, or one per live track from its last pose."""
        if self.is_detection_frame(frame.index):
            self._last_detection = frame.index
            self.detections += 1
            self._pending = (frame.index, True, [])
            return self.detector(frame)
        tracks = list(self.tracks)
        self._pending = (frame.index, False, tracks)
        boxes = np.stack([t.box_xywh for t in tracks])
        return Boxes(boxes, np.array([t.box_score for t in tracks], dtype=np.float64))

    def _similarity(self, kp_a, sc_a, box_a, kp_b, sc_b, box_b) -> np.ndarray:
        """Similarity of poses ``a`` (N) and ``b`` (M): IoU of their boxes or OKS of their keypoints, (N, M)."""
        if self.match == "iou":
            return iou_matrix(box_a, box_b)
        pad2 = self.box_padding**2  # OKS areas: the keypoint extent, not the padded box
        return keypoint_oks_matrix(kp_a, sc_a, box_a[:, 2:].prod(1) / pad2, kp_b, sc_b, box_b[:, 2:].prod(1) / pad2,
                                   self.keypoint_thr)  # fmt: skip

    def _dedupe(self, kp: np.ndarray, sc: np.ndarray, boxes: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Indices of ``order`` kept after dropping poses too similar to an earlier one in ``order``."""
        sim = self._similarity(kp, sc, boxes, kp, sc, boxes)[np.ix_(order, order)]
        alive = np.ones(len(order), dtype=bool)
        for i in range(len(order)):  # one vectorised step per kept pose (a handful of people)
            if alive[i]:
                alive[i + 1 :] &= sim[i, i + 1 :] <= self.dedupe_thr
        return order[alive]

    def update(self, frame: Frame, prediction: PosePrediction) -> tuple[np.ndarray, np.ndarray]:
        """Update the tracks with the poses predicted in this frame's boxes.

        Returns:
            ``(keep, track_ids)``: indices of the predictions kept (duplicates dropped), in prediction order, and
            the track id of each.

        Shape:
            prediction: N people -> keep (M,) int64, track_ids (M,) int64
        """
        if self._pending is None or self._pending[0] != frame.index:
            raise RuntimeError("PoseTracker.update() must follow tracker(frame) for the same frame")
        _, detected, source_tracks = self._pending
        self._pending = None
        image_wh = (frame.image.shape[1], frame.image.shape[0])
        n = len(prediction)
        boxes, ok = keypoint_boxes(prediction.keypoints, prediction.keypoint_scores, prediction.boxes, image_wh,
                                   self.keypoint_thr, self.box_padding, self.min_keypoints)  # fmt: skip
        kp, sc = prediction.keypoints, prediction.keypoint_scores
        if detected:
            keep = np.sort(self._dedupe(kp, sc, boxes, np.argsort(-prediction.scores, kind="stable")))
            ids = np.full(len(keep), -1, dtype=np.int64)
            if self.tracks and len(keep):
                t_kp = np.stack([t.keypoints for t in self.tracks])
                t_sc = np.stack([t.keypoint_scores for t in self.tracks])
                t_box = np.stack([t.box_xywh for t in self.tracks])
                sim = self._similarity(kp[keep], sc[keep], boxes[keep], t_kp, t_sc, t_box)
                rows, cols = linear_sum_assignment(-sim)
                good = sim[rows, cols] >= self.match_thr
                ids[rows[good]] = [self.tracks[c].track_id for c in cols[good]]
            fresh = ids < 0
            ids[fresh] = np.arange(self.next_id, self.next_id + int(fresh.sum()))
            self.next_id += int(fresh.sum())
            old = {t.track_id: t for t in self.tracks}
            self.tracks = [
                Track(
                    int(tid),
                    kp[i],
                    sc[i],
                    boxes[i],
                    float(prediction.box_scores[i]),
                    old[tid].first_frame if tid in old else frame.index,
                    frame.index,
                )  # fmt: skip
                for i, tid in zip(keep.tolist(), ids.tolist())
            ]
            return keep.astype(np.int64), ids
        if n != len(source_tracks):
            raise ValueError(f"expected one pose per tracked box ({len(source_tracks)}), got {n}")
        # Between detections pose i belongs to track i; the older track wins when two converge.
        order = np.argsort([t.track_id for t in source_tracks], kind="stable").astype(np.int64)
        keep = np.sort(self._dedupe(kp, sc, boxes, order)) if n else np.zeros(0, np.int64)
        ids = np.asarray([source_tracks[i].track_id for i in keep.tolist()], dtype=np.int64)
        self.tracks = [
            Track(
                source_tracks[i].track_id,
                kp[i],
                sc[i],
                boxes[i],
                source_tracks[i].box_score,
                source_tracks[i].first_frame,
                frame.index,
            )  # fmt: skip
            for i in keep.tolist()
            if ok[i]
        ]
        return keep.astype(np.int64), ids

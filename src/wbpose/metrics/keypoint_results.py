"""Keypoint results held as arrays (:class:`KeypointResults`) and the part tables of the fast engine.

The fast engine (:mod:`wbpose.metrics.cocoeval`) and the results-json reader (:mod:`wbpose.metrics.results_io`)
share this form: one row per result, no Python object per prediction. Point boxes and "has a scored point" flags
per part segment are computed once per results object, in row blocks, and kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wbpose.keypoints import NUM_KEYPOINTS, PART_SLICES, part_starts

#: Evaluated parts in the order MMPose runs them, with their keypoint ranges.
EVAL_PARTS: dict[str, slice] = {**PART_SLICES, "wholebody": slice(0, NUM_KEYPOINTS)}
#: The ranking score of each part when a result carries it (xtcocotools' ``score_key``).
SCORE_KEYS: dict[str, str] = {
    "body": "score",
    "foot": "foot_score",
    "face": "face_score",
    "lefthand": "lefthand_score",
    "righthand": "righthand_score",
    "wholebody": "wholebody_score",
}
#: First point of each part (body, foot, face, lefthand, righthand): the segments of the per-result point boxes.
SEGMENT_STARTS = part_starts()
#: Largest number of float64 elements of one OKS temporary (pairs x points).
CHUNK_ELEMENTS = 1 << 20


def _segment_columns(part: slice) -> np.ndarray:
    """The columns of :data:`SEGMENT_STARTS` that make up ``part`` (a union of segments)."""
    return np.flatnonzero((part.start <= SEGMENT_STARTS) & (part.stop > SEGMENT_STARTS))


@dataclass
class KeypointResults:
    """Keypoint results as arrays (N results, in results-file order).

    Attributes:
        image_ids: (N,) int64.
        keypoints: (N, 133, 2) float64 image pixels.
        keypoint_scores: (N, 133) float64 (the third number of each point).
        scores: (N,) float64 instance score.
        category_ids: (N,) int64 (all 1 when ``None``).
        part_scores: optional ``{"<part>_score": (N,) float64}``, NaN where a result has none.
    """

    image_ids: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray | None = None
    part_scores: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_ids)

    def point_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per result, the box of its points of each part segment (:data:`SEGMENT_STARTS`, the five parts): lo
        and hi corners, each (N, 5, 2) float64 (made once, in row blocks, then kept)."""
        cached = self.__dict__.get("_boxes")
        if cached is None:
            n = len(self)
            lo, hi = np.empty((n, len(SEGMENT_STARTS), 2)), np.empty((n, len(SEGMENT_STARTS), 2))
            step = max(1, CHUNK_ELEMENTS // (2 * NUM_KEYPOINTS))
            for s in range(0, n, step):
                block = np.asarray(self.keypoints[s : s + step], dtype=np.float64)
                lo[s : s + step] = np.minimum.reduceat(block, SEGMENT_STARTS, axis=1)
                hi[s : s + step] = np.maximum.reduceat(block, SEGMENT_STARTS, axis=1)
            cached = self.__dict__["_boxes"] = (lo, hi)
        return cached

    def scored(self, part: slice) -> np.ndarray:
        """Whether each result has a keypoint score above 0 in ``part`` (a union of segments): (N,) bool. Results
        without one are not evaluated for the part (``loadRes``/``evaluate`` drop them)."""
        cached = self.__dict__.get("_scored")
        if cached is None:
            n = len(self)
            cached = np.zeros((n, len(SEGMENT_STARTS)), bool)
            step = max(1, CHUNK_ELEMENTS // NUM_KEYPOINTS)
            for s in range(0, n, step):
                block = np.asarray(self.keypoint_scores[s : s + step]) > 0
                cached[s : s + step] = np.logical_or.reduceat(block, SEGMENT_STARTS, axis=1)
            self.__dict__["_scored"] = cached
        return cached[:, _segment_columns(part)].any(axis=1)

    def part_box(self, part: slice) -> tuple[np.ndarray, np.ndarray]:
        """The box of each result's points of ``part`` (a union of segments): lo, hi (N, 2) float64."""
        lo, hi = self.point_boxes()
        cols = _segment_columns(part)
        return lo[:, cols].min(axis=1), hi[:, cols].max(axis=1)

    def categories(self) -> np.ndarray:
        return np.ones(len(self), np.int64) if self.category_ids is None else np.asarray(self.category_ids)

    def ranking_scores(self, part: str) -> np.ndarray:
        """The score each result ranks by for ``part`` (its ``<part>_score`` where present, else ``score``)."""
        key = SCORE_KEYS[part]
        own = self.part_scores.get(key) if key != "score" else None
        scores = np.asarray(self.scores, dtype=np.float64)
        return scores if own is None else np.where(np.isnan(own), scores, own)

    def body_box_area(self) -> np.ndarray:
        """``loadRes``'s result area: the extent box of the 17 body points."""
        lo, hi = self.part_box(PART_SLICES["body"])
        return (hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1])

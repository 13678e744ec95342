"""What the predictor returns: :class:`PosePrediction` (the poses of one image) and its COCO-WholeBody results
entries (:func:`to_coco_results`, the metric's formatter). Torch-free."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wbpose.metrics.results_io import build_results

__all__ = ["PosePrediction", "to_coco_results"]


@dataclass
class PosePrediction:
    """Poses of the people in one image.

    Attributes:
        keypoints: keypoints in image pixels, float32.
        keypoint_scores: heatmap maxima (of the flip-averaged heatmaps), float32.
        scores: instance scores, ``box_scores * mean(keypoint_scores > 0.2)``, float32.
        boxes: the person boxes ``[x, y, w, h]`` in image pixels, float32.
        box_scores: detector scores of the boxes (1 when none were given), float32.

    Shape:
        keypoints: (N, 133, 2); keypoint_scores: (N, 133); scores, box_scores: (N,); boxes: (N, 4)
    """

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def take(self, index: np.ndarray | Sequence[int]) -> PosePrediction:
        """The people at ``index`` (indices or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.dtype != bool:
            index = index.astype(np.int64).reshape(-1)
        return PosePrediction(self.keypoints[index], self.keypoint_scores[index], self.scores[index],
                              self.boxes[index], self.box_scores[index])  # fmt: skip


def to_coco_results(
    prediction: PosePrediction, image_id: int, track_ids: np.ndarray | Sequence[int] | None = None
) -> list[dict]:
    """Official COCO-WholeBody results entries of one image (the metric's formatter; docs/conventions.md#results-json).

    Each entry has ``image_id``, ``category_id`` = 1, ``keypoints`` (17 x 3 flat ``[x, y, score]``),
    ``foot_kpts`` (6 x 3), ``face_kpts`` (68 x 3), ``lefthand_kpts`` (21 x 3), ``righthand_kpts`` (21 x 3) and the
    instance ``score``; with ``track_ids`` (one per person, from pose tracking) also ``track_id``, which scorers
    ignore.
    """
    image_ids = np.full(len(prediction), int(image_id), dtype=np.int64)
    results = build_results(image_ids, prediction.keypoints, prediction.keypoint_scores, prediction.scores)
    if track_ids is not None:
        ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(results):
            raise ValueError(f"expected {len(results)} track ids, got {len(ids)}")
        for entry, track_id in zip(results, ids.tolist()):
            entry["track_id"] = track_id
    return results

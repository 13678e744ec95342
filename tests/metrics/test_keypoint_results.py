"""Keypoint results as arrays (wbpose.metrics.keypoint_results): point boxes, scored parts and ranking scores
against direct numpy over each part's slice of keypoints, also when they are computed in row blocks."""

from __future__ import annotations

import numpy as np
import pytest

from wbpose.keypoints import NUM_KEYPOINTS, PART_SLICES
from wbpose.metrics import keypoint_results
from wbpose.metrics.keypoint_results import EVAL_PARTS, SCORE_KEYS, KeypointResults


def random_results(n: int, seed: int) -> KeypointResults:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-0.5, 1.0, (n, NUM_KEYPOINTS))
    scores[1, PART_SLICES["lefthand"]] = 0.0  # a part with no point scored above 0
    scores[2] = -1.0  # no point scored at all
    return KeypointResults(
        rng.integers(1, 5, n), rng.uniform(-50, 700, (n, NUM_KEYPOINTS, 2)), scores, rng.uniform(0, 1, n)
    )


@pytest.mark.parametrize("block_rows", [3, 1_000])
def test_boxes_and_scored_parts_equal_direct_numpy(block_rows, monkeypatch):
    """Row blocks of 3 (several blocks and a remainder) and one block give the per-part values of plain numpy."""
    monkeypatch.setattr(keypoint_results, "CHUNK_ELEMENTS", block_rows * 2 * NUM_KEYPOINTS)
    results = random_results(14, seed=block_rows)
    kp = results.keypoints
    for part, sl in EVAL_PARTS.items():
        lo, hi = results.part_box(sl)
        np.testing.assert_array_equal(lo, kp[:, sl].min(axis=1), err_msg=part)
        np.testing.assert_array_equal(hi, kp[:, sl].max(axis=1), err_msg=part)
        np.testing.assert_array_equal(results.scored(sl), (results.keypoint_scores[:, sl] > 0).any(axis=1))
    assert not results.scored(PART_SLICES["lefthand"])[1] and not results.scored(EVAL_PARTS["wholebody"])[2]
    body = kp[:, PART_SLICES["body"]]
    extent = body.max(axis=1) - body.min(axis=1)
    np.testing.assert_allclose(results.body_box_area(), extent[:, 0] * extent[:, 1], rtol=1e-15)


def test_ranking_scores_and_categories():
    results = random_results(4, seed=0)
    np.testing.assert_array_equal(results.categories(), np.ones(4, np.int64))
    results.category_ids = np.array([1, 2, 2, 1])
    np.testing.assert_array_equal(results.categories(), [1, 2, 2, 1])
    face = np.array([0.3, np.nan, 0.9, np.nan])
    results.part_scores = {"face_score": face, "score": np.full(4, 7.0)}  # "score" is never a part score
    for part in SCORE_KEYS:
        expected = np.where(np.isnan(face), results.scores, face) if part == "face" else results.scores
        np.testing.assert_array_equal(results.ranking_scores(part), expected, err_msg=part)

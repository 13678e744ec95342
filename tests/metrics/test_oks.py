"""Vectorised rescoring, OKS and OKS-NMS against the plain Python references of ``helpers.references``
(docs/conventions.md#rescoring, #oks-nms)."""

from __future__ import annotations

import numpy as np
import pytest

import wbpose.metrics.oks as oks_module
from helpers.predictions import random_predictions, selection_args
from helpers.references import mmpose_oks, ref_oks, ref_oks_nms, ref_rescore, ref_select_people
from wbpose.keypoints import NUM_KEYPOINTS, sigmas_array
from wbpose.metrics.oks import oks_matrix, oks_nms, rescore, select_people


def clustered_predictions(seed: int, num_images: int = 12, max_per_image: int = 9):
    """Images with a few people, each predicted several times with small noise, so OKS straddles 0.9."""
    rng = np.random.default_rng(seed)
    kpts, areas, image_ids = [], [], []
    for image in range(num_images):
        count = int(rng.integers(1, max_per_image + 1))
        bases = rng.uniform(0, 500, (int(rng.integers(1, 4)), NUM_KEYPOINTS, 2))
        for _ in range(count):
            side = rng.uniform(50, 300)
            jitter = rng.normal(0, 1, (NUM_KEYPOINTS, 2)) * rng.choice([0.5, 2.0, 8.0])
            kpts.append(bases[rng.integers(len(bases))] + jitter)
            areas.append(side * side)
            image_ids.append(100 + image * 7 % num_images)
    n = len(kpts)
    scores = rng.uniform(0, 1, n)
    scores[rng.integers(0, n, n // 5)] = 0.5  # ties
    return np.array(kpts), scores, np.array(areas), np.array(image_ids)


def test_rescore_matches_reference():
    rng = np.random.default_rng(0)
    kpt_scores = rng.uniform(0, 1, (50, NUM_KEYPOINTS)) ** 3
    kpt_scores[:5] = 0.1  # nothing above the threshold -> 0
    kpt_scores[5, 0] = 0.2  # exactly at the threshold does not count
    bbox = rng.uniform(0, 1, 50)
    np.testing.assert_allclose(rescore(kpt_scores, bbox, 0.2), ref_rescore(kpt_scores, bbox, 0.2), rtol=1e-14)
    assert (rescore(kpt_scores[:5], bbox[:5]) == 0).all()


def test_oks_matrix_matches_reference_and_is_batched():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 200, (2, 4, NUM_KEYPOINTS, 2))
    b = a[:, :3] + rng.normal(0, 3, (2, 3, NUM_KEYPOINTS, 2))
    area_a, area_b = rng.uniform(1e3, 5e4, (2, 4)), rng.uniform(1e3, 5e4, (2, 3))
    got = oks_matrix(a, b, area_a, area_b)
    assert got.shape == (2, 4, 3)
    for g in range(2):
        for i in range(4):
            for j in range(3):
                assert got[g, i, j] == pytest.approx(ref_oks(a[g, i], b[g, j], area_a[g, i], area_b[g, j]), abs=1e-13)
    np.testing.assert_allclose(oks_matrix(a[0], a[0], area_a[0], area_a[0]).diagonal(), 1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr", [0.9, 0.5])
def test_oks_nms_matches_reference(seed, thr):
    kpts, scores, areas, image_ids = clustered_predictions(seed)
    keep = oks_nms(kpts, scores, areas, image_ids, thr)
    assert keep.tolist() == ref_oks_nms(kpts, scores, areas, image_ids, thr)
    assert 0 < len(keep) < len(scores)  # the data does exercise suppression


@pytest.mark.parametrize("seed", range(2))
def test_mmpose_style_nms_baseline_matches(seed):
    """benchmarks/metric.py's baseline: the same greedy NMS with one numpy OKS per pair, as MMPose runs it."""
    kpts, scores, areas, image_ids = clustered_predictions(seed)
    for i, j in [(0, 1), (2, 5), (3, 3)]:
        assert mmpose_oks(kpts[i], kpts[j], areas[i], areas[j]) == pytest.approx(
            ref_oks(kpts[i], kpts[j], areas[i], areas[j]), abs=1e-13
        )
    baseline = ref_oks_nms(kpts, scores.tolist(), areas, image_ids, 0.9, oks=mmpose_oks)
    assert baseline == oks_nms(kpts, scores, areas, image_ids, 0.9).tolist()


def test_oks_nms_blocks_do_not_change_the_result(monkeypatch):
    kpts, scores, areas, image_ids = clustered_predictions(7, num_images=30, max_per_image=12)
    expected = oks_nms(kpts, scores, areas, image_ids)
    monkeypatch.setattr(oks_module, "_PAIR_CHUNK", 1)  # a few pairs per chunk
    assert oks_nms(kpts, scores, areas, image_ids).tolist() == expected.tolist()


def test_oks_nms_ties_singletons_and_empty():
    kpts = np.zeros((3, NUM_KEYPOINTS, 2))
    kpts[2] += 400.0  # far away from the two identical ones
    keep = oks_nms(kpts, np.array([0.5, 0.5, 0.1]), np.full(3, 1e4), np.array([1, 1, 1]))
    assert keep.tolist() == [0, 2]  # equal scores: the earlier one survives
    assert oks_nms(kpts[:1], np.ones(1), np.ones(1), np.array([3])).tolist() == [0]
    assert oks_nms(np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros(0), np.zeros(0), np.zeros(0, np.int64)).size == 0


@pytest.mark.parametrize("thr", [0.0, 0.3, 1.0, 1.5, -0.1])
def test_oks_nms_any_threshold_matches_reference(thr):
    """Outside (0, 1) the box bounds are off and every pair is decided by its OKS."""
    kpts, scores, areas, image_ids = clustered_predictions(3, num_images=6, max_per_image=7)
    assert oks_nms(kpts, scores, areas, image_ids, thr).tolist() == ref_oks_nms(kpts, scores, areas, image_ids, thr)


def test_oks_nms_chain_of_overlaps_and_other_point_counts():
    """A row of predictions where each overlaps only its neighbours: the greedy pass keeps every other one (the
    rounds of ``_greedy`` resolve the chain); also with 17 points and their own sigmas."""
    rng = np.random.default_rng(5)
    base = rng.uniform(100, 300, (NUM_KEYPOINTS, 2))
    shift = 1.0  # pixels per step: OKS of neighbours 0.909, of the next but one 0.728
    kpts = np.stack([base + [i * shift, 0.0] for i in range(12)])
    scores, areas, image_ids = np.linspace(1.0, 0.5, 12), np.full(12, 80.0**2), np.zeros(12, np.int64)
    expected = ref_oks_nms(kpts, scores, areas, image_ids, 0.9)
    assert oks_nms(kpts, scores, areas, image_ids, 0.9).tolist() == expected
    assert len(expected) not in (1, 12)  # a real chain, neither everything nor one kept
    body = kpts[:, :17]
    keep = oks_nms(body, scores, areas, image_ids, 0.9, sigmas=sigmas_array()[:17])
    assert keep.tolist() == ref_oks_nms(body, scores, areas, image_ids, 0.9)


def test_pair_chunks_cover_every_pair_once():
    counts = np.array([1, 4, 2, 7, 1, 3])
    group_end = np.repeat(np.cumsum(counts), counts)
    expected = {(i, j) for s, c in zip(np.cumsum(counts) - counts, counts) for i in range(s, s + c)
                for j in range(i + 1, s + c)}  # fmt: skip
    for budget in (1, 3, 10, 1000):
        chunks = oks_module._pair_chunks(group_end, budget)
        got = [(int(i), int(j)) for pi, pj in chunks for i, j in zip(pi, pj)]
        assert len(got) == len(expected) and set(got) == expected


def test_oks_matrix_with_other_sigmas():
    """A caller's own sigmas (here 17 body sigmas) are used, not the 133 defaults (found by mutation testing)."""
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0, 50, (2, 17, 2)), rng.uniform(0, 50, (3, 17, 2))
    area_a, area_b = rng.uniform(400, 900, 2), rng.uniform(400, 900, 3)
    sigmas = sigmas_array()[:17] * 1.7
    expected = np.zeros((2, 3))
    for i in range(2):
        for j in range(3):
            d2 = ((a[i] - b[j]) ** 2).sum(-1)
            expected[i, j] = np.exp(-d2 / (2 * sigmas) ** 2 / ((area_a[i] + area_b[j]) / 2 + np.spacing(1)) / 2).mean()
    np.testing.assert_allclose(oks_matrix(a, b, area_a, area_b, sigmas=list(sigmas)), expected, rtol=1e-12)


# ---------------------------------------------------------------------------------------------- select_people


@pytest.mark.parametrize("seed", range(6))
def test_select_people_matches_a_plain_loop(seed):
    preds = random_predictions(seed)
    keep, scores = select_people(*selection_args(preds), instance_ids=preds["instance_ids"])
    ref_keep, ref_scores = ref_select_people(*selection_args(preds), instance_ids=preds["instance_ids"])
    assert keep.tolist() == ref_keep  # same people, same order (image, then descending score)
    np.testing.assert_array_equal(scores, np.asarray(ref_scores))
    # the data exercises every step: duplicates dropped, some people suppressed, several images, zero scores
    num_unique = len(np.unique(preds["instance_ids"]))
    assert num_unique < len(preds["instance_ids"])
    assert len(keep) < num_unique
    assert len(np.unique(preds["image_ids"][keep])) > 1
    assert len(np.unique(preds["instance_ids"][keep])) == len(keep)


@pytest.mark.parametrize("nms_thr, keypoint_score_thr", [(0.5, 0.2), (0.95, 0.5), (0.9, 0.0)])
def test_select_people_thresholds_and_no_instance_ids(nms_thr, keypoint_score_thr):
    preds = random_predictions(7)
    kwargs = dict(keypoint_score_thr=keypoint_score_thr, nms_thr=nms_thr)
    for ids in (preds["instance_ids"], None):
        keep, scores = select_people(*selection_args(preds), instance_ids=ids, **kwargs)
        ref_keep, ref_scores = ref_select_people(*selection_args(preds), instance_ids=ids, **kwargs)
        assert keep.tolist() == ref_keep
        np.testing.assert_array_equal(scores, np.asarray(ref_scores))


def test_select_people_is_independent_of_input_order():
    preds = random_predictions(3)
    keep, scores = select_people(*selection_args(preds), instance_ids=preds["instance_ids"])
    # any order in which each id's first occurrence stays the same row (the originals come before the repeats)
    n = len(np.unique(preds["instance_ids"]))
    perm = np.concatenate([np.random.default_rng(0).permutation(n), np.arange(n, len(preds["instance_ids"]))])
    shuffled = {k: v[perm] for k, v in preds.items()}
    keep2, scores2 = select_people(*selection_args(shuffled), instance_ids=shuffled["instance_ids"])
    assert perm[keep2].tolist() == keep.tolist()
    np.testing.assert_array_equal(scores2, scores)


def test_select_people_empty():
    keep, scores = select_people(
        np.zeros(0, np.int64), np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros((0, NUM_KEYPOINTS)), np.zeros(0), np.zeros(0)
    )
    assert keep.shape == scores.shape == (0,)
    assert keep.dtype == np.int64

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


# ----------------------------------------------------------------- edges found by mutation testing (docs/testing.md)


def test_rescore_default_threshold_one_keypoint_above_and_float32():
    kpt = np.array([[0.1, 0.5, 0.15], [0.3, 0.1, 0.1]])
    np.testing.assert_array_equal(rescore(kpt, np.array([2.0, 1.0])), [1.0, 0.3])  # default thr 0.2; one above
    k32 = np.random.default_rng(0).uniform(0, 1, (4, NUM_KEYPOINTS)).astype(np.float32)
    bbox = np.linspace(0.5, 1.0, 4)
    np.testing.assert_array_equal(rescore(k32, bbox), rescore(k32.astype(np.float64), bbox))  # summed in float64


def test_row_blocks_of_one_row(monkeypatch):
    """Blocks of a single row (rescore, the point boxes of OKS-NMS and its exact pairs) give the same result."""
    kpts, scores, areas, image_ids = clustered_predictions(2)
    kpt_scores = np.random.default_rng(2).uniform(0, 1, (len(scores), NUM_KEYPOINTS))
    expected_scores = rescore(kpt_scores, scores)
    expected_keep = oks_nms(kpts, scores, areas, image_ids)
    monkeypatch.setattr(oks_module, "_ROW_CHUNK_ELEMENTS", 1)
    np.testing.assert_array_equal(rescore(kpt_scores, scores), expected_scores)
    assert oks_nms(kpts, scores, areas, image_ids).tolist() == expected_keep.tolist()


def test_oks_of_integer_keypoints_and_zero_areas():
    kpts, scores, areas, image_ids = clustered_predictions(4)
    ints = np.rint(kpts).astype(np.int64)
    np.testing.assert_array_equal(oks_matrix(ints[:5], ints[3:9], areas[:5], areas[3:9]),
                                  oks_matrix(ints[:5] * 1.0, ints[3:9] * 1.0, areas[:5], areas[3:9]))  # fmt: skip
    assert oks_nms(ints, scores, areas, image_ids).tolist() == oks_nms(ints * 1.0, scores, areas, image_ids).tolist()
    a = np.zeros((2, 1, 2))
    a[1, 0, 0] = 1.0  # zero areas: identical points have OKS 1, any distance OKS 0
    np.testing.assert_array_equal(oks_matrix(a, a, np.zeros(2), np.zeros(2), sigmas=[0.1]), [[1, 0], [0, 1]])


@pytest.mark.parametrize("axis, area", [(1, 10.0), (0, 0.1), (1, 0.1)])
@pytest.mark.parametrize("margin", [5e-10, -5e-10])
def test_oks_nms_at_the_edge_of_its_skipping_bounds(axis, area, margin):
    """One point, sigma 1: the box bounds equal the OKS, so a pair a hair above ``thr`` must reach the exact OKS
    (shifts above and below one pixel, areas above and below one)."""
    thr, variance = 0.9, 4.0
    shift = np.sqrt(2 * variance * area * -np.log(thr * (1 + margin)))
    kpts = np.full((2, 1, 2), 100.0)
    kpts[1, 0, axis] += shift
    areas = np.full(2, area)
    assert (oks_matrix(kpts[:1], kpts[1:], areas[:1], areas[1:], sigmas=[1.0])[0, 0] > thr) == (margin > 0)
    keep = oks_nms(kpts, np.array([1.0, 0.5]), areas, np.zeros(2, np.int64), thr, sigmas=[1.0])
    assert keep.tolist() == ([0] if margin > 0 else [0, 1])


def test_oks_nms_part_boxes_and_threshold_one():
    """Two points, one of them far off: OKS (1 + 0.1) / 2 > 0.5 although the far point alone is below; either
    point moved (images 0 and 1). With ``thr=1`` identical predictions (OKS exactly 1) are both kept."""
    area = 100.0
    far = np.sqrt(4.0 * area * np.log(10.0))  # a shift of (far, far) gives exp(-e) = 0.1 with sigma 1
    base = np.array([[0.0, 0.0], [10.0, 10.0]])
    kpts = np.stack([base, base + [[0, 0], [far, far]], base, base - [[far, far], [0, 0]]])
    image_ids = np.array([0, 0, 1, 1])
    oks = oks_matrix(kpts[[0, 2]], kpts[[1, 3]], np.full(2, area), np.full(2, area), sigmas=[1.0, 1.0])
    np.testing.assert_allclose(oks.diagonal(), 0.55)
    keep = oks_nms(kpts, np.array([1.0, 0.9, 1.0, 0.9]), np.full(4, area), image_ids, 0.5, sigmas=[1.0, 1.0])
    assert keep.tolist() == [0, 2]
    same = np.stack([base, base])
    assert oks_nms(same, np.ones(2), np.full(2, area), np.zeros(2), 1.0, sigmas=[1.0, 1.0]).tolist() == [0, 1]


def test_pair_chunks_are_as_large_as_the_budget_allows():
    group_end = np.full(4, 4)  # one group of 4: positions start 3, 2, 1, 0 pairs
    for budget, sizes in [(1, [3, 2, 1]), (5, [5, 1]), (6, [6])]:
        assert [len(pi) for pi, _ in oks_module._pair_chunks(group_end, budget)] == sizes


def test_select_people_sorted_duplicates_unsorted_ids_and_own_sigmas():
    kpts = np.stack([np.full((17, 2), 100.0 * i) for i in range(3)])  # three people far apart, one image
    args = (np.zeros(3, np.int64), kpts, np.ones((3, 17)), np.ones(3), np.full(3, 1e4))
    sigmas = sigmas_array()[:17]
    # sorted ids with a repeat: the repeat is dropped
    assert select_people(*args, instance_ids=np.array([1, 1, 2]), sigmas=sigmas)[0].tolist() == [0, 2]
    # unsorted ids (the first the smallest): equal scores come out in ascending id order
    assert select_people(*args, instance_ids=np.array([1, 3, 2]), sigmas=sigmas)[0].tolist() == [0, 2, 1]
    # the sigmas reach OKS-NMS: two identical people, the second suppressed
    kpts[1] = kpts[0]
    assert select_people(*args, instance_ids=np.array([1, 2, 3]), sigmas=sigmas)[0].tolist() == [0, 2]


def test_oks_matrix_computes_float32_sigmas_in_float64():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(0, 50, (2, 17, 2)), rng.uniform(0, 50, (3, 17, 2))
    sigmas = (sigmas_array()[:17] * 3).astype(np.float32)
    got = oks_matrix(a, b, np.full(2, 900.0), np.full(3, 900.0), sigmas=sigmas)
    np.testing.assert_array_equal(got, oks_matrix(a, b, np.full(2, 900.0), np.full(3, 900.0), sigmas.astype(float)))

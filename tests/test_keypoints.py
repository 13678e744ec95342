"""The keypoint tables equal MMPose's COCO-WholeBody metainfo numerically (docs/conventions.md#keypoints,
#flip-pairs, #oks-sigmas)."""

import json

import numpy as np
import pytest

from helpers.paths import FIXTURE_DIR
from wbpose import keypoints as kp

META = json.loads((FIXTURE_DIR / "coco_wholebody_meta.json").read_text())


def test_names_and_parts_match_reference():
    assert list(kp.KEYPOINT_NAMES) == META["keypoint_names"]
    assert kp.NUM_KEYPOINTS == 133
    for part, (start, stop) in META["part_slices"].items():
        assert kp.PART_SLICES[part] == slice(start, stop)
    assert kp.KEYPOINT_NAMES[23] == "face-0" and kp.KEYPOINT_NAMES[91] == "left_hand_root"
    assert kp.KEYPOINT_NAMES[112] == "right_hand_root"
    starts = kp.part_starts()
    assert starts.tolist() == sorted(start for start, _ in META["part_slices"].values()) == [0, 17, 23, 91, 112]
    assert starts.dtype == np.int64 and starts is not kp.part_starts()  # a fresh array each call


def test_flip_indices_are_an_involution_matching_reference():
    fi = kp.flip_indices_array()
    assert fi.tolist() == META["flip_indices"]
    np.testing.assert_array_equal(fi[fi], np.arange(133))
    assert [list(p) for p in kp.flip_pairs()] == META["flip_pairs"]
    assert len(kp.flip_pairs()) == 61
    self_symmetric = [i for i in range(133) if fi[i] == i]
    assert self_symmetric == [0, 31, 50, 51, 52, 53, 56, 74, 80, 85, 89]
    # names of mirrored hand/foot/body points swap left <-> right
    for i, j in kp.flip_pairs():
        a, b = kp.KEYPOINT_NAMES[i], kp.KEYPOINT_NAMES[j]
        if a.startswith("left_"):
            assert b == "right_" + a[len("left_") :]


def test_sigmas_and_skeleton():
    s = kp.sigmas_array()
    np.testing.assert_array_equal(s, np.asarray(META["sigmas"]))
    assert s[0] == 0.026 and s[11] == 0.107 and s[17] == 0.068
    np.testing.assert_array_equal(s[91:112], s[112:133])
    assert [list(link) for link in kp.SKELETON] == META["skeleton"]
    assert len(kp.SKELETON) == 65
    assert list(kp.UPPER_BODY_IDS) == META["upper_body_ids"]
    assert list(kp.LOWER_BODY_IDS) == META["lower_body_ids"]


def test_colours_and_part_lookup():
    c = kp.keypoint_colors()
    assert c.shape == (133, 3) and c.dtype == np.uint8
    assert tuple(c[100]) == kp.PART_COLORS["lefthand"]
    assert kp.part_of(0) == "body" and kp.part_of(22) == "foot" and kp.part_of(132) == "righthand"
    with pytest.raises(IndexError):
        kp.part_of(133)

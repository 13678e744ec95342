"""COCO-WholeBody v1.0 keypoint specification: the 133 keypoints as MMPose and xtcocotools define them.

Source: MMPose ``configs/_base_/datasets/coco_wholebody.py`` (identical in v0.29.0 and v1.3.2) and the official
COCO-WholeBody evaluation (``evaluation/myeval_wholebody.py``). Order: body 0-16 (COCO), feet 17-22, face 23-90
(68-point 300W layout), left hand 91-111, right hand 112-132. Every constant here is checked against the reference
facts in ``tests/test_keypoints.py``.
"""

from __future__ import annotations

import numpy as np

NUM_KEYPOINTS = 133

#: Parts in evaluation order, with their keypoint index ranges ``[start, stop)``.
PART_SLICES: dict[str, slice] = {
    "body": slice(0, 17),
    "foot": slice(17, 23),
    "face": slice(23, 91),
    "lefthand": slice(91, 112),
    "righthand": slice(112, 133),
}

#: Annotation/result json field of each part, in the order MMPose concatenates them into 133 keypoints.
PART_FIELDS: dict[str, str] = {
    "body": "keypoints",
    "foot": "foot_kpts",
    "face": "face_kpts",
    "lefthand": "lefthand_kpts",
    "righthand": "righthand_kpts",
}

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_big_toe",
    "left_small_toe",
    "left_heel",
    "right_big_toe",
    "right_small_toe",
    "right_heel",
    "face-0",
    "face-1",
    "face-2",
    "face-3",
    "face-4",
    "face-5",
    "face-6",
    "face-7",
    "face-8",
    "face-9",
    "face-10",
    "face-11",
    "face-12",
    "face-13",
    "face-14",
    "face-15",
    "face-16",
    "face-17",
    "face-18",
    "face-19",
    "face-20",
    "face-21",
    "face-22",
    "face-23",
    "face-24",
    "face-25",
    "face-26",
    "face-27",
    "face-28",
    "face-29",
    "face-30",
    "face-31",
    "face-32",
    "face-33",
    "face-34",
    "face-35",
    "face-36",
    "face-37",
    "face-38",
    "face-39",
    "face-40",
    "face-41",
    "face-42",
    "face-43",
    "face-44",
    "face-45",
    "face-46",
    "face-47",
    "face-48",
    "face-49",
    "face-50",
    "face-51",
    "face-52",
    "face-53",
    "face-54",
    "face-55",
    "face-56",
    "face-57",
    "face-58",
    "face-59",
    "face-60",
    "face-61",
    "face-62",
    "face-63",
    "face-64",
    "face-65",
    "face-66",
    "face-67",
    "left_hand_root",
    "left_thumb1",
    "left_thumb2",
    "left_thumb3",
    "left_thumb4",
    "left_forefinger1",
    "left_forefinger2",
    "left_forefinger3",
    "left_forefinger4",
    "left_middle_finger1",
    "left_middle_finger2",
    "left_middle_finger3",
    "left_middle_finger4",
    "left_ring_finger1",
    "left_ring_finger2",
    "left_ring_finger3",
    "left_ring_finger4",
    "left_pinky_finger1",
    "left_pinky_finger2",
    "left_pinky_finger3",
    "left_pinky_finger4",
    "right_hand_root",
    "right_thumb1",
    "right_thumb2",
    "right_thumb3",
    "right_thumb4",
    "right_forefinger1",
    "right_forefinger2",
    "right_forefinger3",
    "right_forefinger4",
    "right_middle_finger1",
    "right_middle_finger2",
    "right_middle_finger3",
    "right_middle_finger4",
    "right_ring_finger1",
    "right_ring_finger2",
    "right_ring_finger3",
    "right_ring_finger4",
    "right_pinky_finger1",
    "right_pinky_finger2",
    "right_pinky_finger3",
    "right_pinky_finger4",
)

#: ``FLIP_INDICES[i]`` is the index of keypoint i's mirror image (derived from the metainfo ``swap`` fields).
FLIP_INDICES: tuple[int, ...] = (
    0,
    2,
    1,
    4,
    3,
    6,
    5,
    8,
    7,
    10,
    9,
    12,
    11,
    14,
    13,
    16,
    15,
    20,
    21,
    22,
    17,
    18,
    19,
    39,
    38,
    37,
    36,
    35,
    34,
    33,
    32,
    31,
    30,
    29,
    28,
    27,
    26,
    25,
    24,
    23,
    49,
    48,
    47,
    46,
    45,
    44,
    43,
    42,
    41,
    40,
    50,
    51,
    52,
    53,
    58,
    57,
    56,
    55,
    54,
    68,
    67,
    66,
    65,
    70,
    69,
    62,
    61,
    60,
    59,
    64,
    63,
    77,
    76,
    75,
    74,
    73,
    72,
    71,
    82,
    81,
    80,
    79,
    78,
    87,
    86,
    85,
    84,
    83,
    90,
    89,
    88,
    112,
    113,
    114,
    115,
    116,
    117,
    118,
    119,
    120,
    121,
    122,
    123,
    124,
    125,
    126,
    127,
    128,
    129,
    130,
    131,
    132,
    91,
    92,
    93,
    94,
    95,
    96,
    97,
    98,
    99,
    100,
    101,
    102,
    103,
    104,
    105,
    106,
    107,
    108,
    109,
    110,
    111,
)

#: OKS sigmas per part (``vars = (2 * sigma) ** 2`` in COCOeval); both hands share one list.
# fmt: off
_BODY_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107,
    0.107, 0.087, 0.087, 0.089, 0.089,
)
_FOOT_SIGMAS = (
    0.068, 0.066, 0.066, 0.092, 0.094, 0.094,
)
_FACE_SIGMAS = (
    0.042, 0.043, 0.044, 0.043, 0.04, 0.035, 0.031, 0.025, 0.02, 0.023, 0.029, 0.032,
    0.037, 0.038, 0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011,
    0.011, 0.013, 0.015, 0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.01,
    0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.01, 0.034,
    0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.01, 0.008, 0.009, 0.009, 0.009, 0.007,
    0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008,
)
_HAND_SIGMAS = (
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022,
    0.026, 0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031,
)
# fmt: on

#: OKS sigmas of all 133 keypoints, in keypoint order.
SIGMAS: tuple[float, ...] = _BODY_SIGMAS + _FOOT_SIGMAS + _FACE_SIGMAS + _HAND_SIGMAS + _HAND_SIGMAS

#: 65 skeleton links (index pairs) used for drawing; the face has none.
SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (15, 17),
    (15, 18),
    (15, 19),
    (16, 20),
    (16, 21),
    (16, 22),
    (91, 92),
    (92, 93),
    (93, 94),
    (94, 95),
    (91, 96),
    (96, 97),
    (97, 98),
    (98, 99),
    (91, 100),
    (100, 101),
    (101, 102),
    (102, 103),
    (91, 104),
    (104, 105),
    (105, 106),
    (106, 107),
    (91, 108),
    (108, 109),
    (109, 110),
    (110, 111),
    (112, 113),
    (113, 114),
    (114, 115),
    (115, 116),
    (112, 117),
    (117, 118),
    (118, 119),
    (119, 120),
    (112, 121),
    (121, 122),
    (122, 123),
    (123, 124),
    (112, 125),
    (125, 126),
    (126, 127),
    (127, 128),
    (112, 129),
    (129, 130),
    (130, 131),
    (131, 132),
)

#: MMPose ``type='upper'`` ids (0-10) and ``type='lower'`` ids (11-22); face and hands have no type.
UPPER_BODY_IDS: tuple[int, ...] = tuple(range(0, 11))
LOWER_BODY_IDS: tuple[int, ...] = tuple(range(11, 23))

#: ``joint_weights = [1.] * 133`` in the metainfo (not used by the recipes: use_different_joint_weights=False).
JOINT_WEIGHTS: tuple[float, ...] = (1.0,) * NUM_KEYPOINTS

#: RGB colour per part for drawing.
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "body": (51, 153, 255),
    "foot": (255, 128, 0),
    "face": (255, 255, 255),
    "lefthand": (0, 255, 0),
    "righthand": (255, 51, 255),
}


def flip_pairs() -> list[tuple[int, int]]:
    """Return the 61 left/right pairs ``(i, j)`` with ``i < j`` derived from :data:`FLIP_INDICES`."""
    return [(i, j) for i, j in enumerate(FLIP_INDICES) if i < j]


def part_of(index: int) -> str:
    """Return the part name ('body', 'foot', 'face', 'lefthand', 'righthand') of a keypoint index."""
    for name, sl in PART_SLICES.items():
        if sl.start <= index < sl.stop:
            return name
    raise IndexError(f"keypoint index {index} is outside 0..{NUM_KEYPOINTS - 1}")


def keypoint_colors() -> np.ndarray:
    """Return a (133, 3) uint8 array with each keypoint's part colour (RGB)."""
    colors = np.zeros((NUM_KEYPOINTS, 3), dtype=np.uint8)
    for name, sl in PART_SLICES.items():
        colors[sl] = PART_COLORS[name]
    return colors


def sigmas_array() -> np.ndarray:
    """Return the 133 OKS sigmas as a float64 array."""
    return np.asarray(SIGMAS, dtype=np.float64)


def flip_indices_array() -> np.ndarray:
    """Return the flip indices as an int64 array."""
    return np.asarray(FLIP_INDICES, dtype=np.int64)

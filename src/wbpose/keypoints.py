"""COCO-WholeBody v1.0 keypoint specification: the 133 keypoints as MMPose and xtcocotools define them.

Source: MMPose ``configs/_base_/datasets/coco_wholebody.py`` (identical in v0.29.0 and v1.3.2) and the official
COCO-WholeBody evaluation (``evaluation/myeval_wholebody.py``). Order: body 0-16 (COCO), feet 17-22, face 23-90
(68-point 300W layout), left hand 91-111, right hand 112-132. Every constant here is checked against the reference
facts in ``tests/test_keypoints.py``.

The long literal tables (names, flip indices, sigmas, skeleton) live in :mod:`wbpose.keypoint_tables` and are
re-exported here: import every name from this module.
"""

from __future__ import annotations

import numpy as np

from wbpose.keypoint_tables import FLIP_INDICES, KEYPOINT_NAMES, SIGMAS, SKELETON

__all__ = [
    "FLIP_INDICES",
    "JOINT_WEIGHTS",
    "KEYPOINT_NAMES",
    "LOWER_BODY_IDS",
    "NUM_KEYPOINTS",
    "PART_COLORS",
    "PART_FIELDS",
    "PART_SLICES",
    "SIGMAS",
    "SKELETON",
    "UPPER_BODY_IDS",
    "flip_indices_array",
    "flip_pairs",
    "keypoint_colors",
    "part_of",
    "part_starts",
    "sigmas_array",
]

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


def part_starts() -> np.ndarray:
    """The first keypoint of each part, ascending: ``[0, 17, 23, 91, 112]`` (int64)."""
    return np.array(sorted(sl.start for sl in PART_SLICES.values()), dtype=np.int64)


def sigmas_array() -> np.ndarray:
    """Return the 133 OKS sigmas as a float64 array."""
    return np.asarray(SIGMAS, dtype=np.float64)


def flip_indices_array() -> np.ndarray:
    """Return the flip indices as an int64 array."""
    return np.asarray(FLIP_INDICES, dtype=np.int64)

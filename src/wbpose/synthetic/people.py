"""Articulated 2-D people for the synthetic COCO-WholeBody stand-in: the figure model that places all 133 keypoints.

A figure is built in a body frame (unit = body height ``H``, origin at the mid-hip, y down, the person's left
along +x, i.e. facing the camera) and then rotated, scaled and translated into the image. Proportions follow
common anthropometric ratios: head (crown to chin) ``H/7.3``, face landmarks about ``H/10`` wide, hands about
``H/10`` long, shoulders ``0.24 H`` apart, hips at ``0.49 H`` above the ground.

- Body: torso lean, shoulder tilt, arm abduction and elbow flexion, hip abduction and knee flexion within
  human-ish limits, with some foreshortening of the limbs (out-of-plane motion).
- Feet: heel under the ankle, the toes pointing down and outwards; the big toe is on the medial side.
- Face: a 68-point 300W template with depth (``FACE_TEMPLATE``), rotated in 3-D (yaw, pitch) and rolled in the
  image plane, with expression changes (mouth opening, smile, raised brows). Ears hide behind the head at
  large yaw.
- Hands: 21 joints (root + 4 per finger, thumb to pinky); each finger curls by flexing its three joints out of
  the image plane, which shortens its projection. Left and right hands are mirror images (thumbs lateral),
  so a horizontally flipped figure is again a valid figure with its left/right labels swapped.

The renderer lives in :mod:`wbpose.synthetic.draw`, the scene and its labels in
:mod:`wbpose.synthetic.scene`, the files in :mod:`wbpose.synthetic.generate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Face-template unit (half the jaw width) and hand length, as fractions of the body height.
FACE_UNIT = 0.052
HAND_LENGTH = 0.1

#: Head ellipse in face-template units: centre (x, y, z) and semi-axes (x, y).
HEAD_CENTER = np.array([0.0, -0.3, -0.5])
HEAD_AXES = np.array([1.05, 1.32])
#: Left and right ear positions (x, y, z) in face-template units.
EAR_TEMPLATE = np.array([[1.08, -0.25, -0.35], [-1.08, -0.25, -0.35]])


def _face_template() -> np.ndarray:
    """Return the 68 mean 300W landmarks as (x, y, z); x = person's left, y down, z toward the camera.

    Shape:
        out: (68, 3)
    """
    a = np.pi * np.linspace(0.0, 1.0, 17)
    jaw = np.stack([-np.cos(a) * (1 - 0.08 * np.sin(a) ** 4), -0.15 + 1.15 * np.sin(a), 0.8 * np.sin(a) - 0.45], 1)
    bx = np.linspace(-0.85, -0.18, 5)
    brow_r = np.stack([bx, -0.58 - 0.12 * np.sin(np.pi * (bx + 0.85) / 0.8), 0.25 - 0.3 * bx**2], 1)
    brow_l = brow_r[::-1] * [-1, 1, 1]
    bridge = np.stack([np.zeros(4), np.linspace(-0.45, 0.08, 4), np.linspace(0.3, 0.7, 4)], 1)
    nx = np.array([-0.22, -0.11, 0.0, 0.11, 0.22])
    nostrils = np.stack([nx, [0.2, 0.24, 0.26, 0.24, 0.2], 0.5 - 3 * nx**2], 1)
    eye_r = np.array([[-0.72, -0.3], [-0.55, -0.38], [-0.36, -0.38], [-0.2, -0.3], [-0.36, -0.23], [-0.55, -0.23]])
    eye_l = eye_r[[3, 2, 1, 0, 5, 4]] * [-1, 1]
    lips = np.array(
        [[-0.4, 0.56], [-0.26, 0.49], [-0.1, 0.45], [0.0, 0.47], [0.1, 0.45], [0.26, 0.49], [0.4, 0.56],
         [0.26, 0.65], [0.12, 0.69], [0.0, 0.7], [-0.12, 0.69], [-0.26, 0.65],
         [-0.32, 0.56], [-0.11, 0.54], [0.0, 0.545], [0.11, 0.54], [0.32, 0.56], [0.11, 0.58], [0.0, 0.585],
         [-0.11, 0.58]]
    )  # fmt: skip
    eyes = np.concatenate([eye_r, eye_l])
    eyes = np.concatenate([eyes, 0.15 - 0.35 * eyes[:, :1] ** 2], 1)
    lips = np.concatenate([lips, 0.4 - 0.5 * lips[:, :1] ** 2], 1)
    return np.concatenate([jaw, brow_r, brow_l, bridge, nostrils, eyes, lips])


FACE_TEMPLATE = _face_template()

# Hand template (x along the hand axis, y toward the thumb side), unit = hand length.
_THUMB_BASE = np.array([[0.08, 0.12], [0.2, 0.22]])
_FINGER_MCP = np.array([[0.45, 0.12], [0.46, 0.04], [0.44, -0.04], [0.41, -0.11]])
_FINGER_LEN = np.array([0.5, 0.55, 0.5, 0.4])
_FINGER_SPREAD = np.array([8.0, 0.0, -7.0, -15.0])
_SEGMENT_FRAC = np.array([0.45, 0.3, 0.25])
_FLEX_MAX = np.radians([80.0, 100.0, 70.0])


@dataclass
class Figure:
    """One person: its 133 keypoints in image pixels plus the geometry the renderer needs.

    Attributes:
        keypoints: All 133 keypoints in COCO-WholeBody order, image pixels, shape (133, 2).
        height: Body height in pixels.
        head_center: Centre of the head ellipse in pixels, shape (2,).
        head_axes: Semi-axes of the head ellipse in pixels, shape (2,).
        head_angle: Rotation of the head ellipse in degrees (cv2 convention).
        ears: Left and right ear centres in pixels, shape (2, 2).
        ear_hidden: Whether the left/right ear is hidden behind the head, shape (2,).
        hand_shown: Whether the left/right hand is drawn with fingers (else a closed mitten), shape (2,).
        hand_length: Left and right hand lengths in pixels, shape (2,).
        shirt: Torso colour (RGB).
        skin: Skin colour (RGB).
        hair: Hair colour (RGB).
        tint: Per-person brightness factor for the limb palette.
    """

    keypoints: np.ndarray
    height: float
    head_center: np.ndarray
    head_axes: np.ndarray
    head_angle: float
    ears: np.ndarray
    ear_hidden: np.ndarray
    hand_shown: np.ndarray
    hand_length: np.ndarray
    shirt: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    tint: float


def rotate(v: np.ndarray, deg: float | np.ndarray) -> np.ndarray:
    """Rotate 2-D vectors by ``deg`` degrees (clockwise on screen, since y points down).

    Shape:
        v: (..., 2) -> (..., 2)
    """
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    return np.stack([v[..., 0] * c - v[..., 1] * s, v[..., 0] * s + v[..., 1] * c], -1)


def _mixture(rng: np.random.Generator, weights: list[float], ranges: list[tuple[float, float]]) -> float:
    """Draw uniformly from one of several ranges chosen with the given weights."""
    lo, hi = ranges[rng.choice(len(ranges), p=np.asarray(weights) / np.sum(weights))]
    return float(rng.uniform(lo, hi))


def face_points(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pose and deform the face template in 3-D and project it orthographically.

    Returns:
        Face landmarks (68, 2), ears (2, 2), head-centre (2,) in face-template units (x = person's left, y
        down, before the in-plane roll) and whether each ear is hidden behind the head (2,).
    """
    pts = FACE_TEMPLATE.copy()
    mouth_open = rng.uniform(0.0, 0.2) if rng.random() < 0.5 else 0.0
    pts[[55, 56, 57, 58, 59], 1] += mouth_open
    pts[[65, 66, 67], 1] += 0.95 * mouth_open
    smile = rng.uniform(-0.05, 0.08)
    corners = [48, 54, 60, 64]
    pts[corners, 1] += mouth_open / 2 - smile
    pts[corners, 0] *= 1 + smile
    pts[17:27, 1] -= rng.uniform(-0.04, 0.08)
    yaw = np.radians(rng.normal(0.0, 14.0) if rng.random() < 0.85 else rng.uniform(-40.0, 40.0))
    pitch = np.radians(rng.normal(0.0, 6.0))
    allp = np.concatenate([pts, EAR_TEMPLATE, HEAD_CENTER[None]])
    x = allp[:, 0] * np.cos(yaw) + allp[:, 2] * np.sin(yaw)
    z = -allp[:, 0] * np.sin(yaw) + allp[:, 2] * np.cos(yaw)
    y = allp[:, 1] * np.cos(pitch) - z * np.sin(pitch)
    xy = np.stack([x, y], 1)
    ears, center = xy[68:70], xy[70]
    # An ear is hidden once its centre falls inside the head outline (it turned behind the skull).
    rel = (ears - center) / HEAD_AXES
    hidden = np.hypot(rel[:, 0], rel[:, 1]) < 0.97
    return xy[:68], ears, center, hidden


def hand_points(rng: np.random.Generator, curl: float) -> np.ndarray:
    """Return the 21 hand joints in hand-template units (x along the hand, y toward the thumb).

    Each finger flexes its three joints by ``curl`` (0 open .. 1 fist, jittered per finger) about an axis in the
    image plane; the orthographic projection shortens the finger and folds its tip back toward the palm.

    Shape:
        out: (21, 2)
    """
    out = np.zeros((21, 2))
    curls = np.clip(curl + rng.normal(0.0, 0.12, 5), 0.0, 1.0)
    thumb_dir = rotate(np.array([0.6, 0.8]), rng.normal(0.0, 8.0))
    out[1:3] = _THUMB_BASE + rng.normal(0.0, 0.01, (2, 2))
    seg = np.array([0.14, 0.11]) * np.cos(np.cumsum([0.6, 0.8]) * curls[0])
    out[3] = out[2] + seg[0] * thumb_dir
    out[4] = out[3] + seg[1] * rotate(thumb_dir, -25.0 * curls[0])
    for f in range(4):
        angles = np.cumsum(_FLEX_MAX * curls[f + 1])
        proj = np.cumsum(_FINGER_LEN[f] * _SEGMENT_FRAC * np.cos(angles))
        direction = rotate(np.array([1.0, 0.0]), _FINGER_SPREAD[f] + rng.normal(0.0, 3.0))
        base = _FINGER_MCP[f]
        out[5 + 4 * f] = base
        out[6 + 4 * f : 9 + 4 * f] = base + proj[:, None] * direction
    return out


def _arm(rng: np.random.Generator, shoulder: np.ndarray, down: np.ndarray, side: int) -> tuple[np.ndarray, ...]:
    """Sample an arm: returns elbow, wrist and the forearm direction (body-frame units)."""
    abduction = _mixture(rng, [0.5, 0.1, 0.25, 0.15], [(5, 35), (-35, 5), (35, 100), (100, 170)])
    upper_dir = rotate(down, -side * abduction)
    elbow = shoulder + upper_dir * 0.17 * rng.uniform(0.75, 1.0)
    flex = _mixture(rng, [0.4, 0.6], [(0, 20), (20, 145)]) * (1 if rng.random() < 0.6 else -1)
    fore_dir = rotate(upper_dir, side * flex)
    wrist = elbow + fore_dir * 0.15 * rng.uniform(0.6, 1.0)
    return elbow, wrist, fore_dir


def _leg(rng: np.random.Generator, hip: np.ndarray, side: int) -> tuple[np.ndarray, ...]:
    """Sample a leg: returns knee, ankle, heel, big toe and small toe (body-frame units)."""
    abduction = _mixture(rng, [0.7, 0.25, 0.05], [(0, 12), (12, 40), (-8, 0)])
    thigh_dir = rotate(np.array([0.0, 1.0]), -side * abduction)
    knee = hip + thigh_dir * 0.23 * (rng.uniform(0.9, 1.0) if rng.random() < 0.85 else rng.uniform(0.5, 0.9))
    flex = _mixture(rng, [0.7, 0.3], [(0, 10), (10, 70)]) * (1 if rng.random() < 0.5 else -1)
    shank_dir = rotate(thigh_dir, side * flex)
    ankle = knee + shank_dir * 0.22 * rng.uniform(0.85, 1.0)
    heel = ankle + shank_dir * 0.035
    foot_dir = rotate(shank_dir, -side * rng.uniform(25.0, 75.0))
    normal = np.array([-foot_dir[1], foot_dir[0]])
    medial = normal if normal @ np.array([-side, 1.0]) > 0 else -normal
    length = rng.uniform(0.09, 0.12)
    big_toe = heel + foot_dir * length + medial * 0.02
    small_toe = heel + foot_dir * length * 0.8 - medial * 0.025
    return knee, ankle, heel, big_toe, small_toe


def _place_torso(rng: np.random.Generator, kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample the torso lean, shoulders and hips into ``kp`` (body frame); return the body's up axis and the neck."""
    up = rotate(np.array([0.0, -1.0]), rng.normal(0.0, 7.0))
    across = np.array([-up[1], up[0]])  # toward the person's left
    neck = up * 0.33 * (rng.uniform(0.95, 1.0) if rng.random() < 0.9 else rng.uniform(0.75, 0.95))
    shoulder_axis = rotate(across, rng.normal(0.0, 4.0)) * rng.uniform(0.105, 0.125)
    kp[5], kp[6] = neck + shoulder_axis, neck - shoulder_axis
    hip_half = rng.uniform(0.075, 0.09)
    kp[11], kp[12] = np.array([hip_half, 0.0]), np.array([-hip_half, 0.0])
    return up, neck


def _place_arms(rng: np.random.Generator, kp: np.ndarray, up: np.ndarray, height: float) -> np.ndarray:
    """Sample both arms and hands into ``kp`` (body frame); return the left and right hand lengths in pixels."""
    hand_length = np.zeros(2)
    for side, (sh, el, wr) in ((1, (5, 7, 9)), (-1, (6, 8, 10))):
        kp[el], kp[wr], fore_dir = _arm(rng, kp[sh], -up, side)
        hand = hand_points(rng, _mixture(rng, [0.6, 0.3, 0.1], [(0.0, 0.25), (0.25, 0.6), (0.6, 0.9)]))
        axis = rotate(fore_dir, rng.normal(0.0, 18.0))
        thumb = -side * np.array([-axis[1], axis[0]])
        length = HAND_LENGTH * rng.uniform(0.92, 1.08)
        hand_length[(1 - side) // 2] = length * height
        root = kp[wr] + fore_dir * 0.012
        start = 91 if side == 1 else 112
        kp[start : start + 21] = root + length * (hand[:, :1] * axis + hand[:, 1:] * thumb)
    return hand_length


def _place_legs(rng: np.random.Generator, kp: np.ndarray) -> None:
    """Sample both legs and feet into ``kp`` (body frame)."""
    for side, (hp, kn, an, ft) in ((1, (11, 13, 15, 17)), (-1, (12, 14, 16, 20))):
        kp[kn], kp[an], heel, big, small = _leg(rng, kp[hp], side)
        kp[ft : ft + 3] = big, small, heel


@dataclass
class _Head:
    """The face frame in the body frame (``origin + unit * (x * fx + y * fy)``) and the head in face units."""

    origin: np.ndarray
    unit: float
    fx: np.ndarray  # face x axis (toward the person's left)
    fy: np.ndarray  # face y axis (down the face)
    ears: np.ndarray  # (2, 2) left and right ear, face-template units
    center: np.ndarray  # (2,) head-ellipse centre, face-template units
    ear_hidden: np.ndarray  # (2,) whether each ear is hidden behind the head

    def to_body(self, p: np.ndarray) -> np.ndarray:
        """Face-template units -> body frame."""
        return self.origin + self.unit * (p[..., :1] * self.fx + p[..., 1:] * self.fy)


def _place_head(rng: np.random.Generator, kp: np.ndarray, up: np.ndarray, neck: np.ndarray) -> _Head:
    """Sample the head tilt, size and face into ``kp`` (face, nose, eyes and ears; body frame)."""
    # Face frame: x toward the person's left, y down the face, rolled by the head tilt.
    tilt = rng.normal(0.0, 10.0)
    head_up = rotate(up, tilt)
    fx, fy = np.array([-head_up[1], head_up[0]]), -head_up
    unit = FACE_UNIT * rng.uniform(0.93, 1.07)
    origin = neck + head_up * (0.035 + unit)
    face, ears, center, ear_hidden = face_points(rng)
    head = _Head(origin=origin, unit=unit, fx=fx, fy=fy, ears=ears, center=center, ear_hidden=ear_hidden)
    kp[23:91] = head.to_body(face)
    kp[0] = kp[23 + 30]
    kp[1], kp[2] = kp[23 + 42 : 23 + 48].mean(0), kp[23 + 36 : 23 + 42].mean(0)
    kp[3], kp[4] = head.to_body(ears)
    return head


def sample_figure(
    rng: np.random.Generator, anchor_xy: np.ndarray, height: float, angle_deg: float, palette: dict
) -> Figure:
    """Sample one person in a random pose and place it in the image.

    Args:
        rng: Random generator (the only source of randomness).
        anchor_xy: Image position of the mid-hip.
        height: Body height in pixels.
        angle_deg: In-plane rotation of the whole figure.
        palette: Colour choices with keys ``shirts``, ``skins`` and ``hairs`` (lists of RGB tuples).

    Returns:
        The figure with its 133 keypoints in image pixels.
    """
    kp = np.zeros((133, 2))
    # The draw order below fixes the random stream: it must not change (generated datasets are seeded).
    up, neck = _place_torso(rng, kp)
    hand_length = _place_arms(rng, kp, up, height)
    _place_legs(rng, kp)
    head = _place_head(rng, kp, up, neck)

    def to_img(p: np.ndarray) -> np.ndarray:  # body frame -> image: rotate, scale, translate
        return anchor_xy + height * rotate(p, angle_deg)

    hand_shown = rng.random(2) > 0.08
    return Figure(
        keypoints=to_img(kp),
        height=height,
        head_center=to_img(head.to_body(head.center)),
        head_axes=HEAD_AXES * head.unit * height,
        head_angle=float(np.degrees(np.arctan2(head.fx[1], head.fx[0])) + angle_deg),
        ears=to_img(head.to_body(head.ears)),
        ear_hidden=head.ear_hidden,
        hand_shown=hand_shown,
        hand_length=hand_length,
        shirt=palette["shirts"][rng.integers(len(palette["shirts"]))],
        skin=palette["skins"][rng.integers(len(palette["skins"]))],
        hair=palette["hairs"][rng.integers(len(palette["hairs"]))],
        tint=float(rng.uniform(0.85, 1.1)),
    )

"""Rendering of the synthetic people and backgrounds (cv2 drawing with sub-pixel precision).

Every keypoint sits on a structure that marks it in the pixels: limb capsules end at their joints and change
colour there, joints carry small dots, the jaw line's hue changes along the contour, eyes, brows, nose and lips
are drawn through their landmarks, each finger has its own colour with dots at the joints (white at the tips),
and each foot has marks at the heel and the two toes. Left and right limbs have different colours. All
shapes are drawn anti-aliased at 1/16 pixel precision (cv2 ``shift=4``), so the drawn structure lies where
the float keypoint is (pixel centres at integer coordinates, the convention of cv2 and MMPose).

A :class:`Painter` draws one person on its own canvas together with an alpha mask (the silhouette) and a layer
map (1 = body and head, 2 = arms and hands, which are drawn on top), so that the scene can composite people in
depth order and tell which keypoints another person or the person's own arm covers.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from wbpose.synthetic.people import Figure, rotate

_SHIFT = 4
_SCALE = 1 << _SHIFT
_OUTLINE = (25, 25, 25)

RGB = tuple[int, int, int]

#: Limb colours (RGB) of the person's left and right sides.
SIDE_COLORS: dict[str, dict[str, RGB]] = {
    "left": {"upper_arm": (40, 180, 70), "forearm": (140, 230, 70), "thigh": (40, 90, 215),
             "shank": (80, 190, 240), "shoe": (25, 45, 120), "palm": (150, 215, 150)},
    "right": {"upper_arm": (205, 45, 45), "forearm": (245, 150, 50), "thigh": (150, 50, 200),
              "shank": (235, 140, 225), "shoe": (110, 25, 40), "palm": (225, 160, 205)},
}  # fmt: skip
#: Finger colours (RGB), thumb to pinky.
FINGER_COLORS: tuple[RGB, ...] = ((230, 40, 40), (250, 150, 0), (240, 230, 40), (40, 200, 90), (40, 120, 250))
#: Colour choices for :func:`wbpose.synthetic.people.sample_figure`.
PALETTE: dict[str, list[RGB]] = {
    "shirts": [(90, 90, 95), (200, 200, 190), (60, 60, 120), (130, 90, 60), (40, 40, 40), (170, 140, 110)],
    "skins": [(241, 194, 167), (224, 172, 120), (198, 140, 90), (141, 95, 60), (255, 219, 180)],
    "hairs": [(40, 30, 20), (90, 60, 30), (20, 20, 20), (150, 110, 60), (200, 180, 130)],
}


def _bgr(color: RGB, factor: float = 1.0) -> tuple[int, int, int]:
    """Return an RGB colour as a cv2 BGR tuple, scaled by ``factor``."""
    return tuple(int(min(255, c * factor)) for c in color[::-1])


class Painter:
    """Draws one person on a canvas covering ``[x0, x0 + width) x [y0, y0 + height)`` of the image.

    Args:
        x0: Left image column of the canvas.
        y0: Top image row of the canvas.
        width: Canvas width in pixels.
        height: Canvas height in pixels.
        outline: Width in pixels of the dark outline around each shape.
    """

    def __init__(self, x0: int, y0: int, width: int, height: int, outline: int = 1) -> None:
        self.origin = np.array([x0, y0], dtype=np.float64)
        self.canvas = np.zeros((height, width, 3), np.uint8)
        self.alpha = np.zeros((height, width), np.uint8)
        self.layer = np.zeros((height, width), np.uint8)
        self.layer_id = 1
        self.outline = outline

    def _fx(self, pts: np.ndarray) -> np.ndarray:
        """Image points (N, 2) -> canvas fixed-point int32 (N, 2)."""
        return np.round((np.asarray(pts, np.float64).reshape(-1, 2) - self.origin) * _SCALE).astype(np.int32)

    def _mask(self, draw: Callable[[np.ndarray, int, int], object]) -> None:
        """Apply a silhouette drawing call ``draw(image, value, line_type)`` to the alpha mask and layer map."""
        draw(self.alpha, 255, cv2.LINE_AA)
        draw(self.layer, self.layer_id, cv2.LINE_8)

    def capsule(self, p0: np.ndarray, p1: np.ndarray, width: float, color: RGB, factor: float = 1.0) -> None:
        """Draw a limb: a thick line with round caps and a dark outline."""
        a, b = (tuple(p) for p in self._fx([p0, p1]).tolist())
        w = max(1, int(round(width)))
        wo = w + 2 * self.outline
        self._mask(lambda img, c, lt: cv2.line(img, a, b, c, wo, lt, _SHIFT))
        cv2.line(self.canvas, a, b, _OUTLINE, wo, cv2.LINE_AA, _SHIFT)
        cv2.line(self.canvas, a, b, _bgr(color, factor), w, cv2.LINE_AA, _SHIFT)

    def polygon(self, pts: np.ndarray, color: RGB, factor: float = 1.0, silhouette: bool = True) -> None:
        """Draw a filled polygon; a silhouette shape gets a dark outline, a detail (``silhouette=False``) none."""
        p = [self._fx(pts)]
        cv2.fillPoly(self.canvas, p, _bgr(color, factor), cv2.LINE_AA, _SHIFT)
        if silhouette:
            self._mask(lambda img, c, lt: cv2.fillPoly(img, p, c, lt, _SHIFT))
            self._mask(lambda img, c, lt: cv2.polylines(img, p, True, c, self.outline, lt, _SHIFT))
            cv2.polylines(self.canvas, p, True, _OUTLINE, self.outline, cv2.LINE_AA, _SHIFT)

    def ellipse(self, center: np.ndarray, axes: np.ndarray, angle: float, color: RGB) -> None:
        """Draw a filled ellipse (semi-axes ``axes``, rotated by ``angle`` degrees) with a dark outline."""
        c = tuple(self._fx(center)[0].tolist())
        ax = tuple(np.round(np.asarray(axes) * _SCALE).astype(int).tolist())
        self._mask(lambda img, col, lt: cv2.ellipse(img, c, ax, angle, 0, 360, col, -1, lt, _SHIFT))
        self._mask(lambda img, col, lt: cv2.ellipse(img, c, ax, angle, 0, 360, col, self.outline, lt, _SHIFT))
        cv2.ellipse(self.canvas, c, ax, angle, 0, 360, _bgr(color), -1, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(self.canvas, c, ax, angle, 0, 360, _OUTLINE, self.outline, cv2.LINE_AA, _SHIFT)

    def line(self, pts: np.ndarray, color: RGB | list[RGB], thickness: float = 1.0, silhouette: bool = False) -> None:
        """Draw an open polyline without outline; one colour per segment if ``color`` is a list."""
        p = [tuple(q) for q in self._fx(pts).tolist()]
        th = max(1, int(round(thickness)))
        colors = color if isinstance(color, list) else [color] * (len(p) - 1)
        for a, b, col in zip(p[:-1], p[1:], colors):
            cv2.line(self.canvas, a, b, _bgr(col), th, cv2.LINE_AA, _SHIFT)
            if silhouette:
                self._mask(lambda img, c, lt, a=a, b=b: cv2.line(img, a, b, c, th, lt, _SHIFT))

    def dots(self, pts: np.ndarray, radius: float, color: RGB, silhouette: bool = False) -> None:
        """Draw small filled discs (landmark marks) at each point."""
        r = max(_SCALE // 2, int(round(radius * _SCALE)))
        for p in self._fx(pts).tolist():
            cv2.circle(self.canvas, tuple(p), r, _bgr(color), -1, cv2.LINE_AA, _SHIFT)
            if silhouette:
                self._mask(lambda img, c, lt, p=p: cv2.circle(img, tuple(p), r, c, -1, lt, _SHIFT))

    def composite(self, image: np.ndarray) -> None:
        """Alpha-blend the canvas onto its region of ``image`` (BGR uint8, modified in place)."""
        x0, y0 = self.origin.astype(int)
        h, w = self.alpha.shape
        region = image[y0 : y0 + h, x0 : x0 + w]
        a = self.alpha[..., None].astype(np.float32) * (1.0 / 255.0)
        region[:] = (self.canvas * a + region * (1.0 - a) + 0.5).astype(np.uint8)


def _unit(v: np.ndarray) -> np.ndarray:
    """Normalise a 2-D vector."""
    return v / max(float(np.hypot(*v)), 1e-9)


def _draw_body(p: Painter, fig: Figure) -> None:
    """Legs, feet, torso, neck (layer 1)."""
    kp, h, t = fig.keypoints, fig.height, fig.tint
    for side, (hip, knee, ankle, foot) in (("right", (12, 14, 16, 20)), ("left", (11, 13, 15, 17))):
        col = SIDE_COLORS[side]
        p.capsule(kp[hip], kp[knee], 0.085 * h, col["thigh"], t)
        p.capsule(kp[knee], kp[ankle], 0.06 * h, col["shank"], t)
        big, small, heel = kp[foot : foot + 3]
        n = 0.022 * h * _unit(np.array([-(big - heel)[1], (big - heel)[0]]))
        p.polygon(np.stack([kp[ankle] + n, heel + n, heel - n, small, big, kp[ankle] - n]), col["shoe"], t)
        p.dots(heel[None], 0.014 * h, (200, 200, 200))
        p.dots(big[None], 0.012 * h, (255, 255, 255))
        p.dots(small[None], 0.010 * h, (250, 220, 60))
        p.dots(kp[knee][None], 0.01 * h, (30, 30, 30))
    across = _unit(kp[5] - kp[6])
    down = _unit((kp[11] + kp[12] - kp[5] - kp[6]) / 2)
    torso = [kp[5] + 0.02 * h * across - 0.01 * h * down, kp[6] - 0.02 * h * across - 0.01 * h * down,
             kp[12] - 0.035 * h * across + 0.03 * h * down, kp[11] + 0.035 * h * across + 0.03 * h * down]  # fmt: skip
    p.polygon(np.stack(torso), fig.shirt)
    p.line(kp[[11, 12]], (20, 20, 20), 0.02 * h)
    p.dots(kp[[11, 12]], 0.014 * h, (235, 235, 235))
    chin = kp[23 + 8] + (kp[5] + kp[6] - 2 * kp[23 + 8]) * 0.15
    p.capsule((kp[5] + kp[6]) / 2, chin, 0.05 * h, fig.skin)


def _draw_head(p: Painter, fig: Figure) -> None:
    """Ears, head, hair and the face features (layer 1)."""
    kp = fig.keypoints
    face = kp[23:91]
    unit = fig.head_axes[0] / 1.05
    for ear, hidden in zip(fig.ears, fig.ear_hidden, strict=True):
        if not hidden:
            p.ellipse(ear, unit * np.array([0.18, 0.26]), fig.head_angle, tuple(int(c * 0.85) for c in fig.skin))
    p.ellipse(fig.head_center, fig.head_axes, fig.head_angle, fig.skin)
    a = np.linspace(-np.pi + 0.45, -0.45, 16)
    arc = np.stack([np.cos(a) * fig.head_axes[0], np.sin(a) * fig.head_axes[1]], 1)
    p.polygon(fig.head_center + rotate(arc, fig.head_angle), fig.hair, silhouette=False)
    hues = np.linspace(0, 150, 16).astype(np.uint8)
    jaw_cols = cv2.cvtColor(np.stack([hues, np.full(16, 220, np.uint8), np.full(16, 230, np.uint8)], 1)[None],
                            cv2.COLOR_HSV2RGB)[0]  # fmt: skip
    p.line(face[0:17], [tuple(int(v) for v in c) for c in jaw_cols], 0.1 * unit, silhouette=True)
    p.line(face[17:22], (70, 40, 20), 0.14 * unit)
    p.line(face[22:27], (70, 40, 20), 0.14 * unit)
    for eye in (face[36:42], face[42:48]):
        p.polygon(eye, (250, 250, 250), silhouette=False)
        p.dots(eye.mean(0)[None], 0.07 * unit, (40, 60, 120))
    p.line(face[27:31], tuple(int(c * 0.7) for c in fig.skin), 0.08 * unit)
    p.line(face[31:36], tuple(int(c * 0.55) for c in fig.skin), 0.08 * unit)
    p.polygon(face[48:60], (200, 40, 50), silhouette=False)
    p.polygon(face[60:68], (70, 10, 20), silhouette=False)


def _draw_arms(p: Painter, fig: Figure) -> None:
    """Both arms, then both hands, so that a hand is never hidden by its own arms (layer 2)."""
    kp, h, t = fig.keypoints, fig.height, fig.tint
    for side, (sh, el, wr) in (("right", (6, 8, 10)), ("left", (5, 7, 9))):
        col = SIDE_COLORS[side]
        p.capsule(kp[sh], kp[el], 0.055 * h, col["upper_arm"], t)
        p.capsule(kp[el], kp[wr], 0.045 * h, col["forearm"], t)
        p.dots(kp[[sh, el]], 0.01 * h, (30, 30, 30))
    for k, (side, root) in enumerate((("left", 91), ("right", 112))):
        _draw_hand(p, kp[root : root + 21], fig.hand_length[k], bool(fig.hand_shown[k]), SIDE_COLORS[side]["palm"])


def _draw_hand(p: Painter, hand: np.ndarray, length: float, shown: bool, palm_color: RGB) -> None:
    """A hand: palm polygon, one coloured line per finger with dark joint dots and white tips; or a mitten."""
    axis = _unit(hand[9] - hand[0])
    if not shown:
        angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
        p.ellipse(hand[0] + 0.3 * length * axis, length * np.array([0.32, 0.22]), angle, palm_color)
        return
    thumb = np.array([-axis[1], axis[0]])
    thumb = thumb if thumb @ (hand[1] - hand[0]) > 0 else -thumb
    palm = [hand[0] + 0.1 * length * thumb, hand[1], hand[5] + 0.04 * length * thumb, hand[9], hand[13],
            hand[17] - 0.05 * length * thumb, hand[0] - 0.1 * length * thumb]  # fmt: skip
    p.polygon(np.stack(palm), palm_color)
    for f in range(4, -1, -1):
        chain = hand[[1 + 4 * f, 2 + 4 * f, 3 + 4 * f, 4 + 4 * f]]
        p.line(chain, FINGER_COLORS[f], 0.1 * length, silhouette=True)
        p.dots(chain[:3], 0.035 * length, (30, 30, 30))
        p.dots(chain[3:], 0.04 * length, (255, 255, 255), silhouette=True)
    p.dots(hand[:1], 0.04 * length, (30, 30, 30))


def draw_figure(p: Painter, fig: Figure) -> None:
    """Draw a whole person: body and head on layer 1, then arms and hands on layer 2."""
    p.layer_id = 1
    _draw_body(p, fig)
    _draw_head(p, fig)
    p.layer_id = 2
    _draw_arms(p, fig)


def draw_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Return a cluttered BGR background: a colour gradient, smooth noise, random shapes and a few bars.

    Shape:
        out: (height, width, 3) uint8
    """
    c0, c1 = rng.uniform(40, 220, (2, 3))
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xx * np.cos(ang) + yy * np.sin(ang)) / max(height, width) * 0.5 + 0.5
    img = c0 + (c1 - c0) * ramp[..., None]
    grid = (height // 40 + 2, width // 40 + 2)
    coarse = (rng.normal(0, 10, (*grid, 3)) + rng.normal(0, 16, (*grid, 1))).astype(np.float32)
    img += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    mean = img.reshape(-1, 3).mean(0)
    for _ in range(int(rng.integers(6, 16))):
        col = rng.uniform(0, 255, 3)
        col = col if rng.random() < 0.15 else 0.45 * col + 0.55 * mean
        col = tuple(int(c) for c in col)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.04, 0.3) * max(height, width)
        kind = rng.integers(4)
        if kind == 0:
            axes = (int(size), int(size * rng.uniform(0.3, 1.0)))
            cv2.ellipse(img, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, col, -1, cv2.LINE_AA)
        elif kind == 1:
            box = cv2.boxPoints(((cx, cy), (size, size * rng.uniform(0.3, 1.5)), rng.uniform(0, 90)))
            cv2.fillPoly(img, [np.round(box).astype(np.int32)], col, cv2.LINE_AA)
        elif kind == 2:
            pts = np.round(np.array([cx, cy]) + rng.normal(0, size / 2, (5, 2))).astype(np.int32)
            cv2.fillPoly(img, [cv2.convexHull(pts)], col, cv2.LINE_AA)
        else:
            end = np.array([cx, cy]) + rotate(np.array([1.0, 0.0]), rng.uniform(0, 360)) * size
            cv2.line(img, (int(cx), int(cy)), tuple(int(v) for v in end), col, int(rng.integers(2, 9)),
                     cv2.LINE_AA)  # fmt: skip
    return img


def add_sensor_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Add Gaussian pixel noise (sigma 2-6) to a uint8 image, returning a new uint8 image."""
    noise = rng.normal(0.0, rng.uniform(2.0, 6.0), image.shape).astype(np.float32)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)

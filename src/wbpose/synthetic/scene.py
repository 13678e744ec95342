"""One synthetic image: people placed, drawn in depth order, and labelled the way COCO-WholeBody labels them.

- 1-4 people per image, mostly medium and large in COCO terms, overlapping and sometimes cut by the image
  border. People lower in the image (closer) are drawn later, on top.
- Visibility follows COCO: 0 = not labelled (outside the image, or an ear turned behind the head; x = y = 0),
  1 = labelled but covered (by a person drawn later, or by the person's own arm or hand), 2 = visible.
- A face or hand is labelled (``*_valid``) only when at least half of its points are visible, and then only
  with probability ``PART_LABEL_PROB`` (annotators skipped some, as in the real data); hands drawn as closed
  mittens are never labelled. Invalid parts are all zeros, as in the real files.
- ``area`` is the person's silhouette area in pixels (clipped to the image, before occlusion), ``segmentation``
  its outer contours as polygons, ``bbox`` the tight box around the silhouette and the labelled keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from wbpose.keypoints import PART_SLICES
from wbpose.synthetic.draw import PALETTE, Painter, add_sensor_noise, draw_background, draw_figure
from wbpose.synthetic.people import Figure, sample_figure

#: Probability that an annotator labelled a part that is visible enough.
PART_LABEL_PROB = {"face": 0.88, "lefthand": 0.85, "righthand": 0.85, "foot": 0.95}
#: Probabilities of 1, 2, 3, 4 people in an image.
PEOPLE_PROBS = (0.35, 0.3, 0.2, 0.15)

# Keypoints drawn on the arm layer (shoulders, elbows, wrists, hands); the others are on the body layer.
_ON_ARM_LAYER = np.zeros(133, dtype=np.int64)
_ON_ARM_LAYER[[5, 6, 7, 8, 9, 10]] = 1
_ON_ARM_LAYER[91:133] = 1


@dataclass
class PersonLabel:
    """Labels of one drawn person.

    Attributes:
        keypoints: (133, 3) x, y, v with x = y = 0 where v = 0.
        valid: ``*_valid`` flags for ``face``, ``lefthand``, ``righthand`` and ``foot``.
        bbox: [x, y, w, h] around the silhouette and the labelled keypoints.
        area: Silhouette area in pixels.
        segmentation: Outer contours as flat [x0, y0, x1, y1, ...] polygons.
    """

    keypoints: np.ndarray
    valid: dict[str, bool]
    bbox: list[float]
    area: float
    segmentation: list[list[float]]


def _shift(fig: Figure, dxy: np.ndarray) -> Figure:
    """Translate a figure in the image."""
    return replace(fig, keypoints=fig.keypoints + dxy, head_center=fig.head_center + dxy, ears=fig.ears + dxy)


def _place_people(rng: np.random.Generator, height: int, width: int) -> list[Figure]:
    """Sample 1-4 figures with sizes, positions and overlaps; return them sorted back to front."""
    count = int(rng.choice(len(PEOPLE_PROBS), p=PEOPLE_PROBS)) + 1
    figures: list[Figure] = []
    boxes: list[np.ndarray] = []
    for _ in range(12 * count):
        if len(figures) == count:
            break
        body_h = height * float(np.exp(rng.uniform(np.log(0.33), np.log(0.95))))
        angle = rng.normal(0.0, 6.0) if rng.random() < 0.85 else rng.uniform(-50.0, 50.0)
        fig = sample_figure(rng, np.zeros(2), body_h, angle, PALETTE)
        lo, hi = fig.keypoints.min(0) - 0.04 * body_h, fig.keypoints.max(0) + 0.04 * body_h
        size = hi - lo
        slack = np.where(rng.random() < 0.25, 0.35, 0.0) * size  # allow cutting by the border
        low, high = -lo - slack, np.array([width, height]) - hi + slack
        if np.any(high < low):
            low, high = np.minimum(low, high) - 0.2 * size, np.maximum(low, high) + 0.2 * size
        fig = _shift(fig, rng.uniform(low, high))
        box = np.concatenate([fig.keypoints.min(0), fig.keypoints.max(0)])
        body = fig.keypoints[:17]
        inside = (body >= 0).all(1) & (body[:, 0] <= width - 1) & (body[:, 1] <= height - 1)
        if inside.sum() < 6 or any(_iou(box, b) > 0.45 for b in boxes):
            continue
        figures.append(fig)
        boxes.append(box)
    return sorted(figures, key=lambda f: float(f.keypoints[[15, 16], 1].max()))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9)


def draw_people(image: np.ndarray, figures: list[Figure]) -> tuple[np.ndarray, list[tuple]]:
    """Draw figures back to front; return the owner map and each person's clipped silhouette.

    The owner map holds ``2 * i + layer`` of the last person ``i`` drawn at each pixel (layer 0 = body, 1 =
    arms), or -1 for background.
    """
    height, width = image.shape[:2]
    owner = np.full((height, width), -1, np.int16)
    silhouettes = []
    for i, fig in enumerate(figures):
        margin = 0.12 * fig.height
        x0, y0 = np.floor(np.maximum(fig.keypoints.min(0) - margin, 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(fig.keypoints.max(0) + margin, [width, height])).astype(int)
        painter = Painter(int(x0), int(y0), int(x1 - x0), int(y1 - y0), outline=max(1, round(fig.height / 160)))
        draw_figure(painter, fig)
        painter.composite(image)
        drawn = painter.layer > 0
        owner[y0:y1, x0:x1][drawn] = 2 * i + painter.layer[drawn].astype(np.int16) - 1
        silhouettes.append((int(x0), int(y0), painter.alpha >= 128))
    return owner, silhouettes


def _visibility(fig: Figure, index: int, owner: np.ndarray) -> np.ndarray:
    """COCO visibility (0, 1, 2) of the 133 keypoints of the ``index``-th drawn person."""
    height, width = owner.shape
    xy = fig.keypoints
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
    col = np.clip(np.round(xy[:, 0]).astype(int), 0, width - 1)
    row = np.clip(np.round(xy[:, 1]).astype(int), 0, height - 1)
    covered = owner[row, col] > 2 * index + _ON_ARM_LAYER
    vis = np.where(inside, np.where(covered, 1, 2), 0)
    vis[[3, 4]] = np.where(fig.ear_hidden, 0, vis[[3, 4]])
    return vis


def _part_validity(rng: np.random.Generator, fig: Figure, vis: np.ndarray, probs: dict) -> dict[str, bool]:
    """Decide which parts an annotator would have labelled (see the module docstring)."""
    valid = {}
    for part, shown in (("face", True), ("lefthand", fig.hand_shown[0]), ("righthand", fig.hand_shown[1])):
        seen = float(np.mean(vis[PART_SLICES[part]] == 2))
        valid[part] = bool(shown and seen >= 0.5 and rng.random() < probs[part])
    valid["foot"] = bool(np.any(vis[PART_SLICES["foot"]] > 0) and rng.random() < probs["foot"])
    return valid


def _silhouette_geometry(x0: int, y0: int, mask: np.ndarray) -> tuple[float, list[list[float]], np.ndarray]:
    """Area, polygons and xyxy extent of a silhouette mask placed at (x0, y0)."""
    m = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for c in contours:
        c = cv2.approxPolyDP(c, 1.0, True).reshape(-1, 2)
        if len(c) >= 3:
            polygons.append(np.round(c + [x0, y0], 2).astype(float).reshape(-1).tolist())
    rows, cols = np.nonzero(m)
    extent = np.array([cols.min() + x0, rows.min() + y0, cols.max() + x0, rows.max() + y0], float)
    return float(m.sum()), polygons, extent


def label_person(
    rng: np.random.Generator, fig: Figure, index: int, owner: np.ndarray, sil: tuple, probs: dict
) -> PersonLabel:
    """Build the annotation of one person."""
    vis = _visibility(fig, index, owner)
    valid = _part_validity(rng, fig, vis, probs)
    for part in ("face", "lefthand", "righthand", "foot"):
        if not valid[part]:
            vis[PART_SLICES[part]] = 0
    xy = np.where(vis[:, None] > 0, np.round(fig.keypoints, 2), 0.0)
    area, polygons, extent = _silhouette_geometry(*sil)
    labelled = xy[vis > 0]
    if len(labelled):
        extent = np.concatenate([np.minimum(extent[:2], labelled.min(0)), np.maximum(extent[2:], labelled.max(0))])
    bbox = np.round([extent[0], extent[1], extent[2] - extent[0], extent[3] - extent[1]], 2).tolist()
    return PersonLabel(np.concatenate([xy, vis[:, None]], 1), valid, bbox, area, polygons)


def part_box(keypoints: np.ndarray, hw: tuple[int, int]) -> list[float]:
    """``*_box`` of a part: its labelled points' extent grown by 10 % and clipped to the image, or zeros.

    Shape:
        keypoints: (K, 3) -> [x, y, w, h]
    """
    pts = keypoints[keypoints[:, 2] > 0, :2]
    if len(pts) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.1 * (hi - lo) + 1.0
    lo = np.maximum(lo - pad, 0.0)
    hi = np.minimum(hi + pad, [hw[1] - 1, hw[0] - 1])
    return np.round([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], 2).tolist()


def render_scene(
    rng: np.random.Generator, height: int, width: int, part_label_prob: dict[str, float] | None = None
) -> tuple[np.ndarray, list[PersonLabel]]:
    """Render one image with its people and their labels.

    Args:
        rng: Random generator (the only source of randomness).
        height: Image height.
        width: Image width.
        part_label_prob: Overrides of :data:`PART_LABEL_PROB` (keys face, lefthand, righthand, foot).

    Returns:
        The BGR uint8 image (height, width, 3) and the labels of the people in drawing order.
    """
    image = draw_background(rng, height, width)
    figures = _place_people(rng, height, width)
    owner, silhouettes = draw_people(image, figures)
    probs = {**PART_LABEL_PROB, **(part_label_prob or {})}
    labels = [
        label_person(rng, f, i, owner, s, probs) for i, (f, s) in enumerate(zip(figures, silhouettes, strict=True))
    ]
    return add_sensor_noise(rng, image), labels

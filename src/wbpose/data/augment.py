"""Random training augmentations for top-down crops: flip, half-body, box shift/scale/rotation, photometric.

MMPose 1.x semantics (``mmpose/datasets/transforms/common_transforms.py``: ``RandomFlip``, ``RandomHalfBody``,
``RandomBBoxTransform``, ``Albumentation``), in that order, with a 0.x option for the half-body rule
(docs/conventions.md#augmentation). All randomness comes from the ``numpy.random.Generator`` passed in, which
the dataset seeds per sample from (seed, epoch, index) (``CocoWholeBodyDataset.sample_rng``), so a run, and a run
resumed mid-epoch, draws the same augmentations whatever the worker that builds a sample.

Each transform is ``transform(sample, rng) -> sample`` on a :class:`~wbpose.data.transforms.TopdownSample`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr, ndtri

from wbpose.data.transforms import Compose, TopdownSample
from wbpose.keypoints import FLIP_INDICES, LOWER_BODY_IDS, UPPER_BODY_IDS

_PHI_M1 = float(ndtr(-1.0))
_PHI_P1 = float(ndtr(1.0))


def truncnorm(rng: np.random.Generator, size: int | tuple[int, ...] = ()) -> np.ndarray:
    """Standard normal truncated to [-1, 1] by inverse-CDF sampling (``scipy.stats.truncnorm(-1, 1)``, faster)."""
    return ndtri(rng.uniform(_PHI_M1, _PHI_P1, size))


def flip_sample(sample: TopdownSample, flip_indices: Sequence[int] | np.ndarray = FLIP_INDICES) -> TopdownSample:
    """Mirror the annotations of a sample horizontally (the image is mirrored lazily by the warp).

    ``x' = W - 1 - x`` for keypoints, the box and the centre, keypoints reordered by ``flip_indices``; invisible
    points are mirrored too (1.x; 0.x zeroed them, which changes nothing downstream because their weight is 0).

    Reads/writes: ``keypoints_xy``, ``visible``, ``center_xy``, ``bbox_xyxy``, ``flipped`` (toggled).
    """
    last_x = sample.image_wh[0] - 1
    idx = np.asarray(flip_indices)
    if sample.keypoints_xy is not None:
        kp = sample.keypoints_xy[idx]
        kp[:, 0] = last_x - kp[:, 0]
        sample.keypoints_xy = kp
    if sample.visible is not None:
        sample.visible = sample.visible[idx]
    sample.center_xy = np.array([last_x - sample.center_xy[0], sample.center_xy[1]], dtype=np.float64)
    x1, y1, x2, y2 = sample.bbox_xyxy
    sample.bbox_xyxy = np.array([last_x - x2, y1, last_x - x1, y2], dtype=np.float64)
    sample.flipped = not sample.flipped
    return sample


class RandomFlip:
    """Horizontal flip with probability ``prob`` (MMPose 1.x ``RandomFlip(direction='horizontal')``).

    Reads/writes: see :func:`flip_sample`.

    Args:
        prob: flip probability.
        flip_indices: mirror index of each keypoint.
    """

    def __init__(self, prob: float = 0.5, flip_indices: Sequence[int] = FLIP_INDICES) -> None:
        self.prob = prob
        self.flip_indices = np.asarray(flip_indices, dtype=np.int64)

    def __call__(self, sample: TopdownSample, rng: np.random.Generator) -> TopdownSample:
        if rng.random() < self.prob:
            sample = flip_sample(sample, self.flip_indices)
        return sample


class RandomHalfBody:
    """Zoom on the upper or the lower body (MMPose 1.x ``RandomHalfBody``; ``mode="0.x"`` for the 0.x rule).

    1.x: applies when at least ``min_total_keypoints`` of all K keypoints are visible and ``rand <= prob``; the
    candidates are the visible upper-body ids (0-10) and lower-body ids (11-22: hips, legs, feet; face and hands
    never count); upper is preferred with probability ``upper_prioritized_prob``, falling back to the other half
    when the preferred one has fewer than ``min_upper_keypoints`` / ``min_lower_keypoints`` points, and nothing
    happens when both are short. The new centre is the mean of the chosen points and the scale their extent
    times ``padding``; the aspect ratio is fixed later by the warp. Visibility is unchanged: the weight of points
    outside the new crop is set by :class:`~wbpose.data.transforms.GenerateTarget` (docs/conventions.md#target-weights).

    0.x (``TopDownHalfBodyTransform``): applies when more than ``num_joints_half_body`` (8) of all K keypoints are
    visible and ``rand < prob``; ids 0-10 are upper and *every other* visible id (legs, feet, face, hands) is
    lower; upper is chosen when ``randn < 0.5`` (P ~ 0.69) and it has more than 2 points, else lower if it has
    more than 2, else upper; fewer than 2 chosen points -> no change.

    Reads: ``keypoints_xy``, ``visible``. Writes: ``center_xy``, ``scale_wh``.

    Args:
        min_total_keypoints: 1.x minimum number of visible keypoints (all K).
        min_upper_keypoints: 1.x minimum visible upper-body points for an upper crop.
        min_lower_keypoints: 1.x minimum visible lower-body points for a lower crop.
        padding: scale multiplier of the half-body extent.
        prob: probability of applying when eligible.
        upper_prioritized_prob: 1.x probability of preferring the upper half.
        upper_body_ids: ids of the upper half.
        lower_body_ids: ids of the lower half (1.x only).
        mode: "1.x" (default) or "0.x".
        num_joints_half_body: 0.x eligibility threshold (strictly more visible points than this).
    """

    def __init__(
        self,
        min_total_keypoints: int = 9,
        min_upper_keypoints: int = 2,
        min_lower_keypoints: int = 3,
        padding: float = 1.5,
        prob: float = 0.3,
        upper_prioritized_prob: float = 0.7,
        upper_body_ids: Sequence[int] = UPPER_BODY_IDS,
        lower_body_ids: Sequence[int] = LOWER_BODY_IDS,
        mode: Literal["1.x", "0.x"] = "1.x",
        num_joints_half_body: int = 8,
    ) -> None:
        if mode not in ("1.x", "0.x"):
            raise ValueError(f"RandomHalfBody mode must be '1.x' or '0.x', got {mode!r}")
        self.min_total_keypoints = min_total_keypoints
        self.min_upper_keypoints = min_upper_keypoints
        self.min_lower_keypoints = min_lower_keypoints
        self.padding = padding
        self.prob = prob
        self.upper_prioritized_prob = upper_prioritized_prob
        self.upper_body_ids = np.asarray(upper_body_ids, dtype=np.int64)
        self.lower_body_ids = np.asarray(lower_body_ids, dtype=np.int64)
        self.mode = mode
        self.num_joints_half_body = num_joints_half_body

    def select(self, visible: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """Return the ids of the chosen half, or ``None`` to leave the sample unchanged."""
        vis = np.asarray(visible) > 0
        if self.mode == "0.x":
            return self._select_0x(vis, rng)
        if vis.sum() < self.min_total_keypoints or rng.random() > self.prob:
            return None
        upper = self.upper_body_ids[vis[self.upper_body_ids]]
        lower = self.lower_body_ids[vis[self.lower_body_ids]]
        prefer_upper = rng.random() < self.upper_prioritized_prob
        upper_ok = len(upper) >= self.min_upper_keypoints
        lower_ok = len(lower) >= self.min_lower_keypoints
        if not upper_ok and not lower_ok:
            return None
        if not lower_ok:
            return upper
        if not upper_ok:
            return lower
        return upper if prefer_upper else lower

    def _select_0x(self, vis: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        if vis.sum() <= self.num_joints_half_body or rng.random() >= self.prob:
            return None
        is_upper = np.zeros(len(vis), dtype=bool)
        is_upper[self.upper_body_ids] = True
        upper = np.flatnonzero(vis & is_upper)
        lower = np.flatnonzero(vis & ~is_upper)
        if rng.standard_normal() < 0.5 and len(upper) > 2:
            chosen = upper
        else:
            chosen = lower if len(lower) > 2 else upper
        return chosen if len(chosen) >= 2 else None

    def __call__(self, sample: TopdownSample, rng: np.random.Generator) -> TopdownSample:
        if sample.keypoints_xy is None or sample.visible is None:
            return sample
        ids = self.select(sample.visible, rng)
        if ids is None:
            return sample
        pts = sample.keypoints_xy[ids]
        sample.center_xy = pts.mean(axis=0)
        sample.scale_wh = (pts.max(axis=0) - pts.min(axis=0)) * self.padding
        return sample


class RandomBBoxTransform:
    """Random centre shift, scale and rotation of the box (MMPose 1.x ``RandomBBoxTransform``).

    Each draw is a standard normal truncated to [-1, 1] (``tn``): ``center += tn(2) * shift_factor * scale_wh``
    with probability ``shift_prob``; ``scale_wh *= tn * (hi - lo) / 2 + (hi + lo) / 2`` with probability
    ``scale_prob``; ``rotation_deg = tn * rotate_factor`` with probability ``rotate_prob``. (0.x used clipped
    normals and shifted before the flip; not reproduced here.)

    Reads: ``center_xy``, ``scale_wh``. Writes: ``center_xy``, ``scale_wh``, ``rotation_deg``.

    Args:
        shift_factor: shift as a fraction of the box size.
        shift_prob: probability of shifting.
        scale_factor: (lo, hi) range of the scale multiplier.
        scale_prob: probability of rescaling.
        rotate_factor: rotation range in degrees.
        rotate_prob: probability of rotating.
    """

    def __init__(
        self,
        shift_factor: float = 0.16,
        shift_prob: float = 0.3,
        scale_factor: tuple[float, float] = (0.5, 1.5),
        scale_prob: float = 1.0,
        rotate_factor: float = 80.0,
        rotate_prob: float = 0.6,
    ) -> None:
        self.shift_factor = shift_factor
        self.shift_prob = shift_prob
        self.scale_factor = (float(scale_factor[0]), float(scale_factor[1]))
        self.scale_prob = scale_prob
        self.rotate_factor = rotate_factor
        self.rotate_prob = rotate_prob

    def __call__(self, sample: TopdownSample, rng: np.random.Generator) -> TopdownSample:
        # The six draws of MMPose (three truncated normals, three coin flips) in two vectorised calls.
        tn = truncnorm(rng, 4)
        u = rng.random(3)
        lo, hi = self.scale_factor
        if u[0] < self.shift_prob:
            sample.center_xy = sample.center_xy + tn[:2] * self.shift_factor * sample.scale_wh
        if u[1] < self.scale_prob:
            sample.scale_wh = sample.scale_wh * (tn[2] * (hi - lo) * 0.5 + (hi + lo) * 0.5)
        sample.rotation_deg = float(tn[3] * self.rotate_factor) if u[2] < self.rotate_prob else 0.0
        return sample


def build_albumentations(transforms: Any) -> Any:
    """Build an ``albumentations.Compose`` from a Compose, a transform list, or a list of ``{"type": ...}`` dicts.

    A dict names an albumentations class in ``type`` and gives its arguments, MMPose-style, e.g.
    ``[{"type": "ColorJitter", "p": 0.5}, {"type": "CoarseDropout", "p": 0.2}]``.
    """
    import albumentations as A  # imported lazily: photometric augmentation is optional

    if isinstance(transforms, A.BaseCompose):
        return transforms
    items = []
    for t in transforms:
        if isinstance(t, dict) or hasattr(t, "keys"):
            cfg = dict(t)
            name = cfg.pop("type", None)
            if name is None or not hasattr(A, name):
                raise ValueError(f"photometric transform {t!r} needs 'type' naming an albumentations class")
            items.append(getattr(A, name)(**cfg))
        else:
            items.append(t)
    return A.Compose(items)


class PhotometricAugment:
    """Photometric augmentation of the crop with albumentations (off by default; MMPose ``Albumentation``).

    Runs after the warp (as MMPose configs place it), on the small crop rather than the full image. The image is
    converted to RGB first. The albumentations generator is re-seeded from ``rng`` for every sample, so it is
    as reproducible as the geometric steps.

    Reads: ``image`` (crop), ``bgr``. Writes: ``image`` (RGB), ``bgr=False``.

    Args:
        transforms: see :func:`build_albumentations`; must be pixel-level (no geometry).
    """

    def __init__(self, transforms: Any) -> None:
        self.compose = build_albumentations(transforms)

    def __call__(self, sample: TopdownSample, rng: np.random.Generator) -> TopdownSample:
        image = sample.image[..., ::-1] if sample.bgr else sample.image
        self.compose.set_random_seed(int(rng.integers(0, 2**31 - 1)))
        sample.image = np.ascontiguousarray(self.compose(image=np.ascontiguousarray(image))["image"])
        sample.bgr = False
        return sample


@dataclass(frozen=True)
class GeometricAugment:
    """The geometric training augmentation: flip, half-body, then box shift/scale/rotation (:meth:`build`).

    The defaults are MMPose 1.x's (the published HRNet whole-body recipes); the config's ``data.geometric`` node
    (``conf/augment/geometric.yaml``) holds the same values. A probability of 0 drops that step.

    Attributes:
        flip_prob: random horizontal flip probability.
        half_body_prob: half-body crop probability.
        half_body_mode: "1.x" (default) or "0.x" half-body rule.
        shift_factor: box centre shift as a fraction of the box size.
        shift_prob: box centre shift probability.
        scale_factor: (lo, hi) range of the box scale multiplier.
        rotate_factor: rotation range in degrees.
        rotate_prob: rotation probability.
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_mode: Literal["1.x", "0.x"] = "1.x"
    shift_factor: float = 0.16
    shift_prob: float = 0.3
    scale_factor: tuple[float, float] = (0.5, 1.5)
    rotate_factor: float = 80.0
    rotate_prob: float = 0.6

    def __post_init__(self) -> None:
        def number(name: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"data.geometric.{name} must be a finite number, got {value!r}")
            return float(value)

        for name in ("flip_prob", "half_body_prob", "shift_prob", "rotate_prob"):
            if not 0.0 <= number(name, getattr(self, name)) <= 1.0:
                raise ValueError(f"data.geometric.{name} must be a probability in [0, 1], got {getattr(self, name)!r}")
        for name in ("shift_factor", "rotate_factor"):
            if number(name, getattr(self, name)) < 0:
                raise ValueError(f"data.geometric.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.half_body_mode not in ("1.x", "0.x"):
            raise ValueError(f"data.geometric.half_body_mode must be '1.x' or '0.x', got {self.half_body_mode!r}")
        scale = self.scale_factor
        if isinstance(scale, str) or not isinstance(scale, Sequence) or len(scale) != 2:
            raise ValueError(f"data.geometric.scale_factor must be [lo, hi], got {scale!r}")
        lo, hi = number("scale_factor", scale[0]), number("scale_factor", scale[1])
        if not 0 < lo <= hi:
            raise ValueError(f"data.geometric.scale_factor must be [lo, hi] with 0 < lo <= hi, got {list(scale)}")
        object.__setattr__(self, "scale_factor", (lo, hi))

    @classmethod
    def from_config(cls, node: GeometricAugment | Mapping[str, Any] | None) -> GeometricAugment:
        """The augmentation of a ``data.geometric`` node (a mapping of the attributes; missing keys take the
        defaults, ``None``: all defaults)."""
        if node is None:
            return cls()
        if isinstance(node, cls):
            return node
        if not isinstance(node, Mapping):
            raise ValueError(f"data.geometric must be a mapping of {[f.name for f in fields(cls)]}, got {node!r}")
        values = dict(node)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"data.geometric has unknown keys {unknown}; expected some of {known}")
        if "scale_factor" in values and isinstance(values["scale_factor"], Sequence):
            values["scale_factor"] = tuple(values["scale_factor"])
        return cls(**values)

    def build(self) -> Compose:
        """The transforms, in MMPose 1.x's order: flip -> half-body -> shift/scale/rotation."""
        return Compose(
            [
                RandomFlip(prob=self.flip_prob) if self.flip_prob > 0 else None,
                RandomHalfBody(prob=self.half_body_prob, mode=self.half_body_mode) if self.half_body_prob > 0 else None,
                RandomBBoxTransform(
                    shift_factor=self.shift_factor,
                    shift_prob=self.shift_prob,
                    scale_factor=self.scale_factor,
                    rotate_factor=self.rotate_factor,
                    rotate_prob=self.rotate_prob,
                ),
            ]
        )


def build_train_augmentations(**values: Any) -> Compose:
    """The 1.x training augmentations: flip -> half-body -> shift/scale/rotation (docs/conventions.md#augmentation),
    with the :class:`GeometricAugment` of ``values`` (none: MMPose 1.x's defaults). A probability of 0 drops the step.
    """
    return GeometricAugment(**values).build()

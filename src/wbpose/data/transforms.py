"""Top-down sample record and the fixed steps of the crop pipeline: affine warp, target encoding, normalisation.

The training pipeline follows MMPose 1.x (``mmpose/datasets/transforms/{common,topdown}_transforms.py``,
docs/conventions.md#augmentation), re-implemented for speed:

1. box -> centre/scale (padding 1.25, **no** aspect fix yet): done once for all instances when the dataset loads
   (``wbpose.geometry.bbox_xyxy_to_center_scale``, vectorised);
2. random flip, half-body and shift/scale/rotation (``wbpose.data.augment``), train only;
3. :class:`TopdownAffine`: aspect fix to ``input_wh``, one ``cv2.warpAffine`` and the same matrix on the keypoints;
4. optional photometric augmentation on the crop (``wbpose.data.augment.PhotometricAugment``);
5. :class:`GenerateTarget`: heatmaps and weights from the codec (train only);
6. :func:`normalize_image` + :func:`pack_sample`: the sample dict of ``docs/architecture.md``.

``CocoWholeBodyDataset`` runs the annotation half (2, the geometry of 3, and 5) before decoding the JPEG and the
pixel half (the warp of 3, 4, 6) after it; the result is the same as running 1-6 in order.

Speed choices (see ``benchmarks/data_pipeline.py``): the image stays BGR as ``cv2.imread`` returns it and the
channel swap happens inside the normalisation; a horizontal flip is folded into the warp matrix instead of
mirroring the full image (:class:`~wbpose.data.augment.RandomFlip` only mirrors the annotations); the image is
warped once, as uint8.

Every transform is a callable ``transform(sample, rng) -> sample`` on a :class:`TopdownSample`; its docstring lists
the fields it reads and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from wbpose.geometry import apply_affine, fix_aspect_ratio, warp_matrix

#: ImageNet mean/std on 0-255 RGB (MMPose 1.x ``PoseDataPreprocessor``; 0.x ``NormalizeTensor`` after /255).
MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)
STD_RGB: tuple[float, float, float] = (58.395, 57.12, 57.375)


@dataclass
class TopdownSample:
    """One person instance on its way through the pipeline.

    Attributes:
        image: the full image (H, W, 3) uint8 as decoded (``None`` until read); after :class:`TopdownAffine` the
            crop (h, w, 3).
        image_wh: (width, height) of the full image; flips mirror about ``x = width - 1``.
        center_xy: box centre in (possibly flipped) image pixels, float64 (2,).
        scale_wh: padded box size in pixels, float64 (2,); aspect-fixed by :class:`TopdownAffine`.
        bbox_xyxy: the instance box in (possibly flipped) image pixels, float64 (4,).
        keypoints_xy: (K, 2) float64 in image pixels, crop pixels after the warp; ``None`` for detector boxes.
        visible: (K,) float32 0/1 visibility; ``None`` for detector boxes.
        rotation_deg: crop rotation in degrees (MMPose's ``bbox_rotation`` convention, see ``warp_matrix``).
        flipped: the annotations are mirrored but ``image`` is not yet (the warp does it).
        bgr: channel order of ``image``.
        warp: the (2, 3) matrix mapping the *decoded, unflipped* image to the crop, set by the warp.
        image_chw: the normalised crop, float32 (3, h, w) RGB, set by :class:`Normalize`.
        heatmaps: (K, h, w) float32 targets, set by :class:`GenerateTarget`.
        heatmap_x: (K, w) float32, heatmap_y: (K, h) float32: the targets as the two profiles whose outer
            products are the heatmaps, set by :class:`GenerateTarget` with ``profiles=True`` instead of ``heatmaps``.
        weights: (K,) float32 target weights, set by :class:`GenerateTarget`.
        image_id: COCO image id.
        instance_id: unique id of the box (annotation id or detection index).
        bbox_score: detector score (1.0 for ground-truth boxes).
    """

    image: np.ndarray | None
    image_wh: tuple[int, int]
    center_xy: np.ndarray
    scale_wh: np.ndarray
    bbox_xyxy: np.ndarray
    keypoints_xy: np.ndarray | None = None
    visible: np.ndarray | None = None
    rotation_deg: float = 0.0
    flipped: bool = False
    bgr: bool = True
    warp: np.ndarray | None = None
    image_chw: np.ndarray | None = None
    heatmaps: np.ndarray | None = None
    heatmap_x: np.ndarray | None = None
    heatmap_y: np.ndarray | None = None
    weights: np.ndarray | None = None
    image_id: int = -1
    instance_id: int = -1
    bbox_score: float = 1.0


class Transform(Protocol):
    """A pipeline step: reads and writes fields of a :class:`TopdownSample`, drawing randomness from ``rng``."""

    def __call__(self, sample: TopdownSample, rng: np.random.Generator) -> TopdownSample: ...


class Compose:
    """Apply transforms in order with one shared generator.

    Args:
        transforms: the steps; ``None`` entries are skipped so configs can switch steps off.
    """

    def __init__(self, transforms: Sequence[Transform | None]) -> None:
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, sample: TopdownSample, rng: np.random.Generator) -> TopdownSample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def fold_flip(matrix: np.ndarray, image_w: int) -> np.ndarray:
    """Compose a (2, 3) crop matrix with the mirror ``x -> W - 1 - x`` of an image of width ``W``.

    ``M @ F`` with ``F = [[-1, 0, W-1], [0, 1, 0]]``: warping the unflipped image with it equals flipping the
    image first and warping with ``M`` (MMPose 1.x ``RandomFlip`` + ``TopdownAffine``), without the full-image copy.
    """
    m = matrix.copy()
    m[:, 2] += m[:, 0] * (image_w - 1)
    m[:, 0] = -m[:, 0]
    return m


class TopdownAffine:
    """Crop the instance: aspect fix, one affine warp of the image, the same warp on the keypoints.

    MMPose 1.x ``TopdownAffine``: ``scale_wh`` is first grown to the input aspect ratio, then the image is
    warped with ``cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0)`` so that the box centre lands on the crop
    centre and ``scale_wh[0]`` spans the crop width, rotated by ``rotation_deg``.

    The two halves can run apart (:meth:`set_geometry` needs no pixels, :meth:`warp_image` only pixels), which
    lets the dataset do all annotation work before decoding the JPEG; calling the transform runs both.

    Reads: ``image``, ``image_wh``, ``center_xy``, ``scale_wh``, ``rotation_deg``, ``flipped``, ``keypoints_xy``.
    Writes: ``image`` (crop), ``scale_wh`` (aspect-fixed), ``keypoints_xy`` (crop pixels), ``warp``.

    Args:
        input_wh: crop (width, height), e.g. (192, 256).
    """

    def __init__(self, input_wh: tuple[int, int]) -> None:
        self.input_wh = (int(input_wh[0]), int(input_wh[1]))

    def set_geometry(self, sample: TopdownSample) -> TopdownSample:
        """Aspect fix, crop matrix and keypoints in crop pixels (everything but the pixels)."""
        w, h = self.input_wh
        sample.scale_wh = fix_aspect_ratio(sample.scale_wh, w / h)
        m_points = warp_matrix(sample.center_xy, sample.scale_wh, sample.rotation_deg, self.input_wh)
        sample.warp = fold_flip(m_points, sample.image_wh[0]) if sample.flipped else m_points
        if sample.keypoints_xy is not None:
            sample.keypoints_xy = apply_affine(sample.keypoints_xy, m_points)
        return sample

    def warp_image(self, sample: TopdownSample) -> TopdownSample:
        """Warp ``sample.image`` with ``sample.warp`` (set by :meth:`set_geometry`) to the crop."""
        sample.image = cv2.warpAffine(
            sample.image, sample.warp, self.input_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        return sample

    def __call__(self, sample: TopdownSample, rng: np.random.Generator | None = None) -> TopdownSample:
        return self.warp_image(self.set_geometry(sample))


#: Named target-weight rules (``data.target_weight``; docs/conventions.md#target-weights) and the
#: ``zero_outside_crop`` flag of :class:`GenerateTarget` each one sets.
#: ``"mmpose"`` (the default, MMPose 0.x and 1.x): a visible point keeps weight 1 while the codec's
#: 3-sigma square still touches the heatmap, even when the point itself left the crop.
#: ``"inside_crop"``: a visible point also needs to lie inside the crop ``[0, w) x [0, h)``.
TARGET_WEIGHT_RULES: dict[str, bool] = {"mmpose": False, "inside_crop": True}


def zero_outside_crop_for(rule: str) -> bool:
    """The ``zero_outside_crop`` flag of a named target-weight rule (:data:`TARGET_WEIGHT_RULES`).

    Raises:
        ValueError: ``rule`` names no rule (the message lists the valid names).
    """
    if rule not in TARGET_WEIGHT_RULES:
        raise ValueError(f"target_weight must be one of {sorted(TARGET_WEIGHT_RULES)}, got {rule!r}")
    return TARGET_WEIGHT_RULES[rule]


class GenerateTarget:
    """Encode heatmap targets with the codec (MMPose 1.x ``GenerateTarget(encoder=codec)``).

    The codec gives weight 0 to invisible points and to points whose 3-sigma square misses the heatmap, and weight
    1 (the visibility) to every other point: MMPose's rule, kept by default. A point that the augmentation moved
    just outside the crop therefore still gets its partial Gaussian and weight 1. With ``zero_outside_crop``
    (the ``"inside_crop"`` rule of :data:`TARGET_WEIGHT_RULES`) points mapped outside the crop ``[0, w) x [0, h)``
    are made invisible first, so they get neither a Gaussian nor weight.

    Reads: ``keypoints_xy`` (crop pixels), ``visible``.
    Writes: ``visible`` (outside-crop points zeroed with ``zero_outside_crop``), ``heatmaps`` (K, h, w) (with
    ``profiles``: ``heatmap_x`` (K, w) and ``heatmap_y`` (K, h) instead), ``weights`` (K,).

    Args:
        codec: object with ``encode(keypoints_xy (K,2), visible (K,)) -> HeatmapTarget`` and ``input_wh``
            (and ``encode_profiles`` with ``profiles``).
        zero_outside_crop: make points outside the crop invisible before encoding (not MMPose's rule).
        profiles: keep the targets as the profiles of ``codec.encode_profiles`` (``wbpose.data.encoded``).
    """

    def __init__(self, codec: Any, zero_outside_crop: bool = False, profiles: bool = False) -> None:
        self.codec = codec
        self.zero_outside_crop = zero_outside_crop
        self.input_wh = tuple(int(v) for v in codec.input_wh)
        if profiles and not callable(getattr(codec, "encode_profiles", None)):
            raise ValueError(
                f"{type(codec).__name__} has no encode_profiles(): its targets cannot travel as profiles "
                "(data.decode_on=gpu needs a Gaussian codec: msra or dark)"
            )
        self.profiles = profiles

    def __call__(self, sample: TopdownSample, rng: np.random.Generator | None = None) -> TopdownSample:
        if sample.keypoints_xy is None or sample.visible is None:
            raise ValueError("GenerateTarget needs keypoints: targets cannot be built for detector boxes")
        visible = np.asarray(sample.visible, dtype=np.float32)
        if self.zero_outside_crop:
            kp = sample.keypoints_xy
            w, h = self.input_wh
            inside = (kp[:, 0] >= 0) & (kp[:, 0] < w) & (kp[:, 1] >= 0) & (kp[:, 1] < h)
            visible = visible * inside
        sample.visible = visible
        if self.profiles:
            gx, gy, weights = self.codec.encode_profiles(sample.keypoints_xy, visible)
            sample.heatmap_x, sample.heatmap_y = gx, gy
        else:
            target = self.codec.encode(sample.keypoints_xy, visible)
            sample.heatmaps, weights = np.asarray(target.heatmaps, dtype=np.float32), target.weights
        sample.weights = np.asarray(weights, dtype=np.float32) * visible
        return sample


_SCALE: list[float] = (1.0 / np.asarray(STD_RGB, dtype=np.float32)).tolist()
_SHIFT: list[float] = (-np.asarray(MEAN_RGB, dtype=np.float32) / np.asarray(STD_RGB, dtype=np.float32)).tolist()


def normalize_image(image: np.ndarray, bgr: bool = True) -> np.ndarray:
    """uint8 (h, w, 3) crop -> normalised float32 (3, h, w) RGB, ``(x - mean) / std`` per channel.

    Channel swap, cast and normalisation are fused: each uint8 plane is read once and written once, as
    ``x * (1/std) + (-mean/std)`` (``cv2.addWeighted`` with a float32 destination; equal to ``(x - mean) / std``
    within float32 rounding).
    """
    planes = cv2.split(image)
    if bgr:
        planes = planes[::-1]
    out = np.empty((3, image.shape[0], image.shape[1]), dtype=np.float32)
    for c in range(3):
        cv2.addWeighted(planes[c], _SCALE[c], planes[c], 0.0, _SHIFT[c], dst=out[c], dtype=cv2.CV_32F)
    return out


class Normalize:
    """Normalise the crop right after the warp, while it is still in cache.

    Reads: ``image`` (uint8 crop), ``bgr``. Writes: ``image_chw`` (float32 (3, h, w) normalised RGB).
    """

    def __call__(self, sample: TopdownSample, rng: np.random.Generator | None = None) -> TopdownSample:
        sample.image_chw = normalize_image(sample.image, bgr=sample.bgr)
        return sample


def denormalize_image(image_chw: np.ndarray | torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize_image`: (3, h, w) normalised RGB -> (h, w, 3) uint8 RGB (for drawing)."""
    x = image_chw.detach().cpu().numpy() if isinstance(image_chw, torch.Tensor) else np.asarray(image_chw)
    rgb = x.transpose(1, 2, 0) * np.asarray(STD_RGB, np.float32) + np.asarray(MEAN_RGB, np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def pack_sample(sample: TopdownSample) -> dict[str, torch.Tensor]:
    """Turn a warped sample into the sample dict of ``docs/architecture.md`` (torch tensors, no copies).

    Reads: ``image_chw`` (or ``image`` and ``bgr``), ``center_xy``, ``scale_wh``, ``instance_id``, ``image_id``,
    ``bbox_score``, and, when targets were built, ``heatmaps``, ``weights``, ``keypoints_xy``, ``visible``.

    Returns:
        ``image`` float32 (3, h, w), ``center_xy`` float32 (2,), ``scale_wh`` float32 (2,), ``instance_id`` int64,
        ``image_id`` int64, ``bbox_score`` float32, plus ``heatmaps`` float32 (K, h', w'), ``weights`` float32
        (K,), ``keypoints_xy`` float32 (K, 2) crop pixels and ``visible`` float32 (K,) when targets exist.
    """
    image = sample.image_chw if sample.image_chw is not None else normalize_image(sample.image, bgr=sample.bgr)
    return {"image": torch.from_numpy(image), **pack_fields(sample)}


def pack_fields(sample: TopdownSample) -> dict[str, torch.Tensor]:
    """Every field of the sample dict but ``image`` (:func:`pack_sample`; ``wbpose.data.encoded.pack_encoded``):
    the box and ids, and the targets when they exist (``heatmaps``, or ``heatmap_x``/``heatmap_y`` as profiles)."""
    out: dict[str, torch.Tensor] = {
        "center_xy": torch.from_numpy(np.asarray(sample.center_xy, dtype=np.float32)),
        "scale_wh": torch.from_numpy(np.asarray(sample.scale_wh, dtype=np.float32)),
        "instance_id": torch.tensor(int(sample.instance_id), dtype=torch.int64),
        "image_id": torch.tensor(int(sample.image_id), dtype=torch.int64),
        "bbox_score": torch.tensor(float(sample.bbox_score), dtype=torch.float32),
    }
    if sample.heatmaps is not None:
        out["heatmaps"] = torch.from_numpy(sample.heatmaps)
    elif sample.heatmap_x is not None and sample.heatmap_y is not None:
        out["heatmap_x"] = torch.from_numpy(sample.heatmap_x)
        out["heatmap_y"] = torch.from_numpy(sample.heatmap_y)
    if "heatmaps" in out or "heatmap_x" in out:
        out["weights"] = torch.from_numpy(sample.weights)
        out["keypoints_xy"] = torch.from_numpy(np.asarray(sample.keypoints_xy, dtype=np.float32))
        out["visible"] = torch.from_numpy(np.asarray(sample.visible, dtype=np.float32))
    return out


def crop_points_to_image(
    keypoints_xy: np.ndarray,
    center_xy: np.ndarray,
    scale_wh: np.ndarray,
    input_wh: tuple[int, int],
    rotation_deg: float | np.ndarray = 0.0,
) -> np.ndarray:
    """Map crop pixels back to (annotation-frame) image pixels, rotated crops included (numpy).

    For unrotated crops this equals ``wbpose.geometry.crop_to_image``, which is what inference uses
    (docs/conventions.md#heatmap-to-image).

    Shape:
        keypoints_xy: (..., K, 2), center_xy: (..., 2), scale_wh: (..., 2) -> (..., K, 2)
    """
    return apply_affine(keypoints_xy, warp_matrix(center_xy, scale_wh, rotation_deg, input_wh, inverse=True))

"""Top-down crop geometry: boxes -> (centre, scale), the crop affine warp, and crop -> image mapping.

Conventions (MMPose 1.x semantics; docs/conventions.md#box-to-centre-and-scale and #heatmap-to-image):

- ``center_xy`` is the box centre in image pixels; ``scale_wh`` is the *padded, aspect-fixed* box size in
  image pixels (MMPose 0.x stores ``scale_wh / 200`` with ``pixel_std=200``; we keep pixels throughout).
- ``input_wh`` is the network input size as (width, height), e.g. (192, 256) for the "256x192" recipe.
- The warp maps the box centre to the crop centre ``(w/2, h/2)`` and the box width ``scale_wh[0]`` to the crop
  width, rotating by ``rotation_deg`` about the centre (MMPose ``get_warp_matrix`` / 0.x ``get_affine_transform``).
  It is a similarity transform, so it is computed in closed form, vectorised over a batch.
"""

from __future__ import annotations

import numpy as np
import torch

BBOX_PADDING = 1.25


def bbox_xywh_to_xyxy(bbox_xywh: np.ndarray) -> np.ndarray:
    """Convert ``[x, y, w, h]`` boxes to ``[x1, y1, x2, y2]``.

    Shape:
        bbox_xywh: (..., 4) -> (..., 4)
    """
    b = np.asarray(bbox_xywh, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def fix_aspect_ratio(scale_wh: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow the shorter side of each box so that ``w / h == aspect_ratio`` (MMPose ``_fix_aspect_ratio``).

    Shape:
        scale_wh: (..., 2) -> (..., 2)
    """
    s = np.asarray(scale_wh, dtype=np.float64)
    w, h = s[..., 0], s[..., 1]
    wider = w > h * aspect_ratio
    out_w = np.where(wider, w, h * aspect_ratio)
    out_h = np.where(wider, w / aspect_ratio, h)
    return np.stack([out_w, out_h], axis=-1)


def bbox_xyxy_to_center_scale(
    bbox_xyxy: np.ndarray, input_wh: tuple[int, int] | None = None, padding: float = BBOX_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Box corners -> centre and padded scale in pixels, optionally aspect-fixed to ``input_wh``.

    Args:
        bbox_xyxy: boxes ``[x1, y1, x2, y2]``.
        input_wh: network input (width, height); when given, the scale is aspect-fixed to ``w / h``.
        padding: scale multiplier (1.25 for boxes, 1.5 for half-body boxes).

    Returns:
        ``(center_xy, scale_wh)``.

    Shape:
        bbox_xyxy: (..., 4) -> center_xy (..., 2), scale_wh (..., 2)
    """
    b = np.asarray(bbox_xyxy, dtype=np.float64)
    center = (b[..., :2] + b[..., 2:4]) * 0.5
    scale = (b[..., 2:4] - b[..., :2]) * padding
    if input_wh is not None:
        scale = fix_aspect_ratio(scale, input_wh[0] / input_wh[1])
    return center, scale


def warp_matrix(
    center_xy: np.ndarray,
    scale_wh: np.ndarray,
    rotation_deg: np.ndarray | float,
    input_wh: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """Affine matrices mapping image pixels to crop pixels (or back with ``inverse=True``).

    Equal to MMPose's three-point ``get_warp_matrix(center, scale, rot, output_size)`` (checked in the tests
    against ``cv2.getAffineTransform`` on the same three points).

    Shape:
        center_xy: (..., 2), scale_wh: (..., 2), rotation_deg: (...) or scalar -> (..., 2, 3)
    """
    center = np.asarray(center_xy, dtype=np.float64)
    scale_w = np.asarray(scale_wh, dtype=np.float64)[..., 0]
    theta = np.deg2rad(np.broadcast_to(np.asarray(rotation_deg, dtype=np.float64), scale_w.shape))
    dst_w, dst_h = float(input_wh[0]), float(input_wh[1])
    s = dst_w / scale_w
    cos, sin = np.cos(theta), np.sin(theta)
    out = np.zeros(center.shape[:-1] + (2, 3), dtype=np.float64)
    if not inverse:
        # crop = s * R(-theta) @ (p - center) + crop_center
        a, b = s * cos, s * sin
        out[..., 0, 0], out[..., 0, 1] = a, b
        out[..., 1, 0], out[..., 1, 1] = -b, a
        out[..., 0, 2] = dst_w * 0.5 - (a * center[..., 0] + b * center[..., 1])
        out[..., 1, 2] = dst_h * 0.5 - (-b * center[..., 0] + a * center[..., 1])
    else:
        # p = (1/s) * R(theta) @ (crop - crop_center) + center
        a, b = cos / s, sin / s
        out[..., 0, 0], out[..., 0, 1] = a, -b
        out[..., 1, 0], out[..., 1, 1] = b, a
        out[..., 0, 2] = center[..., 0] - (a * dst_w * 0.5 - b * dst_h * 0.5)
        out[..., 1, 2] = center[..., 1] - (b * dst_w * 0.5 + a * dst_h * 0.5)
    return out


def apply_affine(points_xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply (..., 2, 3) affine matrices to (..., K, 2) points.

    Shape:
        points_xy: (..., K, 2), matrix: (..., 2, 3) -> (..., K, 2)
    """
    p = np.asarray(points_xy, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return np.einsum("...ij,...kj->...ki", m[..., :, :2], p) + m[..., None, :, 2]


def crop_to_image(
    keypoints_xy: torch.Tensor, center_xy: torch.Tensor, scale_wh: torch.Tensor, input_wh: tuple[int, int]
) -> torch.Tensor:
    """Map crop-pixel keypoints back to image pixels for unrotated crops (docs/conventions.md#heatmap-to-image).

    ``x_img = x_crop / input_w * scale_w + center_x - 0.5 * scale_w`` (and likewise for y): MMPose 1.x
    ``add_pred_to_datasample`` and 0.x ``transform_preds`` with ``scale * 200`` (no half-pixel offset).
    Runs on whatever device the tensors live.

    Shape:
        keypoints_xy: (B, K, 2), center_xy: (B, 2), scale_wh: (B, 2) -> (B, K, 2)
    """
    size = torch.as_tensor(input_wh, dtype=keypoints_xy.dtype, device=keypoints_xy.device)
    scale = scale_wh.to(keypoints_xy.dtype)[:, None, :]
    center = center_xy.to(keypoints_xy.dtype)[:, None, :]
    return keypoints_xy / size * scale + center - 0.5 * scale

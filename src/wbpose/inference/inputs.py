"""The predictor's inputs, checked: images (a file, or an array in BGR or RGB order) and person boxes.

A file that does not read, an array of the wrong dtype or shape, or a box that is not finite with a positive size
gets an error naming it, before any network runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from wbpose.data.bad_images import read_image_file

__all__ = ["CHANNEL_ORDERS", "as_boxes", "as_image", "check_channel_order", "read_bgr", "read_image"]

#: Channel orders :meth:`Predictor.predict` accepts; "bgr" (what ``cv2.imread`` returns) is the default.
CHANNEL_ORDERS = ("bgr", "rgb")


def read_bgr(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as OpenCV does (BGR uint8), with an error naming the file when it does not read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    bgr, why = read_image_file(str(path))
    if why == "truncated":
        raise ValueError(f"cannot read image {path}: truncated JPEG (no end-of-image marker; a partial copy)")
    if bgr is None:
        if why and why.startswith("corrupt: "):  # libjpeg named the damage: say that alone
            raise ValueError(f"cannot read image {path}: {why}")
        raise ValueError(f"cannot read image {path}: {why or 'corrupt'}, or not an image format OpenCV decodes")
    return bgr


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3).

    Raises:
        FileNotFoundError: no such file.
        ValueError: OpenCV cannot decode it, or it is a truncated JPEG (no end-of-image marker; OpenCV would fill
            the missing rows with grey: :func:`wbpose.data.bad_images.read_image_file`).
    """
    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)


def check_channel_order(channel_order: str) -> bool:
    """``True`` for BGR, ``False`` for RGB; anything else is refused."""
    order = str(channel_order).lower()
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    return order == "bgr"


def as_image(image: np.ndarray | str | os.PathLike, bgr: bool) -> tuple[np.ndarray, bool]:
    """The image as a contiguous uint8 (H, W, 3) array and whether it is BGR (a file is read as BGR)."""
    if isinstance(image, str | os.PathLike):
        return read_bgr(image), True
    order = "BGR" if bgr else "RGB"
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a {order} uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2)), bgr
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a {order} image of shape (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image), bgr


def as_boxes(
    boxes: np.ndarray | Sequence | None, box_scores: np.ndarray | Sequence | None, image_wh: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Validate boxes: (N, 4) xywh, or (N, 5) with scores; ``None`` = the whole image with score 1.

    Shape:
        boxes: (N, 4) or (N, 5); box_scores: (N,) -> (N, 4) float64, (N,) float64
    """
    if boxes is None:
        return np.array([[0.0, 0.0, image_wh[0], image_wh[1]]]), np.ones(1)
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] not in (4, 5):
        raise ValueError(f"expected boxes of shape (N, 4) [x, y, w, h] or (N, 5) with scores, got {b.shape}")
    scores = b[:, 4] if b.shape[1] == 5 else np.ones(len(b))
    if box_scores is not None:
        scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
        if scores.shape != (len(b),):
            raise ValueError(f"expected {len(b)} box scores, got {scores.shape[0]}")
    b = b[:, :4]
    bad = np.flatnonzero(~np.isfinite(b).all(1) | (b[:, 2] <= 0) | (b[:, 3] <= 0))
    if len(bad):
        raise ValueError(f"boxes must be finite [x, y, w, h] with w, h > 0; box #{bad[0]} is {b[bad[0]].tolist()}")
    return b, scores

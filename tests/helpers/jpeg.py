"""JPEG test images: photo-like pixels, files with an EXIF orientation, and the crop matrices the warp tests use.

:func:`textured_image` draws smooth shading, hard-edged ellipses and sensor noise (the hard cases of bilinear
interpolation: edges and noise); :func:`with_exif_orientation` inserts an APP1 ``Exif`` segment holding only the
orientation tag after the start-of-image marker, as cameras write it; :func:`crop_matrices` gives the crop
matrices of the training augmentation's range (shift, scale, rotation, horizontal flip) for an image.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from wbpose.data.transforms import fold_flip
from wbpose.geometry import warp_matrix


def textured_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A photo-like BGR uint8 image: multi-scale smooth noise, 20 hard-edged ellipses, fine noise."""
    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 90.0), (16, 40.0)):
        small = rng.normal(0, amp, (max(2, cells * h // w), cells, 3)).astype(np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(20):
        colour = tuple(float(v) for v in rng.uniform(-80, 80, 3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(5, max(6, w // 4))), int(rng.integers(5, max(6, h // 4))))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    img += rng.normal(0, 6.0, img.shape).astype(np.float32)
    return np.clip(img + 128, 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buffer.tobytes()


def with_exif_orientation(jpeg: bytes, orientation: int, byte_order: str = "II") -> bytes:
    """``jpeg`` with an APP1 Exif segment (one IFD, one entry: orientation, SHORT) right after ``FF D8``."""
    fmt = "<" if byte_order == "II" else ">"
    entry = struct.pack(fmt + "HHI", 0x0112, 3, 1) + struct.pack(fmt + "HH", orientation, 0)
    tiff = byte_order.encode() + struct.pack(fmt + "HI", 42, 8) + struct.pack(fmt + "H", 1) + entry
    tiff += struct.pack(fmt + "I", 0)  # no next IFD
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def crop_matrices(rng: np.random.Generator, image_wh: tuple[int, int], out_wh: tuple[int, int], n: int) -> list:
    """``n`` crop matrices (image -> crop, 2x3 float64): random centres (some off the image), box sizes from
    tight to larger than the image, rotations up to 60 degrees on every other one, a flip folded into every
    third, as the training augmentation draws them."""
    w, h = image_wh
    out = []
    for k in range(n):
        centre = np.array([rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)])
        scale = np.array([rng.uniform(0.1, 1.3) * w, rng.uniform(0.1, 1.3) * h])
        scale[1] = scale[0] * out_wh[1] / out_wh[0]
        rotation = float(rng.uniform(-60, 60)) if k % 2 else 0.0
        m = warp_matrix(centre, scale, rotation, out_wh)
        out.append(fold_flip(m, w) if k % 3 == 0 else m)
    return out

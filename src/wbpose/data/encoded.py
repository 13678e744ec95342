"""Encoded samples: the loader sends the JPEG file and the crop's warp; the pixels are made on the training device.

With ``data.decode_on=gpu`` (docs/data.md#pixels-on-the-gpu) a loader worker does the annotation half of the
pipeline as always (augmentation, crop geometry, targets) and, instead of decoding and warping the image, reads
the file's bytes and checks them without decoding: present and readable, not truncated
(:func:`wbpose.data.bad_images.jpeg_is_truncated`), a JPEG frame header whose size, after the EXIF orientation,
is the size the annotation file gives (:func:`jpeg_header`). The training device then decodes the batch's images
at once and warps each crop from the same matrix (:mod:`wbpose.data.gpu_pixels`).

What travels per sample, instead of a float32 crop (0.6 MB at 256x192) and float32 heatmaps (1.6 MB for 133
keypoints at 64x48): the file (COCO: ~160 KB, shared by the batch's boxes on the same image), the inverse warp
(float64, 2x3) and the heatmaps as their two Gaussian profiles per keypoint (``K * (w + h)`` float32, 60 KB;
``wbpose.codecs.gaussian.render_profiles``), which the device multiplies out to the same maps bit for bit.

EXIF orientation: ``cv2.imread``/``cv2.imdecode`` turn the image upright; a GPU JPEG decoder does not. The turn
is a mirror and/or a quarter rotation of the pixel grid (:func:`orientation_matrix`), so it is folded into the warp:
warping the stored pixels with ``M @ T`` reads the same source pixels as warping the upright image with ``M``.

Bad images: what the worker can see without decoding (missing, unreadable, truncated, no frame header, the wrong
size) follows ``data.bad_images`` exactly as on the CPU path. Corrupt entropy-coded data is found only by decoding
(the CPU path listens to libjpeg's warnings); the device decoder's errors fall back to OpenCV, and an image neither
decodes raises a ``DataError`` naming its image id (:mod:`wbpose.data.gpu_pixels`).

A batch (:func:`collate_encoded`) holds each image's bytes once however many of its boxes the batch holds (about
21 detector boxes per val image). Its keys:

- ``jpeg_data`` uint8 (N,): the batch's files back to back; ``jpeg_offsets`` int64 (U + 1,): file ``u`` is
  ``jpeg_data[offsets[u]:offsets[u + 1]]``; ``jpeg_wh`` int64 (U, 2): each file's stored (width, height);
  ``jpeg_is_jpeg`` bool (U,): JPEG or another format (decoded by OpenCV). These stay on the host
  (:data:`HOST_KEYS`: the decoders read host memory).
- ``image_slot`` int64 (B,): the file of each sample, -1 for a blank image (a bad image under the "drop" policy).
- ``warp_inv`` float64 (B, 2, 3): crop pixel -> stored-image pixel (``cv2.invertAffineTransform`` of the
  sample's warp with the orientation folded in).
- ``heatmap_x`` (B, K, w), ``heatmap_y`` (B, K, h) float32 with targets; every other key as the CPU path's batch.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

from wbpose.data.bad_images import read_image_bytes, read_image_file
from wbpose.data.transforms import TopdownSample, pack_fields

__all__ = [
    "ENCODED_KEY",
    "HOST_KEYS",
    "EncodedImage",
    "collate_encoded",
    "is_encoded_batch",
    "jpeg_header",
    "orientation_matrix",
    "pack_encoded",
    "read_encoded",
]

#: The key that marks a batch of encoded samples (its files, back to back).
ENCODED_KEY = "jpeg_data"
#: Batch keys that stay on the host when the batch moves to the device.
HOST_KEYS = ("jpeg_data", "jpeg_offsets", "jpeg_wh", "jpeg_is_jpeg")

# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic): they carry the size.
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0-7: no length field
_EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class EncodedImage:
    """An image file as read by a loader worker.

    Attributes:
        data: the file's bytes, uint8 (n,); empty for a blank image (a bad image under the "drop" policy).
        raw_wh: (width, height) as stored, before the EXIF orientation.
        orientation: EXIF orientation 1-8 (1: upright; always 1 for a format other than JPEG).
        jpeg: whether the file is a JPEG (other formats are decoded by OpenCV, upright).
    """

    data: np.ndarray
    raw_wh: tuple[int, int]
    orientation: int = 1
    jpeg: bool = True

    @property
    def wh(self) -> tuple[int, int]:
        """(width, height) upright: what ``cv2.imread`` returns and the annotation file gives."""
        w, h = self.raw_wh
        return (h, w) if self.orientation >= 5 else (w, h)

    @classmethod
    def blank(cls, wh: tuple[int, int]) -> EncodedImage:
        """A stand-in for a bad image whose crop is all zeros (the CPU path warps a zero image)."""
        return cls(np.zeros(0, np.uint8), (int(wh[0]), int(wh[1])), 1, False)

    @property
    def is_blank(self) -> bool:
        return self.data.size == 0


def _exif_orientation(segment: bytes) -> int:
    """The orientation tag of an APP1 ``Exif`` segment's first IFD; 1 when absent or not one of 1-8."""
    if segment[:6] != b"Exif\x00\x00":
        return 1
    tiff = segment[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(tiff):
            break
        tag, kind = struct.unpack_from(order + "HH", tiff, at)
        if tag == _EXIF_ORIENTATION_TAG:
            if kind != 3:  # SHORT
                return 1
            (value,) = struct.unpack_from(order + "H", tiff, at + 8)
            return int(value) if 1 <= value <= 8 else 1
    return 1


def jpeg_header(data: bytes) -> tuple[int, int, int, int] | None:
    """``(width, height, components, orientation)`` of a JPEG from its markers, without decoding; ``None`` when
    the markers end, or the data ends, before a frame header (not a JPEG OpenCV would decode).

    The walk reads each marker's length up to the start of scan (``FF DA``); the frame header (``SOF0``-``SOF15``)
    gives the stored size and the first APP1 ``Exif`` segment the orientation (1 when there is none), which is what
    OpenCV applies.
    """
    if data[:2] != b"\xff\xd8":
        return None
    orientation, pos, n = None, 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > n:
            return None
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and orientation is None and segment[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(segment)
        elif marker in _SOF:
            if len(segment) < 6:
                return None
            height, width = struct.unpack_from(">HH", segment, 1)
            if width == 0 or height == 0:
                return None
            # the APP1 segment comes before the frame header in every file the JFIF/Exif layouts allow
            return int(width), int(height), int(segment[5]), orientation or 1
        pos += 2 + length
    return None


def orientation_matrix(orientation: int, raw_wh: tuple[int, int]) -> np.ndarray:
    """The 3x3 map from stored pixel coordinates to upright ones for an EXIF orientation (1-8), float64.

    1 upright, 2 mirrored left-right, 3 turned 180, 4 mirrored top-bottom, 5 transposed, 6 turned 90 clockwise to
    display, 7 transversed, 8 turned 90 anticlockwise to display; pixel centres at integers, so a mirror is
    ``x -> W - 1 - x`` (as :func:`wbpose.data.transforms.fold_flip`).
    """
    w, h = raw_wh
    rows = {
        1: ((1, 0, 0), (0, 1, 0)),
        2: ((-1, 0, w - 1), (0, 1, 0)),
        3: ((-1, 0, w - 1), (0, -1, h - 1)),
        4: ((1, 0, 0), (0, -1, h - 1)),
        5: ((0, 1, 0), (1, 0, 0)),
        6: ((0, -1, h - 1), (1, 0, 0)),
        7: ((0, -1, h - 1), (-1, 0, w - 1)),
        8: ((0, 1, 0), (-1, 0, w - 1)),
    }
    if orientation not in rows:
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation!r}")
    return np.array([*rows[orientation], (0, 0, 1)], dtype=np.float64)


def read_encoded(path: str) -> tuple[EncodedImage | None, str | None]:
    """Read an image file for the device decoder, checking what can be checked without decoding a JPEG.

    Returns:
        ``(image, None)``, or ``(None, why)`` with ``why`` as :func:`wbpose.data.bad_images.read_image_file` says
        it (``"missing"``, ``"unreadable: ..."``, ``"truncated"``, ``"corrupt"``; a JPEG without a frame header
        is ``"corrupt: no JPEG frame header"``). A file in another format is decoded here once to check it.
    """
    data, why = read_image_bytes(path)
    if data is None:
        return None, why
    buffer = np.frombuffer(data, np.uint8)
    if data[:2] == b"\xff\xd8":
        header = jpeg_header(data)
        if header is None:
            return None, "corrupt: no JPEG frame header"
        width, height, _, orientation = header
        return EncodedImage(buffer, (width, height), orientation, True), None
    image, why = read_image_file(path)  # PNG and the like: rare in pose datasets; OpenCV checks and decodes them
    if image is None:
        return None, why
    return EncodedImage(buffer, (image.shape[1], image.shape[0]), 1, False), None


def stored_inverse_warp(warp: np.ndarray, image: EncodedImage) -> np.ndarray:
    """Crop pixel -> stored-image pixel, float64 (2, 3): the inverse of ``warp @ orientation_matrix`` (the sample's
    warp maps the upright image to the crop), inverted as ``cv2.warpAffine`` inverts its matrix."""
    m = np.asarray(warp, dtype=np.float64)
    if image.jpeg and image.orientation != 1:
        m = m @ orientation_matrix(image.orientation, image.raw_wh)
    return cv2.invertAffineTransform(m)


def pack_encoded(sample: TopdownSample, image: EncodedImage) -> dict[str, object]:
    """The sample dict of an encoded sample: ``encoded`` (the :class:`EncodedImage`), ``warp_inv`` float64 (2, 3)
    and the fields of :func:`wbpose.data.transforms.pack_fields` (targets as ``heatmap_x``/``heatmap_y``)."""
    if sample.warp is None:
        raise ValueError("pack_encoded needs the crop geometry: run TopdownAffine.set_geometry first")
    out: dict[str, object] = {"encoded": image, "warp_inv": torch.from_numpy(stored_inverse_warp(sample.warp, image))}
    out.update(pack_fields(sample))
    return out


def is_encoded_batch(batch: object) -> bool:
    """Whether ``batch`` is a collated batch of encoded samples (:func:`collate_encoded`)."""
    return isinstance(batch, dict) and ENCODED_KEY in batch


def collate_encoded(samples: Sequence[dict[str, object]]) -> dict[str, torch.Tensor]:
    """Collate encoded samples (the loader's ``collate_fn``): each file once, ``image_slot`` per sample, every
    other key stacked as the default collate does (the module docstring lists the keys)."""
    slots: dict[int, int] = {}
    files: list[EncodedImage] = []
    image_slot = []
    for s in samples:
        image = s["encoded"]
        if not isinstance(image, EncodedImage):
            raise TypeError(f"collate_encoded needs samples with an EncodedImage under 'encoded', got {type(image)}")
        if image.is_blank:
            image_slot.append(-1)
            continue
        key = id(image)  # the dataset shares one EncodedImage between the boxes of an image within a batch
        if key not in slots:
            slots[key] = len(files)
            files.append(image)
        image_slot.append(slots[key])
    sizes = [f.data.size for f in files]
    offsets = np.zeros(len(files) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = np.concatenate([f.data for f in files]) if files else np.zeros(0, np.uint8)
    batch = default_collate([{k: v for k, v in s.items() if k != "encoded"} for s in samples])
    batch.update(
        {
            "jpeg_data": torch.from_numpy(data),
            "jpeg_offsets": torch.from_numpy(offsets),
            "jpeg_wh": torch.tensor([f.raw_wh for f in files], dtype=torch.int64).reshape(-1, 2),
            "jpeg_is_jpeg": torch.tensor([f.jpeg for f in files], dtype=torch.bool),
            "image_slot": torch.tensor(image_slot, dtype=torch.int64),
        }
    )
    return batch

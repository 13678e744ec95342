"""The pixel half of the crop pipeline on the training device: batched JPEG decode, one warp, normalisation.

A batch of encoded samples (:mod:`wbpose.data.encoded`) becomes the batch the LightningModule expects
(``image``, and ``heatmaps`` when it has targets) in :class:`DevicePixels`, which the data module calls when the
batch reaches the device (``WholeBodyDataModule.transfer_batch_to_device``, ``data.decode_on=gpu``):

1. **Decode** each file of the batch once: on CUDA with nvJPEG through ``torchvision.io.decode_jpeg`` (all files
   in one call, which torchvision hands to the GPU's hardware JPEG decoder for baseline files where the GPU has one,
   A100 and later; torchvision is imported when first needed, never at import time), else, and for any file nvJPEG
   refuses (CMYK, arithmetic coding, other formats), with ``cv2.imdecode`` on the host. Output: RGB, as stored
   (the EXIF orientation is in the warp, ``wbpose.data.encoded``).
2. **Warp** every crop from its own inverse matrix with ``F.affine_grid`` + ``F.grid_sample`` (bilinear, zeros
   outside the image, ``align_corners=False``), the images zero-padded to the batch's largest: the same
   bilinear weights as ``cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0)``, then rounded and clamped to 0-255 as
   ``warpAffine`` stores its uint8 crop (:func:`warp_crops`; within one grey level on 99.9 % of values and more,
   ``tests/data/test_gpu_pixels.py``).
3. **Normalise** as the CPU path (``wbpose.data.transforms.normalize_image``: ``x * (1/std) - mean/std`` in RGB),
   into a channels-last tensor of ``dtype`` (float32, or bfloat16 for a bf16 step).
4. **Targets**: ``heatmaps = heatmap_y[..., :, None] * heatmap_x[..., None, :]``, the CPU path's maps bit for bit.

Coordinates (:func:`affine_theta`): ``cv2.warpAffine`` samples the source at ``A @ (x, y, 1)`` for the crop pixel
``(x, y)`` (pixel centres at integers, ``A`` the inverse of the sample's matrix). ``affine_grid`` works in
normalised coordinates; with ``align_corners=False`` pixel ``x`` of a row of ``W`` is ``(2x + 1) / W - 1``
in the crop and in the source alike, which gives ``theta`` below; the padded size stands for the source size
(the padding is zeros, as the border).

Memory: the crops are warped in chunks of ``chunk`` samples, each from a float32 copy of its samples' images
(``chunk x 3 x H x W`` floats: 300 MB for 64 images of 640x640), so a batch of 512 needs no more than a chunk's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from wbpose.data.encoded import HOST_KEYS
from wbpose.data.errors import DataError
from wbpose.data.transforms import MEAN_RGB, STD_RGB

__all__ = ["DevicePixels", "affine_theta", "decode_images", "pad_images", "render_heatmaps", "warp_crops"]

Decoder = Literal["auto", "nvjpeg", "cv2"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def affine_theta(warp_inv: torch.Tensor, out_wh: tuple[int, int], src_wh: tuple[int, int]) -> torch.Tensor:
    """``F.affine_grid`` matrices (``align_corners=False``) from crop -> source pixel matrices.

    Row ``i`` of ``theta`` is ``(a_i0 * w / S, a_i1 * h / S, (2 * (a_i0 * (w - 1) / 2 + a_i1 * (h - 1) / 2 +
    a_i2) + 1) / S - 1)`` with ``S`` the source width (row 0) or height (row 1) and ``(w, h)`` the crop size.
    Computed in float64, returned in float32.

    Shape:
        warp_inv: (B, 2, 3) -> (B, 2, 3)
    """
    a = warp_inv.to(torch.float64)
    w, h = out_wh
    size = torch.tensor([float(src_wh[0]), float(src_wh[1])], dtype=torch.float64, device=a.device)  # per row
    theta = torch.empty_like(a)
    theta[..., 0] = a[..., 0] * w / size
    theta[..., 1] = a[..., 1] * h / size
    centre = a[..., 0] * (w - 1) / 2 + a[..., 1] * (h - 1) / 2 + a[..., 2]
    theta[..., 2] = (2 * centre + 1) / size - 1
    return theta.to(torch.float32)


def warp_crops(
    images: torch.Tensor, slots: torch.Tensor, warp_inv: torch.Tensor, out_wh: tuple[int, int], chunk: int = 64
) -> torch.Tensor:
    """Warp one crop per sample from a batch of (zero-padded) images, as ``cv2.warpAffine`` makes a uint8 crop.

    Args:
        images: (U, 3, H, W) uint8 or float images, zero beyond each image's own size.
        slots: (B,) int64: the image of each sample; -1 gives an all-zero crop.
        warp_inv: (B, 2, 3): crop pixel -> image pixel (``cv2.invertAffineTransform`` of the warp).
        out_wh: crop (width, height).
        chunk: samples warped together (bounds the float32 copy of their images).

    Returns:
        (B, 3, h, w) float32 holding whole numbers 0-255 (bilinear, rounded half to even, clamped).
    """
    w, h = out_wh
    b = slots.shape[0]
    out = torch.zeros(b, images.shape[1], h, w, dtype=torch.float32, device=images.device)
    if b == 0 or images.shape[0] == 0:
        return out
    theta = affine_theta(warp_inv.to(images.device), out_wh, (images.shape[-1], images.shape[-2]))
    slots = slots.to(images.device)
    for start in range(0, b, chunk):
        part = slots[start : start + chunk]
        src = images.index_select(0, part.clamp(min=0)).to(torch.float32)
        grid = F.affine_grid(theta[start : start + chunk], [part.shape[0], src.shape[1], h, w], align_corners=False)
        crop = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        crop = crop.round_().clamp_(0, 255)
        out[start : start + chunk] = torch.where((part >= 0)[:, None, None, None], crop, 0.0)
    return out


def pad_images(images: Sequence[torch.Tensor], device: torch.device | str | None = None) -> torch.Tensor:
    """Stack decoded uint8 images of different sizes into one batch, each at the top left of a zero canvas of the
    largest height and width (what :func:`warp_crops` takes).

    Shape:
        images: N x (3, h_i, w_i) -> (N, 3, max h, max w), uint8, on ``device`` (default: the first image's)
    """
    device = device if device is not None else (images[0].device if images else "cpu")
    width = max((x.shape[2] for x in images), default=1)
    height = max((x.shape[1] for x in images), default=1)
    padded = torch.zeros(len(images), 3, height, width, dtype=torch.uint8, device=device)
    for u, image in enumerate(images):
        padded[u, :, : image.shape[1], : image.shape[2]] = image
    return padded


def render_heatmaps(heatmap_x: torch.Tensor, heatmap_y: torch.Tensor) -> torch.Tensor:
    """Heatmaps from their profiles: ``heatmap_y[..., :, None] * heatmap_x[..., None, :]`` (float32, exact).

    Shape:
        heatmap_x: (B, K, w), heatmap_y: (B, K, h) -> (B, K, h, w)
    """
    return heatmap_y.unsqueeze(-1) * heatmap_x.unsqueeze(-2)


def _cv2_decode(data: np.ndarray, jpeg: bool) -> np.ndarray | None:
    """RGB (H, W, 3) uint8 as stored (a JPEG's EXIF orientation not applied; other formats upright), or None."""
    flags = cv2.IMREAD_COLOR | (cv2.IMREAD_IGNORE_ORIENTATION if jpeg else 0)
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error:
        return None
    return None if image is None else np.ascontiguousarray(image[:, :, ::-1])


def _nvjpeg() -> Any:
    """``torchvision.io`` (imported here, on first use), or None without torchvision."""
    try:
        import torchvision.io as tv_io
    except ImportError:
        return None
    return tv_io


def decode_images(
    data: torch.Tensor,
    offsets: torch.Tensor,
    is_jpeg: torch.Tensor,
    device: torch.device,
    decoder: Decoder = "auto",
) -> tuple[list[torch.Tensor | None], int]:
    """Decode a batch's files to (3, H, W) uint8 RGB tensors on ``device``, as stored (no EXIF orientation).

    ``decoder``: "auto" (nvJPEG on a CUDA device when torchvision is there, else OpenCV), "nvjpeg" (required: an
    ``ImportError`` without torchvision), "cv2" (OpenCV on the host, then copied). Files nvJPEG refuses are decoded
    by OpenCV. A file neither decodes is ``None``.

    Returns:
        (images, number decoded by OpenCV).
    """
    data_np = data.numpy()
    bounds = offsets.tolist()
    files = [data_np[bounds[u] : bounds[u + 1]] for u in range(len(bounds) - 1)]
    jpeg = is_jpeg.tolist()
    out: list[torch.Tensor | None] = [None] * len(files)
    use_nvjpeg = decoder == "nvjpeg" or (decoder == "auto" and device.type == "cuda")
    tv_io = _nvjpeg() if use_nvjpeg else None
    if use_nvjpeg and tv_io is None:
        if decoder == "nvjpeg":
            raise ImportError("data.gpu_decoder=nvjpeg needs torchvision (torchvision.io.decode_jpeg on CUDA)")
        warnings.warn("torchvision is not installed: the JPEG files are decoded by OpenCV in the main process, "
                      "not by nvJPEG on the GPU", stacklevel=2)  # fmt: skip
        use_nvjpeg = False
    if use_nvjpeg and device.type != "cuda":
        raise ValueError(f"nvJPEG decodes on a CUDA device, not {device}")
    if use_nvjpeg:
        todo = [u for u in range(len(files)) if jpeg[u]]
        inputs = [torch.from_numpy(files[u]) for u in todo]
        if inputs:
            try:
                decoded = tv_io.decode_jpeg(inputs, mode=tv_io.ImageReadMode.RGB, device=device)
            except (RuntimeError, ValueError):  # one bad file fails the whole call: decode file by file
                decoded = []
                for x in inputs:
                    try:
                        decoded.append(tv_io.decode_jpeg(x, mode=tv_io.ImageReadMode.RGB, device=device))
                    except (RuntimeError, ValueError):
                        decoded.append(None)
            for u, image in zip(todo, decoded):
                out[u] = image
    on_host = 0
    for u, image in enumerate(out):
        if image is None:
            rgb = _cv2_decode(files[u], jpeg[u])
            if rgb is not None:
                on_host += 1
                out[u] = torch.from_numpy(rgb).to(device, non_blocking=False).permute(2, 0, 1)
    return out, on_host


def _check_decoded(decoded: list[torch.Tensor | None], batch: dict[str, Any], device: torch.device) -> None:
    """Raise a ``DataError`` naming the image ids when a file did not decode, or decoded to another size than
    its header gave (the worker checked the header against the annotation)."""
    wh = batch["jpeg_wh"].tolist()
    for u, image in enumerate(decoded):
        if image is not None and (image.shape[2], image.shape[1]) == tuple(wh[u]):
            continue
        slots = batch["image_slot"].tolist()
        ids = sorted({int(i) for i, s in zip(batch["image_id"].tolist(), slots) if s == u})
        if image is None:
            why = "neither nvJPEG nor OpenCV decodes it (corrupt data; decode_on=cpu names the file)"
        else:
            why = f"it decodes to {image.shape[2]}x{image.shape[1]}, its JPEG header says {wh[u][0]}x{wh[u][1]}"
        raise DataError(f"the image of image_id {ids} cannot be cropped on {device}: {why}")


class DevicePixels:
    """Turn a batch of encoded samples into the LightningModule's batch, on the batch's device (module docstring).

    Args:
        input_wh: crop (width, height).
        dtype: "float32" or "bfloat16": the dtype of ``image``.
        channels_last: lay ``image`` out NHWC (``torch.channels_last``).
        decoder: "auto", "nvjpeg" or "cv2" (:func:`decode_images`).
        chunk: samples warped together (:func:`warp_crops`).
    """

    def __init__(
        self,
        input_wh: Sequence[int],
        dtype: str = "float32",
        channels_last: bool = True,
        decoder: Decoder = "auto",
        chunk: int = 64,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"image dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if decoder not in ("auto", "nvjpeg", "cv2"):
            raise ValueError(f"decoder must be 'auto', 'nvjpeg' or 'cv2', got {decoder!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.input_wh = (int(input_wh[0]), int(input_wh[1]))
        self.dtype = _DTYPES[dtype]
        self.channels_last = channels_last
        self.decoder: Decoder = decoder
        self.chunk = int(chunk)
        #: Files decoded by OpenCV on the host so far (nvJPEG refused them, or the decoder is OpenCV).
        self.host_decoded = 0
        self._scale = torch.tensor([1.0 / s for s in STD_RGB], dtype=torch.float32)
        self._shift = torch.tensor([-m / s for m, s in zip(MEAN_RGB, STD_RGB)], dtype=torch.float32)

    def images(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        """The batch's crops, normalised: (B, 3, h, w) of :attr:`dtype`, channels-last when asked."""
        decoded, on_host = decode_images(batch["jpeg_data"], batch["jpeg_offsets"], batch["jpeg_is_jpeg"], device,
                                         self.decoder)  # fmt: skip
        self.host_decoded += on_host
        _check_decoded(decoded, batch, device)
        padded = pad_images(decoded, device)
        slots = batch["image_slot"].to(device)
        crops = warp_crops(padded, slots, batch["warp_inv"], self.input_wh, self.chunk)
        scale = self._scale.to(device)[None, :, None, None]
        shift = self._shift.to(device)[None, :, None, None]
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        out = torch.empty(crops.shape, dtype=self.dtype, device=device, memory_format=fmt)
        out.copy_(crops.mul_(scale).add_(shift))
        return out

    def __call__(self, batch: dict[str, Any], device: torch.device | None = None) -> dict[str, Any]:
        """The batch with ``image`` (and ``heatmaps`` from the profiles) and without the encoded fields.

        The files are read from host memory; every other tensor is expected on ``device`` (default: that of
        ``warp_inv``) already.
        """
        device = batch["warp_inv"].device if device is None else torch.device(device)
        out = {k: v for k, v in batch.items() if k not in HOST_KEYS and k not in ("image_slot", "warp_inv")}
        out["image"] = self.images(batch, device)
        if "heatmap_x" in batch:
            out["heatmaps"] = render_heatmaps(out.pop("heatmap_x"), out.pop("heatmap_y"))
        return out

    def __repr__(self) -> str:
        return (f"DevicePixels(input_wh={self.input_wh}, dtype={self.dtype}, channels_last={self.channels_last}, "
                f"decoder={self.decoder!r}, chunk={self.chunk})")  # fmt: skip

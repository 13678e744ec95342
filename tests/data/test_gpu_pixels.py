"""Crops made on the device (data.decode_on=gpu), on CPU tensors: the affine_grid/grid_sample warp against
cv2.warpAffine (INTER_LINEAR, BORDER_CONSTANT 0) over the augmentation's range of matrices, on synthetic and real
images; the decode, normalisation, layout and heatmaps of DevicePixels; its errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.jpeg import crop_matrices, encode_jpeg, textured_image, with_exif_orientation
from helpers.paths import SAMPLE_ANN, sample_root
from wbpose.data.encoded import EncodedImage, collate_encoded, stored_inverse_warp
from wbpose.data.errors import DataError
from wbpose.data.gpu_pixels import (
    DevicePixels,
    affine_theta,
    decode_images,
    pad_images,
    render_heatmaps,
    warp_crops,
)
from wbpose.data.transforms import MEAN_RGB, STD_RGB, normalize_image

OUT_WH = (192, 256)


def warp_like_cv2(images: list[np.ndarray], matrices: list[np.ndarray], out_wh=OUT_WH) -> np.ndarray:
    """The device warp of ``images[i]`` by ``matrices[i]`` (image -> crop) on CPU tensors, as (N, h, w, 3)."""
    padded = pad_images([torch.from_numpy(x).permute(2, 0, 1) for x in images])
    inverse = torch.from_numpy(np.stack([cv2.invertAffineTransform(m) for m in matrices]))
    crops = warp_crops(padded, torch.arange(len(images)), inverse, out_wh, chunk=4)
    return crops.permute(0, 2, 3, 1).numpy()


def assert_like_warp_affine(images: list[np.ndarray], matrices: list[np.ndarray]) -> float:
    """Every crop within one grey level of cv2.warpAffine on >= 99.9 % of values (and never more than 2 off);
    returns the fraction within one."""
    got = warp_like_cv2(images, matrices)
    expected = np.stack(
        [cv2.warpAffine(x, m, OUT_WH, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
         for x, m in zip(images, matrices)]
    )  # fmt: skip
    diff = np.abs(got - expected.astype(np.float32))
    within = float((diff <= 1).mean())
    assert within >= 0.999, f"only {within:.5f} of values within one grey level of cv2.warpAffine"
    assert diff.max() <= 2
    assert np.all(got == np.round(got)) and got.min() >= 0 and got.max() <= 255
    return within


def test_warp_matches_cv2_on_synthetic_images() -> None:
    rng = np.random.default_rng(0)
    images, matrices = [], []
    for h, w in ((480, 640), (427, 640), (612, 612), (37, 53)):  # COCO's sizes and a tiny one
        image = textured_image(rng, h, w)
        for m in crop_matrices(rng, (w, h), OUT_WH, 6):
            images.append(image)
            matrices.append(m)
    noise = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)  # white noise: the worst case for interpolation
    for m in crop_matrices(rng, (400, 300), OUT_WH, 4):
        images.append(noise)
        matrices.append(m)
    # a pure shift, an upscale, and a crop entirely outside the image (all zeros)
    for m in ([[1.0, 0, -10.25], [0, 1.0, -30.75]], [[3.1, 0, -100], [0, 3.1, -80]], [[1.0, 0, 5000], [0, 1, 0]]):
        images.append(noise)
        matrices.append(np.asarray(m))
    assert_like_warp_affine(images, matrices)
    assert not warp_like_cv2([noise], [np.asarray([[1.0, 0, 5000], [0, 1, 0]])]).any()


@pytest.mark.data
def test_warp_matches_cv2_on_the_real_sample() -> None:
    root = sample_root()
    rng = np.random.default_rng(1)
    images, matrices = [], []
    for path in sorted(root.glob("*.jpg")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for m in crop_matrices(rng, (image.shape[1], image.shape[0]), OUT_WH, 8):
            images.append(image)
            matrices.append(m)
    assert (root / SAMPLE_ANN).is_file() and len(images) >= 8
    assert_like_warp_affine(images, matrices)


def test_theta_maps_pixel_centres_as_cv2() -> None:
    """affine_grid's normalised coordinates, mapped back to source pixels, are A @ (x, y, 1) at the crop's corner
    and centre pixels."""
    a = torch.tensor([[[0.7, -0.2, 31.5], [0.3, 1.1, -4.25]]], dtype=torch.float64)
    theta = affine_theta(a, (8, 6), (50, 40))
    grid = torch.nn.functional.affine_grid(theta, [1, 3, 6, 8], align_corners=False)[0].double()
    src_x = ((grid[..., 0] + 1) * 50 - 1) / 2
    src_y = ((grid[..., 1] + 1) * 40 - 1) / 2
    for x, y in ((0, 0), (7, 5), (3, 2)):
        expected = a[0] @ torch.tensor([x, y, 1.0], dtype=torch.float64)
        assert abs(src_x[y, x] - expected[0]) < 1e-4 and abs(src_y[y, x] - expected[1]) < 1e-4


def encoded_batch(images: list[bytes], slots: list[int], matrices: list[np.ndarray], wh: list[tuple[int, int]]):
    files = [EncodedImage(np.frombuffer(d, np.uint8), size) for d, size in zip(images, wh)]
    files.append(EncodedImage.blank((8, 8)))
    samples = []
    for i, (slot, m) in enumerate(zip(slots, matrices)):
        image = files[slot]
        samples.append({"encoded": image, "warp_inv": torch.from_numpy(stored_inverse_warp(m, image)),
                        "image_id": torch.tensor(slot), "instance_id": torch.tensor(i),
                        "heatmap_x": torch.rand(5, 12), "heatmap_y": torch.rand(5, 16)})  # fmt: skip
    return collate_encoded(samples)


def test_device_pixels_decode_warp_normalise_and_heatmaps() -> None:
    rng = np.random.default_rng(2)
    pictures = [textured_image(rng, 60, 80), textured_image(rng, 90, 50)]
    data = [encode_jpeg(p) for p in pictures]
    decoded = [cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR) for d in data]
    matrices = [m for p in pictures for m in crop_matrices(rng, (p.shape[1], p.shape[0]), (48, 64), 2)]
    slots = [0, 0, 1, 1, 2]  # the last sample: a blank image (slot -1 after collation)
    matrices.append(np.eye(2, 3))
    batch = encoded_batch(data, slots, matrices, [(80, 60), (50, 90)])
    assert batch["image_slot"].tolist() == [0, 0, 1, 1, -1]
    pixels = DevicePixels((48, 64), dtype="float32", channels_last=True, decoder="cv2")
    out = pixels(dict(batch), torch.device("cpu"))
    assert set(out) == {"image", "image_id", "instance_id", "heatmaps"}
    image = out["image"]
    assert image.shape == (5, 3, 64, 48) and image.dtype == torch.float32
    assert image.is_contiguous(memory_format=torch.channels_last)
    for n in range(4):  # the CPU pipeline's crop, normalised the same way
        crop = cv2.warpAffine(decoded[slots[n]], matrices[n], (48, 64), flags=cv2.INTER_LINEAR)
        expected = torch.from_numpy(normalize_image(crop, bgr=True))
        grey = (image[n] - expected).abs() * torch.tensor(STD_RGB)[:, None, None]
        assert float((grey <= 1 + 1e-3).float().mean()) >= 0.999
    black = (0 - torch.tensor(MEAN_RGB)) / torch.tensor(STD_RGB)
    torch.testing.assert_close(image[4], black[:, None, None].expand(3, 64, 48))  # the blank sample
    heatmaps = render_heatmaps(batch["heatmap_x"], batch["heatmap_y"])
    assert torch.equal(out["heatmaps"], heatmaps) and heatmaps.shape == (5, 5, 16, 12)
    half = DevicePixels((48, 64), dtype="bfloat16", channels_last=False, decoder="cv2")(dict(batch))
    assert half["image"].dtype == torch.bfloat16 and half["image"].is_contiguous()
    torch.testing.assert_close(half["image"].float(), image, atol=0.02, rtol=0.01)


def test_decode_images_returns_stored_rgb_and_other_formats_upright() -> None:
    rng = np.random.default_rng(3)
    picture = textured_image(rng, 20, 30)
    jpeg = with_exif_orientation(encode_jpeg(picture), 6)
    png = cv2.imencode(".png", picture)[1].tobytes()
    data = torch.from_numpy(np.frombuffer(jpeg + png, np.uint8).copy())
    offsets = torch.tensor([0, len(jpeg), len(jpeg) + len(png)])
    images, on_host = decode_images(data, offsets, torch.tensor([True, False]), torch.device("cpu"))
    assert on_host == 2 and images[0].shape == (3, 20, 30)  # as stored: the orientation is in the warp
    raw = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert torch.equal(images[0], torch.from_numpy(raw[:, :, ::-1].copy()).permute(2, 0, 1))
    assert torch.equal(images[1], torch.from_numpy(picture[:, :, ::-1].copy()).permute(2, 0, 1))  # PNG: lossless


def test_errors_name_the_image() -> None:
    rng = np.random.default_rng(4)
    good = encode_jpeg(textured_image(rng, 16, 16))
    bad = b"\xff\xd8" + bytes(rng.integers(0, 256, 200, dtype=np.uint8)) + b"\xff\xd9"
    batch = encoded_batch([good, bad], [0, 1], [np.eye(2, 3)] * 2, [(16, 16), (16, 16)])
    with pytest.raises(DataError, match=r"image_id \[1\] cannot be cropped on cpu: neither nvJPEG nor OpenCV"):
        DevicePixels((8, 8), decoder="cv2")(dict(batch))
    wrong = encoded_batch([good], [0], [np.eye(2, 3)], [(20, 16)])
    with pytest.raises(DataError, match=r"decodes to 16x16, its JPEG header says 20x16"):
        DevicePixels((8, 8), decoder="cv2")(dict(wrong))
    with pytest.raises(ValueError, match="dtype"):
        DevicePixels((8, 8), dtype="float16")
    with pytest.raises(ValueError, match="decoder"):
        DevicePixels((8, 8), decoder="pil")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_nvjpeg_asked_without_torchvision_says_so() -> None:
    data = encode_jpeg(textured_image(np.random.default_rng(5), 16, 16))
    batch = encoded_batch([data], [0], [np.eye(2, 3)], [(16, 16)])
    with pytest.raises(ImportError, match="torchvision"):
        DevicePixels((8, 8), decoder="nvjpeg")(dict(batch))
    assert "torchvision" not in __import__("sys").modules  # "auto" on CPU never imports it


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nvjpeg_on_cuda_is_close_to_opencv(tmp_path: Path) -> None:
    """nvJPEG and libjpeg(-turbo) may differ by a few grey levels (IDCT, chroma upsampling): the crops stay close."""
    rng = np.random.default_rng(6)
    pictures = [textured_image(rng, 120, 160), textured_image(rng, 100, 70)]
    data = [with_exif_orientation(encode_jpeg(pictures[0]), 3), encode_jpeg(pictures[1])]
    matrices = [crop_matrices(rng, (160, 120), (48, 64), 1)[0], crop_matrices(rng, (70, 100), (48, 64), 1)[0]]
    batch = encoded_batch(data, [0, 1], matrices, [(160, 120), (70, 100)])
    cuda = DevicePixels((48, 64), decoder="nvjpeg")(
        {k: (v.cuda() if k in ("warp_inv", "image_slot") else v) for k, v in batch.items()}, torch.device("cuda")
    )
    host = DevicePixels((48, 64), decoder="cv2")(dict(batch))
    grey = (cuda["image"].cpu() - host["image"]).abs() * torch.tensor(STD_RGB)[:, None, None]
    assert float(grey.mean()) < 2.0 and float((grey <= 4).float().mean()) > 0.95

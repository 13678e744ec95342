"""Encoded samples (data.decode_on=gpu), the worker side: JPEG headers and EXIF orientation read without decoding,
the orientation folded into the warp, the checks a worker can make, and the collate that sends each file once."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.jpeg import encode_jpeg, textured_image, with_exif_orientation
from wbpose.data.encoded import (
    EncodedImage,
    collate_encoded,
    is_encoded_batch,
    jpeg_header,
    orientation_matrix,
    read_encoded,
    stored_inverse_warp,
)
from wbpose.geometry import warp_matrix


def test_jpeg_header_reads_size_components_and_orientation() -> None:
    rng = np.random.default_rng(0)
    colour = encode_jpeg(textured_image(rng, 37, 53))
    assert jpeg_header(colour) == (53, 37, 3, 1)
    grey = cv2.imencode(".jpg", textured_image(rng, 20, 30)[:, :, 0])[1].tobytes()
    assert jpeg_header(grey) == (30, 20, 1, 1)
    progressive = cv2.imencode(".jpg", textured_image(rng, 24, 16), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert jpeg_header(progressive) == (16, 24, 3, 1)
    for orientation in range(1, 9):
        for order in ("II", "MM"):
            assert jpeg_header(with_exif_orientation(colour, orientation, order)) == (53, 37, 3, orientation)
    assert jpeg_header(with_exif_orientation(colour, 9)) == (53, 37, 3, 1)  # not an orientation: ignored
    assert jpeg_header(b"\x89PNG\r\n") is None
    assert jpeg_header(colour[:20]) is None  # cut before the frame header
    assert jpeg_header(b"\xff\xd8\xff\xda\x00\x02") is None  # a scan before any frame header


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_in_the_warp_equals_warping_the_upright_image(tmp_path: Path, orientation: int) -> None:
    """cv2.imdecode turns the image upright; warping the stored pixels with the orientation folded into the matrix
    reads exactly the same pixels (a mirror / quarter turn of the pixel grid)."""
    rng = np.random.default_rng(orientation)
    stored = textured_image(rng, 48, 64)
    data = with_exif_orientation(encode_jpeg(stored, 95), orientation)
    path = tmp_path / "exif.jpg"
    path.write_bytes(data)
    upright = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    image, why = read_encoded(str(path))
    assert why is None and image.raw_wh == (64, 48) and image.orientation == orientation
    assert image.wh == (upright.shape[1], upright.shape[0])
    if orientation > 1:
        assert not np.array_equal(upright[: raw.shape[0], : raw.shape[1]], raw)  # OpenCV did turn it
    w, h = image.wh
    m = warp_matrix(np.array([w * 0.4, h * 0.6]), np.array([w * 0.5, h * 0.5 * 4 / 3]), 17.0, (24, 32))
    expected = cv2.warpAffine(upright, m, (24, 32), flags=cv2.INTER_LINEAR)
    inverse = stored_inverse_warp(m, image)
    got = cv2.warpAffine(raw, inverse, (24, 32), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    np.testing.assert_array_equal(got, expected)


def test_orientation_matrix_rejects_other_values() -> None:
    assert np.array_equal(orientation_matrix(1, (5, 3)), np.eye(3))
    with pytest.raises(ValueError, match="1-8"):
        orientation_matrix(0, (5, 3))


def test_read_encoded_names_what_is_wrong_without_decoding(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = encode_jpeg(textured_image(rng, 40, 30))
    (tmp_path / "ok.jpg").write_bytes(data)
    image, why = read_encoded(str(tmp_path / "ok.jpg"))
    assert why is None and image.jpeg and image.raw_wh == (30, 40) and bytes(image.data) == data
    assert read_encoded(str(tmp_path / "none.jpg")) == (None, "missing")
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    assert read_encoded(str(tmp_path / "half.jpg")) == (None, "truncated")
    (tmp_path / "noframe.jpg").write_bytes(b"\xff\xd8\xff\xfe\x00\x04ab\xff\xd9")
    assert read_encoded(str(tmp_path / "noframe.jpg")) == (None, "corrupt: no JPEG frame header")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    assert read_encoded(str(tmp_path / "junk.jpg")) == (None, "corrupt")
    png = textured_image(rng, 12, 18)
    cv2.imwrite(str(tmp_path / "p.png"), png)
    image, why = read_encoded(str(tmp_path / "p.png"))  # other formats: checked by decoding, sent as they are
    assert why is None and not image.jpeg and image.raw_wh == (18, 12) and image.orientation == 1


def test_collate_sends_each_file_once_and_marks_blank_samples() -> None:
    a = EncodedImage(np.arange(5, dtype=np.uint8), (4, 3))
    b = EncodedImage(np.arange(100, 103, dtype=np.uint8), (2, 2), orientation=6)
    blank = EncodedImage.blank((4, 3))

    def sample(image: EncodedImage, i: int) -> dict:
        return {"encoded": image, "warp_inv": torch.full((2, 3), float(i), dtype=torch.float64),
                "instance_id": torch.tensor(i)}  # fmt: skip

    batch = collate_encoded([sample(a, 0), sample(b, 1), sample(a, 2), sample(blank, 3), sample(b, 4)])
    assert is_encoded_batch(batch) and not is_encoded_batch({"image": 1})
    assert batch["image_slot"].tolist() == [0, 1, 0, -1, 1]
    assert batch["jpeg_offsets"].tolist() == [0, 5, 8]
    assert batch["jpeg_data"].tolist() == [0, 1, 2, 3, 4, 100, 101, 102]
    assert batch["jpeg_wh"].tolist() == [[4, 3], [2, 2]] and batch["jpeg_is_jpeg"].tolist() == [True, True]
    assert batch["warp_inv"].shape == (5, 2, 3) and batch["warp_inv"].dtype == torch.float64
    assert batch["instance_id"].tolist() == [0, 1, 2, 3, 4] and "encoded" not in batch
    only_blank = collate_encoded([sample(blank, 0)])
    assert only_blank["jpeg_data"].numel() == 0 and only_blank["jpeg_wh"].shape == (0, 2)
    with pytest.raises(TypeError, match="EncodedImage"):
        collate_encoded([{"encoded": b"bytes"}])

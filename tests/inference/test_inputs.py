"""The Predictor's image reader (``wbpose.inference.inputs``): a bad file is named with what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.annotations import write_images
from helpers.bad_images import break_image
from wbpose.inference.inputs import read_bgr


@pytest.mark.parametrize("how", ["scrambled", "cut_and_closed"])
def test_a_jpeg_libjpeg_finds_corrupt_is_named_with_libjpeg_message(tmp_path: Path, how: str) -> None:
    path = tmp_path / write_images(tmp_path, [1])[0]["file_name"]
    break_image(path, how)
    with pytest.raises(ValueError) as err:
        read_bgr(path)
    message = str(err.value)
    assert message.startswith(f"cannot read image {path}: corrupt: libjpeg reports 'Corrupt JPEG data")
    assert "not an image format" not in message  # libjpeg said what is wrong: no guess about the format


def test_a_file_opencv_cannot_decode_says_so(tmp_path: Path) -> None:
    path = tmp_path / write_images(tmp_path, [1])[0]["file_name"]
    break_image(path, "corrupt")
    with pytest.raises(ValueError, match=r"cannot read image .*: corrupt, or not an image format OpenCV decodes"):
        read_bgr(path)

"""Bad image files for the fault tests: a dataset root of one person per image, and ways to break an image.

:func:`break_image` makes a JPEG written by :func:`helpers.annotations.write_images` "corrupt" (garbage bytes),
"truncated" (its first half: OpenCV still decodes that, filling the rest with grey), "missing" (deleted),
"wrong_size" (a readable JPEG of another size than the annotation file says), "scrambled" (64 garbage bytes in the
middle of its entropy-coded data) or "cut_and_closed" (its first half given its end-of-image marker back): the last
two decode without an error and with the rest of the picture wrong; only libjpeg's warning tells.
:data:`REASONS` is what ``read_image_file`` (and so the bad-image messages) says for each.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from helpers.annotations import ANN_FILE, coco_wholebody, person, write_images, write_json

#: The ways :func:`break_image` breaks a file.
BREAKS = ("corrupt", "truncated", "missing", "wrong_size", "scrambled", "cut_and_closed")
#: The reason the bad-image messages give for each way (a regular expression for the whole reason).
_LIBJPEG = (
    re.escape("corrupt: libjpeg reports 'Corrupt JPEG data: ")
    + r".*"
    + re.escape("(the decoded pixels would be wrong)")
)
REASONS = {"corrupt": "corrupt", "truncated": "truncated", "missing": "missing", "wrong_size": r"decodes to .*",
           "scrambled": _LIBJPEG, "cut_and_closed": _LIBJPEG}  # fmt: skip


def image_file(root: Path, split: str, image_id: int) -> Path:
    """The JPEG of ``image_id`` in a root written by :func:`one_person_root`."""
    return root / f"{split}2017" / f"{image_id:012d}.jpg"


def break_image(path: Path, how: str) -> None:
    """Break the image file ``path`` in one of the :data:`BREAKS` ways."""
    if how == "corrupt":
        path.write_bytes(b"not an image " + np.random.default_rng(7).integers(0, 256, 3000, np.uint8).tobytes())
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "missing":
        path.unlink()
    elif how == "wrong_size":
        cv2.imwrite(str(path), np.full((50, 70, 3), 128, np.uint8))
    elif how == "scrambled":
        data = path.read_bytes()
        middle = len(data) // 2
        garbage = np.random.default_rng(11).integers(0, 256, 64, np.uint8).tobytes()
        path.write_bytes(data[:middle] + garbage + data[middle + 64 :])
    elif how == "cut_and_closed":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    else:
        raise ValueError(f"unknown way to break an image: {how!r}; expected one of {BREAKS}")


def one_person_root(root: Path, num_train: int = 200, num_val: int = 8) -> Path:
    """A dataset root with one person (ann id = image id) on each 160x120 image, ``num_train`` training and
    ``num_val`` validation images, and no detection file (validate with ``data.val_bbox_source=gt``)."""
    for split, count in (("train", num_train), ("val", num_val)):
        ids = list(range(1, count + 1))
        images = write_images(root / f"{split}2017", ids)
        people = [person(i, i, [40 + i % 20, 8 + i % 5, 60, 100], seed=3) for i in ids]
        write_json(root / ANN_FILE.format(split=split), coco_wholebody(images, people))
    return root

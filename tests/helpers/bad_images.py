"""Bad image files for the fault tests: a dataset root of one person per image, and ways to break an image.

:func:`break_image` makes a JPEG written by :func:`helpers.annotations.write_images` "corrupt" (garbage bytes),
"truncated" (its first half: OpenCV still decodes that, filling the rest with grey), "missing" (deleted) or
"wrong_size" (a readable JPEG of another size than the annotation file says).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from helpers.annotations import ANN_FILE, coco_wholebody, person, write_images, write_json

#: The ways :func:`break_image` breaks a file.
BREAKS = ("corrupt", "truncated", "missing", "wrong_size")


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

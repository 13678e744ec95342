"""Bad image files: reading an image with every failure named, and the policy for bad images during a run.

:func:`read_image_file` decodes like ``cv2.imread(path, cv2.IMREAD_COLOR)`` (BGR uint8, EXIF orientation applied)
but says why it could not: ``"missing"``, ``"unreadable"`` (an OS error), ``"truncated"`` or ``"corrupt"``.

Truncation: libjpeg decodes a JPEG cut short without an error (it fills the missing rows with grey and only prints
"Premature end of JPEG file"), so a JPEG (``FF D8`` at the start) must end with its end-of-image marker ``FF D9``.
The check costs nothing for a normal file (its last two bytes, after trailing zeros or whitespace); a file with
other bytes after the marker (camera trailers, appended previews) is accepted when an ``FF D9`` follows the last
start-of-scan marker ``FF DA`` (neither pair can occur inside entropy-coded data, where an ``FF`` byte is always
followed by ``00`` or a restart marker). A truncated PNG is not decoded by OpenCV at all ("corrupt").

:class:`BadImagePolicy` is the ``data.bad_images`` config node (README "Faults"): ``strict`` raises
:class:`~wbpose.data.errors.DataError` on the first bad image; otherwise training replaces a bad sample by the
next instance whose image reads and stops once more distinct bad images than ``budget`` allows were seen, and
evaluation predicts nothing for the boxes of a bad image. The counting and the stop happen in the LightningModule
(``wbpose.engine.module``), which sees every loader worker's batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

__all__ = [
    "BAD_ROWS_KEY",
    "BadImagePolicy",
    "format_bad_images",
    "jpeg_is_truncated",
    "note_bad_rows",
    "read_image_file",
]

#: Batch key of the instance indices (a list of ints) of the rows whose image was bad, read from the ``bad_index``
#: tensor while the batch is still on the host (:func:`note_bad_rows`), so counting never waits for the device.
BAD_ROWS_KEY = "bad_rows"

_JPEG_START, _JPEG_END, _JPEG_SCAN = b"\xff\xd8", b"\xff\xd9", b"\xff\xda"


def jpeg_is_truncated(data: bytes) -> bool:
    """Whether ``data`` is a JPEG that lacks its end-of-image marker (see the module docstring); ``False`` for
    anything that is not a JPEG."""
    if data[:2] != _JPEG_START:
        return False
    if data.rstrip(b"\x00\t\n\r ")[-2:] == _JPEG_END:
        return False
    scan = data.rfind(_JPEG_SCAN)
    return scan < 0 or data.find(_JPEG_END, scan + 2) < 0


def read_image_file(path: str) -> tuple[np.ndarray | None, str | None]:
    """Decode an image file as BGR uint8 (H, W, 3), as ``cv2.imread(path, cv2.IMREAD_COLOR)`` does.

    Returns:
        ``(image, None)``, or ``(None, why)`` with ``why`` one of ``"missing"``, ``"unreadable: <OS error>"``,
        ``"truncated"``, ``"corrupt"``.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, "missing"
    except OSError as err:
        return None, f"unreadable: {err.strerror or err}"
    if jpeg_is_truncated(data):
        return None, "truncated"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:
        image = None
    return (None, "corrupt") if image is None else (image, None)


@dataclass(frozen=True)
class BadImagePolicy:
    """What a run does with an image that is missing, truncated, corrupt or of the wrong size.

    Attributes:
        strict: raise ``DataError`` on the first bad image (training and evaluation).
        budget: the most distinct bad training images a run survives: below 1 a fraction of the training images
            (rounded down), 1 or more a number of images, ``None`` no limit.
    """

    strict: bool = False
    budget: float | None = 0.001

    def __post_init__(self) -> None:
        budget = self.budget
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, int | float) or not math.isfinite(budget):
                raise ValueError(f"data.bad_images.budget must be a number >= 0 or null, got {budget!r}")
            if budget < 0 or (budget >= 1 and budget != int(budget)):
                raise ValueError(
                    f"data.bad_images.budget={budget!r}: expected a fraction of the training images in [0, 1) "
                    "(e.g. 0.001), a whole number of images (e.g. 20), or null for no limit"
                )

    @classmethod
    def from_config(cls, node: BadImagePolicy | Mapping[str, Any] | None) -> BadImagePolicy:
        """The policy of a ``data.bad_images`` node (a mapping with ``strict`` and ``budget``; ``None``: defaults)."""
        if node is None:
            return cls()
        if isinstance(node, cls):
            return node
        values = dict(node)
        unknown = sorted(set(values) - {"strict", "budget"})
        if unknown:
            raise ValueError(f"data.bad_images has unknown keys {unknown}; expected 'strict' and 'budget'")
        return cls(strict=bool(values.get("strict", False)), budget=values.get("budget", cls.budget))

    def limit(self, num_images: int | None) -> int | None:
        """The most bad images allowed in a set of ``num_images`` (``None``: no limit, or a fraction of an unknown
        set)."""
        if self.budget is None:
            return None
        if self.budget >= 1:
            return int(self.budget)
        return None if num_images is None else int(math.floor(self.budget * num_images))


def note_bad_rows(batch: Any) -> Any:
    """Add :data:`BAD_ROWS_KEY` to a collated batch dict with a ``bad_index`` tensor (a ``on_before_batch_transfer``
    hook: the batch is on the host); any other batch is returned as it is."""
    bad = batch.get("bad_index") if isinstance(batch, dict) else None
    if isinstance(bad, torch.Tensor):
        batch[BAD_ROWS_KEY] = bad[bad >= 0].tolist()
    return batch


def format_bad_images(lines: Iterable[str]) -> str:
    """One bad image per indented line, every one of them."""
    return "\n".join(f"  {line}" for line in lines)

"""Bad image files: reading an image with every failure named, and the policy for bad images during a run.

:func:`read_image_file` decodes like ``cv2.imread(path, cv2.IMREAD_COLOR)`` (BGR uint8, EXIF orientation applied)
but says why it could not: ``"missing"``, ``"unreadable"`` (an OS error), ``"truncated"`` or ``"corrupt"``.

Truncation: libjpeg decodes a JPEG cut short without an error (it fills the missing rows with grey and only prints
"Premature end of JPEG file"), so a JPEG (``FF D8`` at the start) must end with its end-of-image marker ``FF D9``.
The check costs nothing for a normal file (its last two bytes, after trailing zeros or whitespace); a file with
other bytes after the marker (camera trailers, appended previews) is accepted when an ``FF D9`` follows the last
start-of-scan marker ``FF DA`` (neither pair can occur inside entropy-coded data, where an ``FF`` byte is always
followed by ``00`` or a restart marker). A truncated PNG is not decoded by OpenCV at all ("corrupt").

Corrupt entropy-coded data: a JPEG with garbage in its middle, or cut and given its end marker back, decodes
without an error too, with the rest of the image wrong (libjpeg loses its place in the Huffman stream, prints
"Corrupt JPEG data: premature end of data segment" on stderr and fills in). OpenCV does not report libjpeg's
warnings, and no byte-level scan can see this (only Huffman decoding tells where the data ends), so
:func:`read_image_file` listens for the warning of the one decode it does anyway: for a JPEG, file descriptor 2
points at a per-process scratch file during ``cv2.imdecode`` (two ``dup2`` calls and an ``lseek``, a few
microseconds; a lock keeps threads of one process from interleaving their redirections). A message libjpeg
prints as corrupt data (:func:`libjpeg_corruption`) makes the image ``"corrupt: ..."`` with that message; any
other text found there (another thread's output, a harmless libjpeg note) is written on to the real stderr.
Decoding with another library that raises on such data (``simplejpeg`` with ``strict=True``) was weighed and
left: it is bit-identical to OpenCV on the sample and synthetic JPEGs, but it would be a second JPEG decoder whose
pixels must keep matching OpenCV's (which MMPose parity rests on) across both packages' upgrades, and it does not
apply EXIF orientation. libjpeg prints only the first warning of a decode, so a file whose first warning is
harmless (an unknown JFIF revision) and whose data is corrupt later is not caught.

:class:`BadImagePolicy` is the ``data.bad_images`` config node (docs/reliability.md): ``strict`` raises
:class:`~wbpose.data.errors.DataError` on the first bad image; otherwise training replaces a bad sample by the
next instance whose image reads and stops once more distinct bad images than ``budget`` allows were seen, and
evaluation predicts nothing for the boxes of a bad image. The counting and the stop happen in the LightningModule
(``wbpose.engine.module``), which sees every loader worker's batches.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
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
    "libjpeg_corruption",
    "note_bad_rows",
    "read_image_bytes",
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


#: The start of every libjpeg(-turbo) warning that means the decoded pixels are wrong (jerror.h: JWRN_HIT_MARKER,
#: JWRN_HUFF_BAD_CODE, JWRN_ARITH_BAD_CODE, JWRN_MUST_RESYNC, JWRN_EXTRANEOUS_DATA, JWRN_JPEG_EOF,
#: JWRN_BOGUS_PROGRESSION). "Corrupt JPEG data: bad ICC marker" concerns metadata only and is not among them.
_LIBJPEG_CORRUPT = ("Corrupt JPEG data", "Premature end of JPEG file", "Inconsistent progression sequence")
_LIBJPEG_HARMLESS = ("Corrupt JPEG data: bad ICC marker",)


def libjpeg_corruption(text: str) -> tuple[str | None, str]:
    """Split what libjpeg printed during a decode into ``(the first corrupt-data message or None, other text)``."""
    found, rest = None, []
    for line in text.splitlines(keepends=True):
        message = line.strip()
        if found is None and message.startswith(_LIBJPEG_CORRUPT) and not message.startswith(_LIBJPEG_HARMLESS):
            found = message
        else:
            rest.append(line)
    return found, "".join(rest)


class _StderrListener:
    """Points file descriptor 2 at a scratch file around a call and returns what was written there.

    One per process: the scratch file and the lock are made anew in a forked child (a loader worker), which must not
    share the parent's file offset or inherit a lock held by another thread at the fork.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scratch: Any = None

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.scratch = None

    def decode(self, buffer: np.ndarray) -> tuple[np.ndarray | None, str]:
        """``cv2.imdecode(buffer, IMREAD_COLOR)`` and the text written to fd 2 meanwhile (``""``: none, or fd 2 could
        not be redirected)."""
        with self.lock:
            try:
                if self.scratch is None:
                    self.scratch = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the process's life
                fd = self.scratch.fileno()
                saved = os.dup(2)
            except OSError:  # no fd 2 to borrow (a daemon): decode unobserved
                return cv2.imdecode(buffer, cv2.IMREAD_COLOR), ""
            try:
                os.dup2(fd, 2)
                try:
                    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
                finally:
                    os.dup2(saved, 2)
            finally:
                os.close(saved)
            written = os.lseek(fd, 0, os.SEEK_CUR)  # fd 2 shared the scratch file's offset
            if not written:
                return image, ""
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, written).decode("utf-8", "replace")
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            return image, text


_LISTENER = _StderrListener()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_LISTENER.reset)


def _decode_jpeg(buffer: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Decode a JPEG with ``cv2.imdecode``; ``(None, "corrupt: <libjpeg's message>")`` when libjpeg reports corrupt
    data (the module docstring)."""
    image, printed = _LISTENER.decode(buffer)
    if not printed:
        return image, None
    corrupt, rest = libjpeg_corruption(printed)
    if rest:
        os.write(2, rest.encode())
    if corrupt is not None:
        return None, f"corrupt: libjpeg reports {corrupt!r} (the decoded pixels would be wrong)"
    return image, None


def read_image_bytes(path: str) -> tuple[bytes | None, str | None]:
    """Read an image file's bytes with the checks that need no decoding.

    Returns:
        ``(data, None)``, or ``(None, why)`` with ``why`` one of ``"missing"``, ``"unreadable: <OS error>"``,
        ``"truncated"`` (a JPEG without its end marker) or ``"corrupt"`` (an empty file).
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
    if not data:
        return None, "corrupt"
    return data, None


def read_image_file(path: str) -> tuple[np.ndarray | None, str | None]:
    """Decode an image file as BGR uint8 (H, W, 3), as ``cv2.imread(path, cv2.IMREAD_COLOR)`` does.

    Returns:
        ``(image, None)``, or ``(None, why)`` with ``why`` one of ``"missing"``, ``"unreadable: <OS error>"``,
        ``"truncated"``, ``"corrupt"`` (OpenCV cannot decode it) or ``"corrupt: libjpeg reports ..."`` (a JPEG
        whose data libjpeg found corrupt while decoding it).
    """
    data, why = read_image_bytes(path)
    if data is None:
        return None, why
    buffer = np.frombuffer(data, np.uint8)
    try:
        if data[:2] == _JPEG_START:
            image, why = _decode_jpeg(buffer)
            if why is not None:
                return None, why
        else:
            image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
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

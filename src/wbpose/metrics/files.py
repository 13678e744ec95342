"""Atomic writes of result files, readable like any file the user writes.

A temporary file in the target folder is written, given the mode ``open`` would have given (0666 less the
umask; ``tempfile.mkstemp`` makes 0600 files, which other users of a shared results folder cannot read), then
renamed over the target, so a killed run never leaves half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["default_file_mode", "write_atomic"]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore (the only portable way to read it)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a new file gets from ``open(path, "w")``: 0666 less the umask (0644 under the usual 022)."""
    return 0o666 & ~_umask()


def write_atomic(path: str | Path, data: bytes | Iterable[bytes]) -> Path:
    """Write ``data`` (bytes, or pieces of bytes in order) to ``path`` atomically, with :func:`default_file_mode`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes | bytearray):
                f.write(data)
            else:
                f.writelines(data)
            os.fchmod(f.fileno(), default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path

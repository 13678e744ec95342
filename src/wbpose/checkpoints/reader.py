"""The one checkpoint reader: ``torch.load(weights_only=True)`` with a numpy allow-list, and the config keys.

Every checkpoint the project opens (our Lightning ``.ckpt`` files, MMPose ``.pth`` files, converted files,
ImageNet backbones) is read by :func:`read_checkpoint`, so opening a file never runs code from it. MMPose ``meta``
dicts hold plain Python values, sometimes numpy scalars/arrays (best scores, 1.x ``dataset_meta``): only those
numpy globals are allow-listed, inside a ``safe_globals`` context so the process-wide allow-list is untouched.
Anything else, such as a pickle that would call ``os.system``, is refused with a ``ValueError`` naming the file
and the globals it references. The config a checkpoint stores is read as data too (:func:`embedded_config`, checked
by :mod:`wbpose.checkpoints.stored_config`).

Before unpickling, :func:`check_checkpoint_file` looks at the file itself: a zip checkpoint (every ``torch.save``
since torch 1.6) must hold a ``data.pkl`` and every member must match the CRC-32 its writer stored (``torch.load``
never checks it, so bytes flipped inside a weight tensor would load silently); a legacy file must start like a
pickle; anything else (a text file, an ONNX model, random or no bytes) is "not a torch checkpoint". The CRC pass
reads the file once more and costs 40-50% of the ``torch.load`` it precedes, once per file opened
(``python benchmarks/checkpoint_read.py``, 115 MB HRNet-W32 file, one thread, page cache warm, on the shared
2-core machine: CRC 88 ms, load 230 ms).
"""

from __future__ import annotations

import os
import pickle
import string
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wbpose.checkpoints.stored_config import checked_config

__all__ = [
    "CONFIG_KEY",
    "LIGHTNING_VERSION_KEY",
    "RAW_CONFIG_KEY",
    "check_checkpoint_file",
    "checkpoint_problem",
    "embedded_config",
    "is_intact",
    "read_checkpoint",
]

#: Key under which our checkpoints store the resolved Hydra config (a plain dict): the exact record of the run.
CONFIG_KEY = "wbpose_config"
#: The same config before interpolation (``${paths.data_dir}`` kept), so that evaluation on another machine
#: re-resolves paths there.
RAW_CONFIG_KEY = "wbpose_config_raw"
#: Key every Lightning checkpoint carries.
LIGHTNING_VERSION_KEY = "pytorch-lightning_version"


def embedded_config(
    checkpoint: Mapping[str, Any], raw: bool = False, source: str | os.PathLike = "checkpoint"
) -> dict[str, Any] | None:
    """The training config stored in a checkpoint dict (resolved, or unresolved with ``raw``), if any, as data.

    Only the groups a checkpoint supplies (model, input, codec, module) come back, checked by
    :func:`wbpose.checkpoints.stored_config.checked_config`: a ``_target_`` outside the project's classes, another
    Hydra key or a resolver interpolation raises ``ValueError`` naming ``source`` and the node.
    """
    if not isinstance(checkpoint, Mapping):
        return None
    first, second = (RAW_CONFIG_KEY, CONFIG_KEY) if raw else (CONFIG_KEY, RAW_CONFIG_KEY)
    key = first if checkpoint.get(first) else second
    stored = checkpoint.get(key)
    return None if not stored else checked_config(stored, str(source), key)


def _numpy_safe_globals() -> list:
    """Numpy globals that plain numpy scalars/arrays/dtypes in a pickle need; none of them runs code."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray

    # numpy >= 1.25 builds each dtype through its own class (``numpy.dtypes.Float64DType`` ...).
    dtypes = getattr(np, "dtypes", None)
    dtype_classes = [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []
    return [
        np.ndarray,
        np.dtype,
        *dtype_classes,
        multiarray.scalar,
        multiarray._reconstruct,
        # Files pickled under numpy 1.x name the module ``numpy.core.multiarray``, numpy 2 ``numpy._core``.
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (multiarray.scalar, "numpy._core.multiarray.scalar"),
        (multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
    ]


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file on the CPU without executing code from it.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a torch checkpoint, truncated or corrupt (:func:`check_checkpoint_file`), or the pickle
            needs globals beyond tensors, containers and numpy values.
    """
    path = Path(path)
    check_checkpoint_file(path)
    allowed = _numpy_safe_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        allowed_names = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in allowed}
        try:
            # Scans the pickle opcodes without executing them.
            names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path) if n not in allowed_names]
        except Exception:  # legacy (non-zip) files cannot be scanned; the torch message still says why
            names = []
        if names:
            raise ValueError(
                f"refusing to load {path}: it is not a plain weights file; it references {', '.join(names)}, "
                "so loading it would run code from the file (weights_only=True refused it). Re-save it from a "
                "trusted environment as a plain state dict."
            ) from None
        raise ValueError(f"cannot read {path} as a weights-only checkpoint: {_unpickler_reason(err)}") from None
    except (RuntimeError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"{path} is truncated or corrupt, not a complete torch checkpoint (was its writer killed?): {reason}"
        ) from None
    except Exception as err:  # whatever else torch trips on inside a file that passed the checks above
        raise ValueError(f"cannot read {path} as a torch checkpoint: {type(err).__name__}: {err}") from None


def _unpickler_reason(err: Exception) -> str:
    """The informative line of torch's long weights_only message (the one after 'WeightsUnpickler error')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.split("WeightsUnpickler error:", 1)[-1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else line)
    return lines[0] if lines else type(err).__name__


#: How every ``torch.save`` zip file starts (a local file header); a legacy one is a pickle (protocol >= 2, so
#: starting with PROTO) whose first object is torch's magic number, 0x1950a86a20f9469cfc6c (little-endian bytes).
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_TEXT_BYTES = frozenset(string.printable.encode())


def _describe_start(head: bytes) -> str:
    """What a file that is not a checkpoint seems to be, from its first bytes (for the error message)."""
    if not head:
        return "the file is empty (0 bytes; was its writer killed?)"
    if head.startswith(_PICKLE_MAGIC):
        return "it is a pickle, but not one written by torch.save (no torch magic number)"
    if all(b in _TEXT_BYTES for b in head):
        return f"it is text, starting {head[:40].decode('ascii')!r}"
    if len(head) > 2 and head[0] == 0x08 and head[2] == 0x12:  # protobuf: ir_version then producer_name
        return "it looks like an ONNX model (give it to the ONNX runtime, not as a checkpoint)"
    return f"it starts with bytes {head[:8].hex(' ')}, neither a zip archive nor a pickle"


def check_checkpoint_file(path: str | os.PathLike) -> bool:
    """Check a checkpoint file's bytes before anything is unpickled, and say what is wrong with it.

    A zip checkpoint must hold a ``*/data.pkl`` and pass the CRC-32 of every member; a legacy (pre torch 1.6) file
    must start like a pickle (it has no checksum: :func:`read_checkpoint` still finds a torn one).

    Returns:
        ``True`` for a checked zip checkpoint, ``False`` for a legacy file (only loading it can tell more).

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``"<path> is not a torch checkpoint: ..."`` or ``"<path> is truncated or corrupt ..."``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(_PICKLE_MAGIC) and _LEGACY_MAGIC in head[:32]:
        return False
    if not head.startswith(_ZIP_MAGIC):
        raise ValueError(f"{path} is not a torch checkpoint: {_describe_start(head)}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                raise ValueError(
                    f"{path} is not a torch checkpoint: a zip archive without data.pkl (members: {names[:5]})"
                )
            bad = archive.testzip()  # CRC-32 of every member, 1 MiB at a time
    except zipfile.BadZipFile as err:
        raise ValueError(
            f"{path} is truncated or corrupt, not a complete torch checkpoint (was its writer killed?): {err}"
        ) from None
    except (OSError, EOFError, RuntimeError) as err:  # zlib/zip errors inside a member
        raise ValueError(f"{path} is truncated or corrupt: {type(err).__name__}: {err}") from None
    if bad is not None:
        raise ValueError(
            f"{path} is corrupt: the bytes of {bad} do not match the CRC-32 stored when the file was written "
            "(changed on disk or in transfer); use another copy of the checkpoint"
        )
    return True


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why a checkpoint file cannot be used (the error :func:`read_checkpoint` would raise), or ``None``.

    Zip files are only checked (CRC of every member, nothing unpickled); legacy files are loaded to tell.
    """
    try:
        if not check_checkpoint_file(path):
            read_checkpoint(path)
    except (FileNotFoundError, ValueError) as err:
        return str(err)
    return None


def is_intact(path: str | os.PathLike) -> bool:
    """Whether a checkpoint file is complete and uncorrupted (:func:`checkpoint_problem` finds nothing)."""
    return checkpoint_problem(path) is None

"""The one checkpoint reader: ``torch.load(weights_only=True)`` with a numpy allow-list, and the config keys.

Every checkpoint the project opens (our Lightning ``.ckpt`` files, MMPose ``.pth`` files, converted files,
ImageNet backbones) is read by :func:`read_checkpoint`, so opening a file never runs code from it. MMPose ``meta``
dicts hold plain Python values, sometimes numpy scalars/arrays (best scores, 1.x ``dataset_meta``): only those
numpy globals are allow-listed, inside a ``safe_globals`` context so the process-wide allow-list is untouched.
Anything else, such as a pickle that would call ``os.system``, is refused with a ``ValueError`` naming the file
and the globals it references. The config a checkpoint stores is read as data too (:func:`embedded_config`, checked
by :mod:`wbpose.checkpoints.stored_config`).
"""

from __future__ import annotations

import os
import pickle
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
        ValueError: the pickle needs globals beyond tensors, containers and numpy values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
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


def _unpickler_reason(err: Exception) -> str:
    """The informative line of torch's long weights_only message (the one after 'WeightsUnpickler error')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.split("WeightsUnpickler error:", 1)[-1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else line)
    return lines[0] if lines else type(err).__name__


def is_intact(path: str | os.PathLike) -> bool:
    """Whether a checkpoint file is complete: its zip directory is present and every member's CRC matches.

    Reads the file once without unpickling anything (cheaper than loading it, and it also catches bytes flipped in
    the middle, which ``torch.load`` does not check). Legacy (non-zip) files are loaded to tell.
    """
    path = Path(path)
    if not path.is_file():
        return False
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return archive.testzip() is None
        except (zipfile.BadZipFile, OSError, EOFError):
            return False
    try:
        read_checkpoint(path)
    except ValueError:
        return False
    return True

"""Checkpoints that cannot be torn: write to a temporary file in the same folder, fsync, rename.

``AtomicCheckpointIO`` is Lightning's ``TorchCheckpointIO`` with a local-disk write that survives a kill at any
point: the checkpoint is serialised to ``.<name>.tmp-<pid>`` beside the target, flushed and fsynced, then renamed
over the target (``os.replace``, atomic on POSIX), and the folder entry is fsynced too. A reader therefore sees the
old complete file or the new complete file, never a prefix. Remote paths (``s3://``...) fall back to Lightning's
own transactional save. Selected in ``conf/trainer/default.yaml`` (``plugins``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_torch_save"]


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` that leaves either the previous file or the complete new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself reaches the disk
    finally:
        os.close(directory)
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` writing local checkpoints with :func:`atomic_torch_save`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)

"""Checks before any training starts: a writable run folder with room for the checkpoints.

A 210-epoch run that fails at its first checkpoint, hours in, because the folder is read-only or the disk is
full, is the failure these catch up front. (A missing dataset is checked by
:func:`wbpose.data.layout.ensure_dataset`.)
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from torch import nn

__all__ = ["checkpoint_bytes", "check_output_dir"]

#: Checkpoints a run keeps at once: the best and last.ckpt (save_top_k=1 + save_last), one more being written.
CHECKPOINTS_KEPT = 3


def checkpoint_bytes(model: nn.Module, optimizer_states_per_param: int = 2) -> int:
    """Size of one checkpoint: fp32 weights and buffers plus the optimiser's per-parameter states (Adam: 2)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return params * (1 + optimizer_states_per_param) + buffers


def check_output_dir(output_dir: str | Path, model: nn.Module | None = None, margin: float = 1.5) -> None:
    """Raise a clear error when ``output_dir`` cannot be written or lacks room for the run's checkpoints.

    Raises:
        PermissionError: the folder cannot be created or written.
        OSError: free space below ``margin`` x :data:`CHECKPOINTS_KEPT` checkpoints of ``model``.
    """
    folder = Path(output_dir)
    probe = folder / f".write_test_{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"the run folder {folder} is not writable ({err.strerror or err}); pass paths.log_dir=<a writable "
            "folder> (or hydra.run.dir=...)"
        ) from None
    if model is None:
        return
    needed = int(margin * CHECKPOINTS_KEPT * checkpoint_bytes(model))
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(
            f"not enough disk space for the checkpoints in {folder}: {free / 2**20:.0f} MiB free, about "
            f"{needed / 2**20:.0f} MiB needed ({CHECKPOINTS_KEPT} checkpoints of "
            f"{checkpoint_bytes(model) / 2**20:.0f} MiB, x{margin} margin); free space or move paths.log_dir"
        )

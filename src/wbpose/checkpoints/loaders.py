"""Checkpoint readers shared by inference and evaluation: our Lightning ``.ckpt`` files and MMPose weights.

Every file is read with ``torch.load(weights_only=True)`` (through
:func:`wbpose.checkpoints.mmpose.read_checkpoint`, which allow-lists only numpy values), so opening a checkpoint
never runs code from it. Two kinds of file are told apart by their content, not their name:

- **native**: a Lightning checkpoint written by ``scripts/train.py``; it carries the resolved training config
  under ``wbpose.lit_module.CONFIG_KEY``, from which model and codec are rebuilt;
- **weights only**: an MMPose 0.x/1.x top-down HRNet ``.pth`` (``keypoint_head.*`` or ``head.*`` keys,
  ``data_preprocessor.*`` dropped), a file written by ``scripts/convert_mmpose.py``, or a ``.ckpt`` without a
  config. The HRNet arch is inferred from the tensor shapes; the input size and codec are *not* stored reliably
  in MMPose's ``meta`` (0.x keeps the config as text, 1.x only the dataset meta), so callers supply them.

:func:`load_mmpose_for_eval` plugs the weights-only kind into ``wbpose.evaluate.CHECKPOINT_LOADERS``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wbpose.checkpoints.mmpose import KeyReport, load_mmpose_checkpoint, read_checkpoint

if TYPE_CHECKING:  # evaluate imports the application; only its dataclass is needed here, at call time
    from wbpose.evaluate import LoadedCheckpoint

__all__ = [
    "LIGHTNING_VERSION_KEY",
    "NativeCheckpoint",
    "embedded_config",
    "is_native_checkpoint",
    "load_mmpose_for_eval",
    "read_native_checkpoint",
    "read_pose_weights",
]

#: Key every Lightning checkpoint carries.
LIGHTNING_VERSION_KEY = "pytorch-lightning_version"
_CONFIG_KEY = "wbpose_config"  # == wbpose.lit_module.CONFIG_KEY (not imported: that pulls in Lightning)
_RAW_CONFIG_KEY = "wbpose_config_raw"  # == wbpose.lit_module.RAW_CONFIG_KEY


@dataclass
class NativeCheckpoint:
    """A Lightning checkpoint of ``TopdownPoseModule``, read without executing code.

    Attributes:
        state_dict: ``TopdownPoseModel`` weights (the module's ``model.`` prefix removed).
        config: the resolved training config (plain dict), or ``None`` when the file has none.
        raw_config: the same before interpolation, or ``None``.
        source: the file, for messages.
    """

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    raw_config: dict[str, Any] | None
    source: str


def embedded_config(checkpoint: Mapping[str, Any], raw: bool = False) -> dict[str, Any] | None:
    """The training config stored in a checkpoint dict (resolved, or unresolved with ``raw``), if any."""
    if raw:
        return checkpoint.get(_RAW_CONFIG_KEY) or checkpoint.get(_CONFIG_KEY)
    return checkpoint.get(_CONFIG_KEY) or checkpoint.get(_RAW_CONFIG_KEY)


def is_native_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint dict is one of our Lightning files with an embedded config."""
    return isinstance(checkpoint, Mapping) and embedded_config(checkpoint) is not None


def read_native_checkpoint(path: str | os.PathLike, checkpoint: Mapping[str, Any] | None = None) -> NativeCheckpoint:
    """Read a ``TopdownPoseModule`` Lightning checkpoint with ``weights_only=True``.

    Args:
        path: the ``.ckpt`` file.
        checkpoint: the already loaded dict of ``path`` (saves a second read).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a plain weights file, or no ``model.*`` tensors in its ``state_dict``.
    """
    ckpt = read_checkpoint(path) if checkpoint is None else checkpoint
    state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict' mapping)")
    model_state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    if not model_state:
        raise ValueError(f"{path}: its state_dict has no 'model.*' tensors (keys start {sorted(state)[:3]})")
    return NativeCheckpoint(model_state, embedded_config(ckpt), embedded_config(ckpt, raw=True), str(path))


def read_pose_weights(
    path_or_checkpoint: str | os.PathLike | Mapping[str, Any], arch: str | None = None, source: str | None = None
) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """Read an MMPose 0.x/1.x (or converted, or config-less Lightning) HRNet pose checkpoint.

    Keys are mapped to ``TopdownPoseModel`` names and checked strictly against the inferred arch.

    Args:
        path_or_checkpoint: a file, or its already loaded dict.
        arch: the expected arch; ``None`` accepts whatever the weights are.
        source: name used in messages when a dict is given.

    Returns:
        ``(state_dict, report)``; ``report.checkpoint_arch`` is the inferred arch.

    Raises:
        ValueError: not an HRNet pose state dict, keys do not match, or ``arch`` differs from the weights.
    """
    state, report = load_mmpose_checkpoint(path_or_checkpoint, model=None, strict=True)
    if source is not None:
        report.source = source
    if arch is not None and arch != report.checkpoint_arch:
        raise ValueError(
            f"{report.source}: arch={arch!r} was requested, but the weights are HRNet-{report.checkpoint_arch}"
        )
    return state, report  # type: ignore[return-value]


def _looks_like_pose_weights(checkpoint: Any) -> bool:
    """True for a dict holding (under ``state_dict`` or at top level) HRNet backbone tensors."""
    if not isinstance(checkpoint, Mapping):
        return False
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        return False
    prefixes = ("backbone.", "module.backbone.", "model.backbone.")
    return any(isinstance(k, str) and k.startswith(prefixes) for k in state)


def load_mmpose_for_eval(path: str | os.PathLike) -> LoadedCheckpoint | None:
    """Evaluation loader for MMPose 0.x/1.x ``.pth`` files (and ``scripts/convert_mmpose.py`` output).

    Returns ``None`` for files it does not handle, so that ``wbpose.evaluate.load_checkpoint`` tries the next
    loader: ``.ckpt`` files, checkpoints with an embedded wbpose config, and files without HRNet pose weights.

    Returns:
        ``LoadedCheckpoint(state_dict, config=None, arch=<inferred>, source=path)``; the evaluation config must
        then name ``model=``, ``data=`` and ``codec=`` (the file does not say which input size or codec).

    Raises:
        ValueError: the file is an HRNet pose checkpoint whose keys do not fit our model (the message lists
            them), or it is not a plain weights file (it would run code when unpickled).
    """
    from wbpose.evaluate import LoadedCheckpoint

    path = Path(path)
    if path.suffix == ".ckpt" or not path.is_file():
        return None
    checkpoint = read_checkpoint(path)
    if is_native_checkpoint(checkpoint) or LIGHTNING_VERSION_KEY in checkpoint:
        return None
    if not _looks_like_pose_weights(checkpoint):
        return None
    state, report = read_pose_weights(checkpoint, source=str(path))
    return LoadedCheckpoint(state_dict=state, config=None, arch=report.checkpoint_arch, source=str(path))

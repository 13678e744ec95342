"""Load any supported pose checkpoint into one type, :class:`LoadedCheckpoint`.

Supported formats (:data:`FORMATS`), told apart by content, not by file name:

=============  ======================================================================================
``native``     a Lightning ``.ckpt`` written by ``scripts/train.py``: ``state_dict`` with ``model.*`` keys
               and the training config under :data:`~wbpose.checkpoints.reader.CONFIG_KEY`
``converted``  ``wbpose-convert`` output: ``{"state_dict", "arch", "num_keypoints", "source"}``
``mmpose``     an MMPose 0.x/1.x top-down HRNet ``.pth`` (``keypoint_head.*`` or ``head.*`` keys)
``imagenet``   an ImageNet HRNet backbone (unprefixed backbone keys); only a training start, see
               :func:`wbpose.checkpoints.init_weights.load_init_weights`
=============  ======================================================================================

Every file is read by :func:`wbpose.checkpoints.reader.read_checkpoint` (weights only) and its keys mapped to
``TopdownPoseModel`` names by :func:`wbpose.checkpoints.mmpose.normalize_pose_keys` (the one place that handles
the ``module.``/``model.``/``keypoint_head.`` prefixes). Weights without a config (``converted``, ``mmpose``)
carry a :class:`~wbpose.checkpoints.recipes.Recipe` when their file name is a released one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wbpose.checkpoints.mmpose import load_mmpose_checkpoint
from wbpose.checkpoints.reader import (
    CONFIG_KEY,
    LIGHTNING_VERSION_KEY,
    RAW_CONFIG_KEY,
    embedded_config,
    read_checkpoint,
)
from wbpose.checkpoints.recipes import Recipe, recipe_for_file

__all__ = [
    "FORMATS",
    "LoadedCheckpoint",
    "check_same_arch",
    "config_arch",
    "load_checkpoint",
    "load_state_dict_checked",
]

#: The checkpoint formats the project reads (see the module docstring).
FORMATS = ("native", "converted", "mmpose", "imagenet")


@dataclass
class LoadedCheckpoint:
    """Weights of a pose model and what is known about how they were trained.

    Attributes:
        state_dict: ``TopdownPoseModel`` keys (``backbone.*``, ``head.*``).
        format: one of :data:`FORMATS` (never ``imagenet``: backbones are not pose models).
        arch: the HRNet variant the weights belong to.
        config: the resolved training config (native files), else ``None``: only its model, input, codec and
            module groups, checked as data (:mod:`wbpose.checkpoints.stored_config`).
        raw_config: the same groups before interpolation (native files), else ``None``.
        recipe: input size and codec for weights without a config, from the file name; else ``None``.
        source: the file, for messages.
    """

    state_dict: dict[str, torch.Tensor]
    format: str
    arch: str | None
    config: dict[str, Any] | None
    raw_config: dict[str, Any] | None
    recipe: Recipe | None
    source: str


def config_arch(config: Any) -> str | None:
    """The architecture name of a config (``model.net.arch``), or ``None`` when it has none."""
    try:
        arch = config["model"]["net"]["arch"]
    except (KeyError, TypeError):
        return None
    return None if arch is None else str(arch)


def _format_of(checkpoint: Mapping[str, Any]) -> str:
    if checkpoint.get(CONFIG_KEY) or checkpoint.get(RAW_CONFIG_KEY) or LIGHTNING_VERSION_KEY in checkpoint:
        return "native"
    if {"state_dict", "arch", "source"} <= set(checkpoint):
        return "converted"
    return "mmpose"


def load_checkpoint(path: str | os.PathLike, arch: str | None = None) -> LoadedCheckpoint:
    """Read a pose checkpoint of any supported format (weights only; never runs code from the file).

    Args:
        path: the file.
        arch: the expected HRNet variant; checked against the weights when given.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a plain weights file, not an HRNet pose checkpoint, keys that do not fit the model, or
            weights of another arch than ``arch``.
    """
    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    fmt = _format_of(checkpoint)
    # one key map for all formats: model./module./keypoint_head. prefixes, data_preprocessor.* dropped
    state, report = load_mmpose_checkpoint(checkpoint, model=None, strict=True, source=str(path))
    found = report.checkpoint_arch
    if arch is not None and found is not None and arch != found:
        raise ValueError(f"{path}: arch={arch!r} was requested, but the weights are HRNet-{found}")
    # the stored config as data: refused (naming the file and node) if it names code outside the project
    config = embedded_config(checkpoint, source=path) if fmt == "native" else None
    raw = embedded_config(checkpoint, raw=True, source=path) if fmt == "native" else None
    recipe = None if config is not None else recipe_for_file(path)
    return LoadedCheckpoint(state, fmt, found, config, raw, recipe, str(path))  # type: ignore[arg-type]


def check_same_arch(expected: str | None, found: str | None, source: str) -> None:
    """Raise a clear error when a checkpoint was trained with another architecture than the config builds."""
    if expected and found and expected != found:
        raise ValueError(
            f"checkpoint {source} holds an HRNet-{found} model but the config builds HRNet-{expected}; "
            f"select the matching model (model=hrnet_{found}) or another checkpoint"
        )


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` whose error names the file and the first mismatching tensors."""
    own = module.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if mismatched or missing or unexpected:
        raise ValueError(
            f"checkpoint {source} does not fit the model (another architecture?): "
            f"{len(mismatched)} shape mismatches {mismatched[:3]}, {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    module.load_state_dict(state_dict, strict=True)

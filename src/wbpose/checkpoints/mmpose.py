"""Import MMPose HRNet checkpoints (0.x and 1.x top-down whole-body models, ImageNet backbones).

The key map is a short table, because ``wbpose.models`` uses MMPose's parameter names:

=========================  ===========================================================================
checkpoint key             our key
=========================  ===========================================================================
``module.*``               prefix stripped (checkpoints saved from a DDP-wrapped model)
``backbone.*``             unchanged
``keypoint_head.*`` (0.x)  ``head.*`` (MMPose 1.x renames it the same way when loading old files)
``head.*`` (1.x)           unchanged
``data_preprocessor.*``    dropped (1.x stores the normalisation mean/std as buffers; ours is in the data)
=========================  ===========================================================================

Files are read by :func:`wbpose.checkpoints.reader.read_checkpoint` (weights only, numpy values allow-listed).

MMPose: https://github.com/open-mmlab/mmpose. HRNet: https://arxiv.org/abs/1902.09212.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from wbpose.checkpoints.reader import read_checkpoint
from wbpose.models.hrnet import ARCHS
from wbpose.models.topdown import build_pose_model

__all__ = [
    "KeyReport",
    "convert_mmpose_checkpoint",
    "infer_arch",
    "load_imagenet_backbone",
    "load_mmpose_checkpoint",
    "normalize_pose_keys",
]

log = logging.getLogger(__name__)

PathOrState = str | os.PathLike | Mapping
_ARCH_KEY = "backbone.transition1.0.0.weight"  # (width, 4 * stage1_planes, 3, 3): the width names the arch
_STEM_KEY = "backbone.conv1.weight"


def _as_state_dict(
    path_or_state: PathOrState, source: str | None = None
) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """Unwrap ``{'state_dict': ...}`` or a bare state dict; non-tensor entries are returned as ignored."""
    if isinstance(path_or_state, Mapping):
        ckpt, source = path_or_state, source or "<state dict>"
    elif isinstance(path_or_state, str | os.PathLike):
        ckpt, source = read_checkpoint(path_or_state), str(path_or_state)
    else:
        raise TypeError(f"expected a checkpoint path or a state dict mapping, got {type(path_or_state).__name__}")
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{source}: expected a dict checkpoint, got {type(ckpt).__name__}")
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: 'state_dict' is a {type(state).__name__}, expected a mapping of tensors")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{source}: no tensors found; top-level keys are {sorted(ckpt)[:10]}")
    return tensors, sorted(set(state) - set(tensors)), source


def normalize_pose_keys(
    state: Mapping[str, torch.Tensor], rename_head: bool = True
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map MMPose 0.x/1.x (or our own Lightning ``model.``-prefixed) keys to ``TopdownPoseModel`` keys.

    The one place where checkpoint prefixes are handled (the table in the module docstring).

    Args:
        state: checkpoint keys -> tensors.
        rename_head: map ``keypoint_head.*`` to ``head.*`` (``False`` keeps head keys as they are, for reports of
            what a backbone-only load ignored).

    Returns:
        ``(state_dict, dropped_keys)``.
    """
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    # a Lightning checkpoint of TopdownPoseModule: the network is its ``model`` attribute; other entries are not
    lightning = any(k.startswith("model.backbone.") for k in state)
    for key, value in state.items():
        new = key.removeprefix("module.")
        if lightning:
            if not new.startswith("model."):
                dropped.append(key)
                continue
            new = new.removeprefix("model.")
        if new.startswith("data_preprocessor."):
            dropped.append(key)
            continue
        if rename_head and new.startswith("keypoint_head."):
            new = "head." + new.removeprefix("keypoint_head.")
        out[new] = value
    return out, dropped


def infer_arch(state: Mapping[str, torch.Tensor]) -> str:
    """Name the ``ARCHS`` entry a state dict was made from, from the widths of the stem and first branch.

    Accepts keys with or without the ``backbone.`` prefix (pose checkpoints vs. ImageNet backbones).

    Raises:
        ValueError: the keys are not HRNet's, or the widths match no known arch (e.g. HRNet-W18).
    """
    keys = {k.removeprefix("module."): v for k, v in state.items()}
    transition = keys.get(_ARCH_KEY, keys.get(_ARCH_KEY.removeprefix("backbone.")))
    stem = keys.get(_STEM_KEY, keys.get(_STEM_KEY.removeprefix("backbone.")))
    if transition is None or stem is None:
        raise ValueError(f"not an HRNet state dict: no {_ARCH_KEY!r} (or unprefixed) key")
    width, stem_channels = transition.shape[0], stem.shape[0]
    for name, arch in ARCHS.items():
        if arch.width == width and arch.stem_channels == stem_channels:
            return name
    raise ValueError(f"unsupported HRNet width {width} (stem {stem_channels}); known: {sorted(ARCHS)}")


def _first_keys(state: Mapping[str, torch.Tensor], count: int = 5) -> str:
    """``N tensors, the first: a, b, ...`` for a message about a file that is not what was expected."""
    shown = ", ".join(f"{k} {list(v.shape)}" for k, v in list(state.items())[:count])
    return f"{len(state)} tensors, the first: {shown}{', ...' if len(state) > count else ''}"


def _not_a_pose_model(state: Mapping[str, torch.Tensor], source: str) -> ValueError:
    """The error for weights whose HRNet arch cannot be told: no HRNet keys at all, or an unbuilt width."""
    try:
        infer_arch(state)
    except ValueError as err:
        reason = str(err)
    else:  # pragma: no cover - only called when infer_arch failed
        reason = "its arch is known"
    if reason.startswith("unsupported"):
        return ValueError(f"{source} is an HRNet pose checkpoint of a width this project does not build: {reason}")
    return ValueError(f"{source} is not an HRNet pose checkpoint (no {_ARCH_KEY!r}); it holds {_first_keys(state)}")


def _try_infer_arch(state: Mapping[str, torch.Tensor]) -> str | None:
    try:
        return infer_arch(state)
    except ValueError:
        return None


@dataclass
class KeyReport:
    """What happened to each key when matching a checkpoint against a model.

    Attributes:
        source: the file (or "<state dict>").
        loaded: number of tensors that matched by name and shape.
        missing: model keys absent from the checkpoint.
        unexpected: checkpoint keys the model does not have.
        shape_mismatches: ``(key, checkpoint_shape, model_shape)``.
        ignored: keys dropped on purpose (``data_preprocessor.*``, ImageNet classifier parts, a pose head).
        checkpoint_arch: arch inferred from the checkpoint, if it is an HRNet.
        model_arch: arch inferred from the model, if it is an HRNet.
    """

    source: str = ""
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    checkpoint_arch: str | None = None
    model_arch: str | None = None

    @property
    def ok(self) -> bool:
        """True when every model key was found with the right shape and nothing was left over."""
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def format(self, limit: int = 8) -> str:
        """A human-readable summary, listing at most ``limit`` keys per category."""

        def show(items: list) -> str:
            more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
            return ", ".join(str(i) for i in items[:limit]) + more

        lines = [
            f"{self.source}: {self.loaded} tensors matched; checkpoint arch {self.checkpoint_arch}, "
            f"model arch {self.model_arch}"
        ]
        mismatches = [f"{k} {list(a)} vs model {list(b)}" for k, a, b in self.shape_mismatches]
        for label, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatches", mismatches),
            ("ignored", self.ignored),
        ):
            if items:
                lines.append(f"  {len(items)} {label}: {show(items)}")
        return "\n".join(lines)


def _match(
    state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], report: KeyReport
) -> dict[str, torch.Tensor]:
    """Fill ``report`` and return the entries of ``state`` that fit ``reference`` by name and shape."""
    matched = {}
    for key, value in state.items():
        if key not in reference:
            report.unexpected.append(key)
        elif value.shape != reference[key].shape:
            report.shape_mismatches.append((key, tuple(value.shape), tuple(reference[key].shape)))
        else:
            matched[key] = value
    report.missing = [k for k in reference if k not in state]
    report.loaded = len(matched)
    return matched


def load_mmpose_checkpoint(
    path_or_state: PathOrState, model: nn.Module | None = None, strict: bool = True, source: str | None = None
) -> tuple[nn.Module | dict[str, torch.Tensor], KeyReport]:
    """Load an MMPose 0.x/1.x top-down HRNet checkpoint (``{'meta', 'state_dict'}`` or a bare state dict).

    Args:
        path_or_state: a ``.pth`` file or an already loaded checkpoint/state dict.
        model: a ``TopdownPoseModel`` to load into. If None, the converted state dict is returned and checked
            against ``build_pose_model(inferred arch, inferred num_keypoints)`` built on the meta device.
        strict: raise if any key is missing, unexpected or of the wrong shape; otherwise load what matches.
        source: the name used in messages when a loaded dict is given.

    Returns:
        ``(model, report)`` if a model is given, else ``(state_dict, report)``.

    Raises:
        ValueError: ``strict`` and the checkpoint does not match (the message lists the keys), or the file
            is not a plain weights file.
    """
    raw, non_tensor, source = _as_state_dict(path_or_state, source)
    state, dropped = normalize_pose_keys(raw)
    report = KeyReport(source=source, ignored=dropped + non_tensor, checkpoint_arch=_try_infer_arch(state))
    if model is None:
        if report.checkpoint_arch is None:
            raise _not_a_pose_model(state, source)
        head = state.get("head.final_layer.weight")
        with torch.device("meta"):
            reference = build_pose_model(report.checkpoint_arch, head.shape[0] if head is not None else 133)
    else:
        reference = model
    ref_state = reference.state_dict()
    report.model_arch = _try_infer_arch(ref_state)
    matched = _match(state, ref_state, report)
    if strict and not report.ok:
        hint = ""
        if report.checkpoint_arch != report.model_arch:
            hint = f" (checkpoint looks like HRNet-{report.checkpoint_arch}, model is HRNet-{report.model_arch})"
        raise ValueError(f"checkpoint does not match the model{hint}:\n{report.format()}")
    if model is None:
        return state, report
    model.load_state_dict(matched, strict=False)
    if not report.ok:
        log.warning("non-strict MMPose checkpoint load:\n%s", report.format())
    return model, report


def load_imagenet_backbone(path_or_state: PathOrState, backbone: nn.Module, strict: bool = True) -> KeyReport:
    """Initialise an ``HRNet`` from an ImageNet HRNet file or from the backbone of a pose checkpoint.

    ImageNet files (``hrnet_w32-36af842e.pth``, ``hrnet_w48-8ef0771d.pth``) have unprefixed backbone keys plus
    classifier parts (``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``, the multi-scale
    ``stage4.2.fuse_layers.1-3``); those extras are ignored, as MMPose's ``strict=False`` load does. A pose
    checkpoint with ``backbone.`` keys (e.g. the 17-keypoint COCO DARK W48 model used for DARK+) contributes only
    its backbone; its head is ignored.

    Args:
        path_or_state: a ``.pth`` file or an already loaded checkpoint/state dict.
        backbone: the ``HRNet`` to initialise in place.
        strict: raise if a backbone tensor is absent or of the wrong shape (a missing
            ``num_batches_tracked``, which old files lack, is tolerated). Nothing is loaded when this raises.

    Returns:
        The key report; ``report.ignored`` lists every key that was not used.
    """
    raw, non_tensor, source = _as_state_dict(path_or_state)
    raw, dropped = normalize_pose_keys(raw, rename_head=False)  # module./model. prefixes of DDP/Lightning files
    ignored = list(non_tensor) + dropped
    if any(k.startswith("backbone.") for k in raw):
        ignored += [k for k in raw if not k.startswith("backbone.")]
        raw = {k.removeprefix("backbone."): v for k, v in raw.items() if k.startswith("backbone.")}
    ref_state = backbone.state_dict()
    report = KeyReport(source=source, checkpoint_arch=_try_infer_arch(raw), model_arch=_try_infer_arch(ref_state))
    matched = _match(raw, ref_state, report)
    # Keys the backbone does not have are classifier extras here, not errors.
    report.ignored = ignored + report.unexpected
    report.unexpected = []
    report.missing = [k for k in report.missing if not k.endswith("num_batches_tracked")]
    if strict and not report.ok:
        if not report.loaded:  # nothing in common: another kind of network altogether
            raise ValueError(f"{source} is not an HRNet checkpoint: it holds {_first_keys(raw)}")
        raise ValueError(f"backbone weights do not fit the backbone:\n{report.format()}")
    backbone.load_state_dict(matched, strict=False)
    log.info("loaded backbone weights:\n%s", report.format())
    return report


def convert_mmpose_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, arch: str | None = None) -> KeyReport:
    """Convert an MMPose HRNet pose checkpoint into a native file ``{'state_dict', 'arch', 'num_keypoints', 'source'}``.

    The state dict has ``TopdownPoseModel`` keys and is checked strictly against ``build_pose_model(arch)``.

    Args:
        src: the MMPose ``.pth`` file.
        dst: where to write the native file (parent folders are created).
        arch: expected arch; inferred from the weights' shapes when None, and checked against them when given.

    Returns:
        The key report (``report.ok`` is always True: mismatches raise).
    """
    state, report = load_mmpose_checkpoint(src, model=None, strict=True)
    if arch is not None and arch != report.checkpoint_arch:
        raise ValueError(f"{src}: --arch {arch} given, but the weights are HRNet-{report.checkpoint_arch}")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": state,
        "arch": report.checkpoint_arch,
        "num_keypoints": int(state["head.final_layer.weight"].shape[0]),
        "source": str(src),
    }
    torch.save(payload, dst)
    return report

"""Flip test for heatmap models: map the heatmaps of the mirrored crop back and average.

Flip testing goes back to the stacked-hourglass / Simple Baselines evaluations (Xiao et al., ECCV 2018,
https://arxiv.org/abs/1804.06208); the details follow MMPose 1.x ``models/utils/tta.py::flip_heatmaps`` with
``shift_heatmap=True`` (0.x ``flip_back`` + shift is the same operation); docs/conventions.md#flip-test.

Why the one-pixel shift: mirroring the crop maps crop pixel ``x`` to ``W - 1 - x``; with stride ``s`` that is
heatmap coordinate ``(W - 1 - x) / s = w - 1/s - x/s`` (``W = s * w``), while mirroring the heatmap maps column
``u`` to ``w - 1 - u``. Flipped back, a peak therefore lands at ``x/s - 1 + 1/s`` (-0.75 for s = 4) instead of
``x/s``. Shifting one column right leaves ``x/s + 1/s`` (+0.25): smaller, and the published models were
evaluated that way. (Removing the bias exactly is UDP's job, which these recipes do not use.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from wbpose.keypoints import FLIP_INDICES


def _flip_index(flip_indices: Sequence[int] | torch.Tensor, num_channels: int, device: torch.device) -> torch.Tensor:
    index = torch.as_tensor(flip_indices, dtype=torch.long, device=device)
    if index.ndim != 1 or index.numel() != num_channels:
        raise ValueError(
            f"expected {num_channels} flip indices (one per heatmap channel), got shape {tuple(index.shape)}"
        )
    if bool(((index < 0) | (index >= num_channels)).any()):
        raise ValueError(f"flip indices must lie in [0, {num_channels}), got {index.tolist()}")
    return index


def flip_heatmaps(
    heatmaps: torch.Tensor, flip_indices: Sequence[int] | torch.Tensor = FLIP_INDICES, shift: bool = True
) -> torch.Tensor:
    """Map the heatmaps predicted on a horizontally mirrored crop back to the original crop.

    Channel ``i`` of the result is channel ``flip_indices[i]`` (left <-> right) mirrored along width, then, with
    ``shift``, moved one column right (``out[..., 1:] = out[..., :-1]``; column 0 keeps its own value, as MMPose).

    Args:
        heatmaps: heatmaps of the mirrored crops.
        flip_indices: index of each keypoint's mirror; COCO-WholeBody's 133 by default.
        shift: apply MMPose's ``shift_heatmap`` (see the module docstring for why).

    Returns:
        Heatmaps aligned with the original crops (a new tensor).

    Shape:
        heatmaps: (B, K, h, w) -> (B, K, h, w)
    """
    if not isinstance(heatmaps, torch.Tensor) or heatmaps.ndim != 4:
        shape = tuple(heatmaps.shape) if isinstance(heatmaps, torch.Tensor) else type(heatmaps).__name__
        raise ValueError(f"expected heatmaps of shape (B, K, h, w), got {shape}")
    index = _flip_index(flip_indices, heatmaps.shape[1], heatmaps.device)
    out = heatmaps.index_select(1, index).flip(-1)
    if shift and out.shape[-1] > 1:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
    return out


def flip_test_average(
    heatmaps: torch.Tensor,
    heatmaps_flipped: torch.Tensor,
    flip_indices: Sequence[int] | torch.Tensor = FLIP_INDICES,
    shift: bool = True,
) -> torch.Tensor:
    """Average the heatmaps of the crop with those of its mirror, mapped back (docs/conventions.md#flip-test).

    Decoding and keypoint scores then both use this average.

    Args:
        heatmaps: heatmaps predicted on the crops.
        heatmaps_flipped: raw heatmaps predicted on the mirrored crops (``images.flip(-1)``).
        flip_indices: index of each keypoint's mirror; COCO-WholeBody's 133 by default.
        shift: apply MMPose's ``shift_heatmap``.

    Shape:
        heatmaps, heatmaps_flipped: (B, K, h, w) -> (B, K, h, w)
    """
    if not isinstance(heatmaps, torch.Tensor) or not isinstance(heatmaps_flipped, torch.Tensor):
        raise ValueError("expected heatmaps and heatmaps_flipped as torch tensors of shape (B, K, h, w)")
    if heatmaps.shape != heatmaps_flipped.shape:
        raise ValueError(
            f"expected heatmaps and heatmaps_flipped of the same shape (B, K, h, w), "
            f"got {tuple(heatmaps.shape)} and {tuple(heatmaps_flipped.shape)}"
        )
    return (heatmaps + flip_heatmaps(heatmaps_flipped, flip_indices, shift)) * 0.5

"""HRNet backbone for top-down pose estimation, built exactly as MMPose builds it.

Paper: "Deep High-Resolution Representation Learning for Human Pose Estimation", Sun et al., CVPR 2019,
https://arxiv.org/abs/1902.09212.

The topology and every parameter name follow MMPose's ``HRNet`` (0.x ``mmpose/models/backbones/hrnet.py``; 1.x
differs only in init code), so MMPose ``backbone.*`` keys load with ``strict=True`` and no renaming:

- stem ``conv1``/``bn1``/``conv2``/``bn2`` (two 3x3 stride-2 convs -> 1/4 resolution);
- ``layer1``: Bottlenecks (expansion 4), with a ``downsample`` 1x1 conv + BN in block 0;
- ``transition1/2/3``: a 3x3 conv + BN + ReLU where a branch changes width, and a nested ``Sequential`` of
  stride-2 convs for each new, lower-resolution branch (always fed from the previous stage's last branch);
- ``stage2/3/4``: ``Sequential`` of ``HRModule``; each has ``branches`` (BasicBlocks) and ``fuse_layers``.
  The last module of stage 4 is single-scale: it keeps all four branches but has only ``fuse_layers.0``, so
  the network returns one stride-4 map and no parameter is unused (DDP-safe).

Written from the paper and the facts in docs/conventions.md#hrnet-and-head; no MMPose or timm code is reused.

Variants (``ARCHS``): parameters of the backbone alone and multiply-accumulates of its convolutions for one
crop (counted with ``torch.utils.flop_counter``; the 133-keypoint head adds C*133+133 parameters):

=====  ==========  ======================  ======================
arch   params      GMACs @ 256x192         GMACs @ 384x288
=====  ==========  ======================  ======================
w32    28,535,552  7.64                    17.2
w48    63,594,912  15.7                    35.3
tiny   697,312     0.25 (0.063 @ 128x96)   0.56
=====  ==========  ======================  ======================

``tiny`` keeps the topology and naming (4 branches, single-scale last module, Bottleneck ``layer1`` with a
``downsample``) with width 16, a 32-channel stem, one Bottleneck in ``layer1`` and one HRModule of one
BasicBlock per branch in every stage; with the head it has 699,573 parameters (most in the 128-channel
lowest-resolution branch, which costs little compute) and trains at 128x96 on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ARCHS", "BasicBlock", "Bottleneck", "HRModule", "HRNet", "HRNetArch", "check_images"]


@dataclass(frozen=True)
class HRNetArch:
    """One HRNet variant.

    Attributes:
        width: channels of the highest-resolution branch (C); branch i has ``C * 2**i`` channels.
        stem_channels: channels of the two stem convs (64 in MMPose).
        stage1_planes: Bottleneck mid channels in ``layer1``; its output has ``4 * stage1_planes`` channels.
        stage1_blocks: Bottlenecks in ``layer1``.
        stage_modules: HRModules in stages 2, 3, 4.
        stage_blocks: BasicBlocks per branch in stages 2, 3, 4.
    """

    width: int
    stem_channels: int = 64
    stage1_planes: int = 64
    stage1_blocks: int = 4
    stage_modules: tuple[int, int, int] = (1, 4, 3)
    stage_blocks: tuple[int, int, int] = (4, 4, 4)


ARCHS: dict[str, HRNetArch] = {
    "w32": HRNetArch(width=32),
    "w48": HRNetArch(width=48),
    "tiny": HRNetArch(
        width=16, stem_channels=32, stage1_planes=16, stage1_blocks=1, stage_modules=(1, 1, 1), stage_blocks=(1, 1, 1)
    ),
}

# Stem (stride 4) plus three halvings for the lowest branch; nearest upsampling only restores the sizes
# exactly when each level divides evenly, so H and W must be multiples of 32.
_INPUT_MULTIPLE = 32


def check_images(images: torch.Tensor, multiple: int = _INPUT_MULTIPLE) -> None:
    """Raise a clear error unless ``images`` is a (B, 3, H, W) float tensor with H, W multiples of ``multiple``.

    Shape:
        images: (B, 3, H, W)
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected images as a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"expected a floating-point image tensor, got dtype {images.dtype}")
    h, w = images.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"HRNet needs H and W divisible by {multiple}, got H={h}, W={w}")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_channels)]


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus identity, then ReLU (ResNet expansion 1).

    Shape:
        x: (B, C, H, W) -> (B, C, H, W)
    """

    expansion = 1

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        # In-place is safe: BN saves its input, not its output, for backward.
        out += x
        return F.relu(out, inplace=True)


class Bottleneck(nn.Module):
    """conv1x1 -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv1x1 -> BN, plus shortcut, then ReLU (expansion 4).

    The shortcut is ``downsample`` (1x1 conv + BN) when the channel count changes, as in MMPose's ``layer1.0``.

    Shape:
        x: (B, in_channels, H, W) -> (B, 4 * planes, H, W)
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = (
            nn.Sequential(*_conv_bn(in_channels, out_channels, 1)) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)


def _fuse_layer(channels: list[int], i: int, j: int) -> nn.Module | None:
    """The path that brings branch j to branch i's resolution and width (None for i == j)."""
    if j == i:
        return None
    if j > i:
        # Lower resolution -> higher: 1x1 conv at the low resolution (cheap), then nearest upsampling.
        return nn.Sequential(
            *_conv_bn(channels[j], channels[i], 1), nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")
        )
    # Higher resolution -> lower: (i - j) stride-2 3x3 convs; only the last changes the width and has no ReLU
    # (the ReLU comes after the sum).
    steps = []
    for k in range(i - j):
        last = k == i - j - 1
        layers = _conv_bn(channels[j], channels[i] if last else channels[j], 3, stride=2)
        steps.append(nn.Sequential(*layers) if last else nn.Sequential(*layers, nn.ReLU(inplace=True)))
    return nn.Sequential(*steps)


class HRModule(nn.Module):
    """Parallel multi-resolution branches followed by an all-to-all exchange (MMPose ``HRModule``).

    Args:
        channels: width of each branch, highest resolution first.
        num_blocks: BasicBlocks per branch.
        multiscale_output: if False, only the highest-resolution output is fused and returned
            (only ``fuse_layers.0`` exists).

    Shape:
        xs: list of (B, channels[i], H / 2**i, W / 2**i) -> same list, or a one-element list if not multiscale.
    """

    def __init__(self, channels: list[int], num_blocks: int, multiscale_output: bool = True) -> None:
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(nn.Sequential(*(BasicBlock(c) for _ in range(num_blocks))) for c in channels)
        num_outputs = self.num_branches if multiscale_output else 1
        if self.num_branches > 1:
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(_fuse_layer(channels, i, j) for j in range(self.num_branches)) for i in range(num_outputs)
            )
        else:
            self.fuse_layers = None

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        outs = []
        for fuse_row in self.fuse_layers:
            terms = [x if layer is None else layer(x) for layer, x in zip(fuse_row, xs)]
            # First add out of place (terms may alias branch outputs that ReLU-backward still needs),
            # the rest in place on that fresh tensor.
            y = terms[0] + terms[1]
            for term in terms[2:]:
                y += term
            outs.append(F.relu(y, inplace=True))
        return outs


def _transition(pre_channels: list[int], cur_channels: list[int]) -> nn.ModuleList:
    """Transition from a stage with ``pre_channels`` branches to one with ``cur_channels`` (MMPose layout).

    Existing branches get a 3x3 conv + BN + ReLU only when their width changes (else None); each new branch is a
    ``Sequential`` of stride-2 conv + BN + ReLU steps from the previous stage's last branch.
    """
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur_channels):
        if i < len(pre_channels):
            changed = c != pre_channels[i]
            layers.append(nn.Sequential(*_conv_bn(pre_channels[i], c, 3), nn.ReLU(inplace=True)) if changed else None)
            continue
        steps = []
        for k in range(i + 1 - len(pre_channels)):
            out = c if k == i - len(pre_channels) else pre_channels[-1]
            steps.append(nn.Sequential(*_conv_bn(pre_channels[-1], out, 3, stride=2), nn.ReLU(inplace=True)))
        layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet backbone returning the stride-4, highest-resolution feature map.

    Args:
        arch: a key of ``ARCHS`` ("w32", "w48", "tiny") or an ``HRNetArch``.

    Attributes:
        out_channels: channels of the output map (``arch.width``); what ``HeatmapHead.in_channels`` takes.
        reduction: output stride (4).

    Shape:
        images: (B, 3, H, W) with H, W multiples of 32 -> (B, out_channels, H / 4, W / 4)
    """

    reduction = 4

    def __init__(self, arch: str | HRNetArch = "w32") -> None:
        super().__init__()
        if isinstance(arch, str):
            if arch not in ARCHS:
                raise ValueError(f"unknown HRNet arch {arch!r}; expected one of {sorted(ARCHS)}")
            arch = ARCHS[arch]
        elif not isinstance(arch, HRNetArch):
            raise TypeError(f"arch must be a str or HRNetArch, got {type(arch).__name__}")
        self.arch = arch
        self.out_channels = arch.width

        stem = arch.stem_channels
        self.conv1 = _conv3x3(3, stem, stride=2)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = _conv3x3(stem, stem, stride=2)
        self.bn2 = nn.BatchNorm2d(stem)

        stage1_out = arch.stage1_planes * Bottleneck.expansion
        self.layer1 = nn.Sequential(
            *(Bottleneck(stem if b == 0 else stage1_out, arch.stage1_planes) for b in range(arch.stage1_blocks))
        )

        pre = [stage1_out]
        for s, (num_modules, num_blocks) in enumerate(zip(arch.stage_modules, arch.stage_blocks)):
            cur = [arch.width * 2**b for b in range(s + 2)]
            last_stage = s == len(arch.stage_modules) - 1
            modules = [
                HRModule(cur, num_blocks, multiscale_output=not (last_stage and m == num_modules - 1))
                for m in range(num_modules)
            ]
            # Registration order (transition1, stage2, transition2, ...) fixes the state_dict order to MMPose's.
            self.add_module(f"transition{s + 1}", _transition(pre, cur))
            self.add_module(f"stage{s + 2}", nn.Sequential(*modules))
            pre = cur
        self.init_weights()

    def init_weights(self) -> None:
        """MMPose's init without a pretrained file: conv weights Normal(0, 0.001), BN weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Compute the stride-4 feature map.

        Shape:
            images: (B, 3, H, W) -> (B, out_channels, H / 4, W / 4)
        """
        check_images(images)
        x = F.relu(self.bn1(self.conv1(images)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        xs = [self.layer1(x)]
        stages = ((self.transition1, self.stage2), (self.transition2, self.stage3), (self.transition3, self.stage4))
        for transition, stage in stages:
            # Branches without a transition pass through; new branches grow from the last (lowest) one.
            xs = [
                (xs[i] if layer is None else layer(xs[i])) if i < len(xs) else layer(xs[-1])
                for i, layer in enumerate(transition)
            ]
            xs = stage(xs)
        return xs[0]

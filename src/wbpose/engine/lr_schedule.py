"""Learning-rate schedule of the HRNet whole-body recipe: per-iteration linear warm-up times a per-epoch step
decay, as one ``LambdaLR`` stepped every optimiser step (docs/conventions.md#training-recipe).

MMPose 0.x writes it as ``lr_config=dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001,
step=[170, 200])``; 1.x as ``LinearLR(start_factor=0.001, end=500, by_epoch=False)`` followed by
``MultiStepLR(milestones=[170, 200], gamma=0.1, by_epoch=True)``. Both multiply the two factors, which is what
:class:`WarmupMultiStep` does. A single ``LambdaLR`` keeps resuming trivial: its state is the step counter and
the (picklable) factor object.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupMultiStep", "warmup_multistep_scheduler"]


class WarmupMultiStep:
    """LR factor as a function of the optimiser step.

    ``factor(step) = warmup(step) * gamma ** (number of milestones <= step // steps_per_epoch)`` with
    ``warmup(step) = ratio + (1 - ratio) * step / warmup_iters`` for ``step < warmup_iters`` and 1 after.
    ``warmup_iters=0`` disables the warm-up (MMPose 0.x W48 384x288 and the training-time DARK+ config).

    Args:
        steps_per_epoch: optimiser steps in one epoch (after gradient accumulation).
        warmup_iters: warm-up length in optimiser steps.
        warmup_ratio: factor at step 0.
        milestones: epochs at which the LR is multiplied by ``gamma``.
        gamma: decay factor.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        warmup_iters: int = 500,
        warmup_ratio: float = 0.001,
        milestones: Sequence[int] = (170, 200),
        gamma: float = 0.1,
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if warmup_iters < 0 or not 0.0 < warmup_ratio <= 1.0:
            raise ValueError(f"need warmup_iters >= 0 and 0 < warmup_ratio <= 1, got {warmup_iters}, {warmup_ratio}")
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        decay = self.gamma ** bisect.bisect_right(self.milestones, epoch)
        if step < self.warmup_iters:
            return decay * (self.warmup_ratio + (1.0 - self.warmup_ratio) * step / self.warmup_iters)
        return decay

    def __repr__(self) -> str:
        return (
            f"WarmupMultiStep(steps_per_epoch={self.steps_per_epoch}, warmup_iters={self.warmup_iters}, "
            f"warmup_ratio={self.warmup_ratio}, milestones={self.milestones}, gamma={self.gamma})"
        )


def warmup_multistep_scheduler(
    optimizer: Optimizer,
    steps_per_epoch: int,
    warmup_iters: int = 500,
    warmup_ratio: float = 0.001,
    milestones: Sequence[int] = (170, 200),
    gamma: float = 0.1,
) -> LambdaLR:
    """Build the recipe's scheduler; step it once per optimiser step (Lightning ``interval="step"``).

    Configured as a partial (``_partial_: true``) in ``conf/sched/``; the LightningModule supplies
    ``optimizer`` and ``steps_per_epoch`` once the train loader size is known.
    """
    factor = WarmupMultiStep(steps_per_epoch, warmup_iters, warmup_ratio, milestones, gamma)
    return LambdaLR(optimizer, lr_lambda=factor)

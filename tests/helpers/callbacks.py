"""Lightning callbacks the tests add to a run by Hydra target (``+callbacks.x._target_=helpers.callbacks.X``).

They live here, not in a test module, because Hydra imports a target by its dotted path: ``helpers`` is on the
path (``pythonpath`` in ``pyproject.toml``), a test module's own name depends on how pytest imported it.
"""

from __future__ import annotations

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """Simulates a killed job: raises once ``global_step`` reaches ``step`` (after that step's checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError(f"killed at step {trainer.global_step}")

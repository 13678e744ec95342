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


class KillAtEnvStep(pl.Callback):
    """:class:`KillAtStep` armed by ``$WBPOSE_TEST_KILL_AT_STEP``: the same command dies or runs on, as a
    pre-empted job that is re-submitted unchanged."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        import os

        step = os.environ.get("WBPOSE_TEST_KILL_AT_STEP")
        if step and trainer.global_step >= int(step):
            raise RuntimeError(f"killed at step {trainer.global_step}")


class RecordStartStep(pl.Callback):
    """Remembers the global step at which ``fit`` started training (after a resume: the checkpoint's step)."""

    def __init__(self) -> None:
        self.start_step: int | None = None

    def on_train_start(self, trainer: pl.Trainer, *args: object) -> None:
        self.start_step = trainer.global_step


class RaiseOnRank(pl.Callback):
    """Raises on one DDP rank only, at a given step (a rank dying while the others wait in a collective)."""

    def __init__(self, rank: int = 1, step: int = 2) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            raise RuntimeError(f"rank {self.rank} failed on purpose at step {trainer.global_step}")

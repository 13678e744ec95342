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
    """Raises on one DDP rank only, at a given step (a rank dying while the others wait in a collective).

    With ``stamp`` the rank writes the wall-clock time (``time.time()``) to that file just before raising, so a test
    can time how long the other processes take to end after the failure, apart from their start-up.
    """

    def __init__(self, rank: int = 1, step: int = 2, stamp: str | None = None) -> None:
        self.rank, self.step, self.stamp = rank, step, stamp

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            if self.stamp:
                import time
                from pathlib import Path

                Path(self.stamp).write_text(repr(time.time()))
            raise RuntimeError(f"rank {self.rank} failed on purpose at step {trainer.global_step}")


class SigkillAtStep(pl.Callback):
    """A job killed by its scheduler: once ``global_step`` reaches ``step`` (before that step's checkpoint: Lightning
    runs checkpoint callbacks last), global rank 0 sends SIGKILL to its process group -- itself, the DDP ranks
    Lightning launched and every loader worker -- when it leads the group (start it with ``start_new_session=True``),
    else to itself only. Nothing is flushed or saved."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        import os
        import signal

        if trainer.global_rank == 0 and trainer.global_step >= self.step:
            if os.getpgrp() == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)


class RecordBatches(pl.Callback):
    """Appends ``<global_step> <instance ids>`` of every training batch to ``<path>.rank<r>`` (flushed per line, so
    what a killed run trained on is on disk)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, *args) -> None:
        ids = " ".join(str(int(i)) for i in batch["instance_id"].tolist())
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as f:
            f.write(f"{trainer.global_step} {ids}\n")


class SaveWeightsAtEnd(pl.Callback):
    """Saves ``{"global_step", "state_dict"}`` of the module to ``path`` when training ends (global rank 0)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import torch

        if trainer.global_rank == 0:
            state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
            torch.save({"global_step": trainer.global_step, "state_dict": state}, self.path)


class TouchOnValidation(pl.Callback):
    """Creates ``<path>.rank<global rank>`` when a validation starts (a test waits for it to act mid-validation)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_validation_start(self, trainer: pl.Trainer, *args: object) -> None:
        from pathlib import Path

        Path(f"{self.path}.rank{trainer.global_rank}").touch()

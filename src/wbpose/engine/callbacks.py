"""Lightning callbacks of wbpose: :class:`LastCheckpoint` (``last.ckpt`` for resuming, at epoch ends and/or every N
steps; ``conf/callbacks/model_checkpoint.yaml``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

__all__ = ["LastCheckpoint"]


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` for resuming: at the end of every ``every_n_epochs``-th training epoch and/or every
    ``every_n_train_steps`` optimiser steps (mid-epoch too); both triggers may be on at once.

    With ``every_n_train_steps`` a run killed mid-epoch loses at most that many steps, and resumes exactly: the
    checkpoint holds the training loader's place in the epoch (``wbpose.data.sampling.ResumableDataLoader``;
    docs/conventions.md#training-order-and-resume). A step save at an epoch's last batch is not repeated at its end.

    Why not a plain ``ModelCheckpoint(save_top_k=0, save_last=True)``: it takes one trigger only, and Lightning 2.5+
    writes ``last.ckpt`` on the epoch trigger only next to a top-k file, so with ``save_top_k=0`` only on the step
    trigger (and when training ends). Writes go through the trainer's CheckpointIO
    (:class:`wbpose.engine.checkpoint_io.AtomicCheckpointIO`).

    Args:
        dirpath: checkpoint folder.
        every_n_epochs: save at the end of every N-th training epoch (``None``/0: never).
        every_n_train_steps: save every N optimiser steps (``None``/0: never).
        **kwargs: other ``ModelCheckpoint`` arguments (``save_top_k`` 0 and ``save_last`` True by default).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_epochs: int | None = 1,
        every_n_train_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("save_top_k", 0)
        kwargs.setdefault("save_last", True)
        # the step trigger is ModelCheckpoint's own; the epoch trigger is handled here, after the training epoch
        super().__init__(
            dirpath=dirpath,
            every_n_train_steps=every_n_train_steps,
            every_n_epochs=0,
            save_on_train_epoch_end=True,
            **kwargs,
        )
        if every_n_epochs is not None and every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0 or None, got {every_n_epochs}")
        self.last_every_n_epochs = int(every_n_epochs or 0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = self.last_every_n_epochs
        if n < 1 or (trainer.current_epoch + 1) % n != 0 or self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if self.save_top_k != 0:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

"""LastCheckpoint: last.ckpt at epoch ends and every N steps, both triggers at once, from the callbacks config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from wbpose.engine.callbacks import LastCheckpoint


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw) -> list[tuple[int, str]]:
    """(global step, file name) of every checkpoint written in 2 epochs of 5 batches."""
    saves: list[tuple[int, str]] = []
    original = pl.Trainer.save_checkpoint

    def record(trainer: pl.Trainer, path: str, *args, **kwargs) -> None:
        saves.append((trainer.global_step, os.path.basename(path)))
        original(trainer, path, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", record)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        callbacks=[LastCheckpoint(tmp_path / "ckpt", **kw)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Tiny(), DataLoader(TensorDataset(torch.ones(10, 1)), batch_size=2))
    return saves


def test_last_checkpoint_at_epoch_ends_and_every_n_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _saves(tmp_path / "a", monkeypatch) == [(5, "last.ckpt"), (10, "last.ckpt")]  # every epoch by default
    both = _saves(tmp_path / "b", monkeypatch, every_n_train_steps=3)
    assert [step for step, _ in both] == [3, 5, 6, 9, 10] and {name for _, name in both} == {"last.ckpt"}
    # a step save at an epoch's last batch is not written again at the epoch's end
    assert [step for step, _ in _saves(tmp_path / "c", monkeypatch, every_n_train_steps=5)] == [5, 10]
    steps_only = _saves(tmp_path / "d", monkeypatch, every_n_epochs=None, every_n_train_steps=4)
    assert [step for step, _ in steps_only] == [4, 8]


def test_callbacks_config_turns_on_step_saves_with_one_key(tmp_path: Path) -> None:
    from wbpose.app.config import compose_config
    from wbpose.build import build_callbacks

    cfg = compose_config("train", ["callbacks.last_checkpoint.every_n_train_steps=500"], output_dir=tmp_path)
    last = [cb for cb in build_callbacks(cfg) if isinstance(cb, LastCheckpoint)]
    assert len(last) == 1 and last[0].last_every_n_epochs == 1 and last[0]._every_n_train_steps == 500
    assert last[0].dirpath == str(tmp_path / "checkpoints")

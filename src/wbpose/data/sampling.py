"""Resumable training order: batches of ``(epoch, index)`` pairs, and a loader that saves its place in an epoch.

The order of an epoch is a function of (seed, epoch) only, and each index travels with its epoch into the loader
workers, where :class:`wbpose.data.coco_wholebody.CocoWholeBodyDataset` seeds the sample's augmentation with
(seed, epoch, index). So a batch is the same whichever process builds it, and a loader that knows its epoch and how
many batches it has handed out can start again at the next batch: that pair is the whole state that
:class:`ResumableDataLoader` saves (docs/conventions.md#training-order-and-resume).

Lightning (2.x) saves ``state_dict()`` of every training loader that has one into the checkpoint
(``loops.fit_loop``: ``"combined_loader"``) and calls ``load_state_dict`` before it iterates the loader again on
resume. Under DDP only rank 0's state is saved; every rank has handed out the same number of batches of its own
shard, so each rank resumes its own shard from that state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

__all__ = ["EpochBatchSampler", "ResumableDataLoader"]

#: One sample of a training batch: ``(epoch, dataset index)``.
EpochIndex = tuple[int, int]


class EpochBatchSampler(Sampler[list[EpochIndex]]):
    """Batches of ``(epoch, index)`` pairs; the order of an epoch depends on (seed, epoch) only.

    The per-rank order is torch's ``DistributedSampler``'s (``randperm`` seeded with ``seed + epoch``, padded by
    repetition to a multiple of ``num_replicas``, rank ``r`` taking positions ``r, r + num_replicas, ...``); one
    process is ``num_replicas=1``. Lightning's ``set_epoch`` reaches the inner sampler (``batch_sampler.sampler``)
    at the start of every epoch. ``__iter__`` reads the epoch, the order and :attr:`start` when it is called.

    Args:
        dataset: the dataset (only its length is used).
        batch_size: samples per batch.
        shuffle: shuffle each epoch (``False``: index order, e.g. for ``overfit_batches``).
        seed: shuffling seed (the run's seed), shared by all ranks.
        num_replicas: number of processes sharing the data (DDP world size).
        rank: this process's rank.
        drop_last: drop this rank's last incomplete batch.
    """

    def __init__(
        self,
        dataset: Sized,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = DistributedSampler(
            dataset,  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self.batch_size, self.drop_last = int(batch_size), bool(drop_last)
        #: Batches of the epoch to pass over at the next ``__iter__`` (set by :class:`ResumableDataLoader`).
        self.start = 0

    @property
    def epoch(self) -> int:
        """The epoch the next ``__iter__`` yields."""
        return int(self.sampler.epoch)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(int(epoch))

    def __len__(self) -> int:
        n = self.sampler.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[list[EpochIndex]]:
        return self._batches(self.epoch, list(self.sampler), self.start)

    def _batches(self, epoch: int, order: list[int], start: int) -> Iterator[list[EpochIndex]]:
        size = self.batch_size
        for first in range(start * size, len(self) * size, size):
            yield [(epoch, int(i)) for i in order[first : first + size]]


class ResumableDataLoader(DataLoader):
    """A training DataLoader over an :class:`EpochBatchSampler` whose place in the epoch can be saved and restored.

    ``state_dict()`` is ``{"epoch", "batches"}``: the epoch of the pass in progress (or last finished) and the
    number of batches this loader has handed out in it (batches prefetched by the workers do not count; Lightning's
    fetcher reads no batch ahead of a loader with a length). ``load_state_dict`` makes the next pass over that epoch
    begin at batch ``batches``, so the batches after a resume are those the uninterrupted run would have seen; a pass
    over another epoch (``set_epoch`` to a later one, as after a checkpoint at the end of an epoch) starts at batch 0.

    The pass starts when its first batch is asked for, not when ``iter()`` is called: Lightning creates the resumed
    loader's iterator before it calls ``set_epoch``, and with workers ``iter()`` would already draw the indices.

    Args:
        dataset: a map-style dataset taking ``(epoch, index)`` pairs (in ``__getitems__``).
        batch_sampler: the epoch's batches.
        **kwargs: other ``DataLoader`` arguments (``num_workers``, ``pin_memory``, ``persistent_workers``, ...).
    """

    def __init__(self, dataset: Dataset, batch_sampler: EpochBatchSampler, **kwargs: Any) -> None:
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self.epoch = batch_sampler.epoch
        self.batches = 0
        self._resume_at: tuple[int, int] | None = None

    @property
    def epoch_sampler(self) -> EpochBatchSampler:
        assert isinstance(self.batch_sampler, EpochBatchSampler)
        return self.batch_sampler

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return _CountingIterator(self)

    def _start(self) -> Iterator[Any]:
        """Begin a pass over the sampler's current epoch, at the restored batch when it is the restored epoch."""
        sampler = self.epoch_sampler
        epoch, start = sampler.epoch, 0
        if self._resume_at is not None and self._resume_at[0] == epoch:
            start = min(self._resume_at[1], len(sampler))
        self._resume_at = None
        self.epoch, self.batches = epoch, start
        sampler.start = start
        try:
            return super().__iter__()  # the sampler's order is drawn in here (twice with workers)
        finally:
            sampler.start = 0

    def _layout(self) -> dict[str, int]:
        """How the epoch is cut into batches and ranks: a saved position means the same batches only under the
        same layout."""
        sampler = self.epoch_sampler
        return {
            "num_batches": len(sampler),
            "batch_size": sampler.batch_size,
            "num_replicas": int(sampler.sampler.num_replicas),
        }

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "batches": int(self.batches), **self._layout()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        now = self._layout()
        saved = {k: int(state_dict.get(k, v)) for k, v in now.items()}
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches"])
        self.epoch_sampler.set_epoch(epoch)
        self.epoch = epoch
        if saved != now:
            warnings.warn(
                f"the loader state in the checkpoint is for {saved}, this loader has {now}: epoch {epoch} starts "
                "again from its first batch",
                stacklevel=2,
            )
            self.batches, self._resume_at = 0, None
            return
        self.batches, self._resume_at = batches, (epoch, batches)


class _CountingIterator(Iterator[Any]):
    """The loader's iterator: starts the pass at the first ``next`` and counts the batches it hands out."""

    def __init__(self, loader: ResumableDataLoader) -> None:
        self._loader = loader
        self._it: Iterator[Any] | None = None

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._loader._start()
        batch = next(self._it)
        self._loader.batches += 1
        return batch

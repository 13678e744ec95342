"""What a training run does with the bad images its loaders report: count, name, gather over ranks, stop.

The datasets and the policy live in :mod:`wbpose.data.bad_images`: a loader replaces a bad training sample by the
next instance whose image reads (``bad_index`` names the bad one) and keeps a bad validation/test box in the batch
marked by ``bad_index`` (its prediction is dropped: a miss in the metric). :class:`BadImageLedger` is the
LightningModule's side of it:

- training: warn once per file and process, gather the new ones of every DDP rank each step (every rank then holds
  the same union), log ``train/bad_images`` and stop with a :class:`~wbpose.data.errors.DataError` naming every
  file once the count exceeds ``data.bad_images.budget``; the set travels in checkpoints, so a resumed run keeps
  counting towards the same budget;
- validation/test: collect this process's bad rows during the epoch, gather them at its end, warn naming the files
  and report ``<stage>/bad_images``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from wbpose.data.bad_images import BAD_ROWS_KEY, BadImagePolicy, format_bad_images
from wbpose.data.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["BAD_IMAGES_KEY", "BadImageLedger", "bad_rows"]

#: Checkpoint key of the bad training images seen so far ([image key, instance index] pairs), so the budget spans
#: a resumed run.
BAD_IMAGES_KEY = "wbpose_bad_images"


def bad_rows(batch: Mapping[str, Any]) -> list[int]:
    """Instance indices of the batch's rows whose image was bad (``[]`` for a batch without ``bad_index``): noted on
    the host by the datamodule (``BAD_ROWS_KEY``), else read from the device tensor (a sync)."""
    rows = batch.get(BAD_ROWS_KEY)
    if rows is None:
        bad = batch.get("bad_index")
        rows = bad[bad >= 0].tolist() if isinstance(bad, torch.Tensor) else []
    return rows


def _dataset(module: pl.LightningModule, stage: str) -> Any | None:
    """The dataset whose instance indices ``bad_index`` holds: the datamodule's, else the loader's, else None."""
    trainer = module._trainer
    if trainer is None:
        return None
    dataset = getattr(trainer.datamodule, "train_dataset" if stage == "train" else "val_dataset", None)
    if dataset is None:
        loader = {"train": "train_dataloader", "val": "val_dataloaders", "test": "test_dataloaders"}[stage]
        dataset = getattr(getattr(trainer, loader, None), "dataset", None)
    return dataset


def _image_key(dataset: Any | None, index: int) -> int:
    """The image of instance ``index`` (its row in the dataset's image table; the index itself without one)."""
    rows = getattr(getattr(dataset, "instances", None), "image_index", None)
    return int(rows[index]) if rows is not None else int(index)


def _describe(dataset: Any | None, index: int) -> str:
    describe = getattr(dataset, "describe_bad_image", None)
    return describe(index) if describe is not None else f"instance index {index} (no dataset to name its file)"


def _policy(module: pl.LightningModule) -> BadImagePolicy:
    policy = getattr(getattr(module._trainer, "datamodule", None), "bad_images", None)
    return policy if isinstance(policy, BadImagePolicy) else BadImagePolicy()


def gather_indices(module: pl.LightningModule, local: list[int]) -> list[int]:
    """``local`` of every DDP rank, concatenated (one collective when no rank has any, two otherwise); every rank
    calls this at the same point."""
    trainer = module._trainer
    if trainer is None or trainer.world_size <= 1:
        return list(local)
    counts = module.all_gather(torch.tensor([len(local)], dtype=torch.long, device=module.device))
    most = int(counts.max())
    if most == 0:
        return []
    padded = torch.full((most,), -1, dtype=torch.long, device=module.device)
    if local:
        padded[: len(local)] = torch.as_tensor(local, dtype=torch.long, device=module.device)
    gathered = module.all_gather(padded).reshape(-1)
    return gathered[gathered >= 0].tolist()


class BadImageLedger:
    """The bad images a :class:`~wbpose.engine.module.TopdownPoseModule` has met (see the module docstring).

    Attributes:
        train: distinct bad training images over the run, every rank's: image key -> first instance index.
        eval_rows: this process's bad rows (instance indices) of the current validation / test epoch.
    """

    def __init__(self) -> None:
        self.train: dict[int, int] = {}
        self.eval_rows: dict[str, list[int]] = {"val": [], "test": []}

    # ------------------------------------------------------------------ training
    def count_training(self, module: pl.LightningModule, batch: Mapping[str, Any], batch_size: int) -> None:
        """Warn once per file and process about the batch's bad images (each replaced by another instance in the
        loader), add every rank's new ones to the run's count, log ``train/bad_images``, stop past the budget.

        Under DDP every training step gathers the ranks' new bad images (one all_gather of one number, a second
        only when some rank has any): training ranks run the same number of steps, so every rank counts the same
        union and all stop together with the same error."""
        dataset = _dataset(module, "train")
        new: dict[int, int] = {}
        for index in bad_rows(batch):  # the bad rows only: almost always none
            key = _image_key(dataset, index)
            if key not in self.train and key not in new:
                new[key] = index
                log.warning(
                    "skipping a bad training image (the sample is replaced by the next instance whose image reads; "
                    "data.bad_images): %s",
                    _describe(dataset, index),
                )
        everyone = gather_indices(module, list(new.values()))
        for index in everyone:
            self.train.setdefault(_image_key(dataset, index), index)
        count = len(self.train)
        module.log("train/bad_images", float(count), on_step=True, on_epoch=False, batch_size=batch_size)
        if not everyone:
            return
        policy = _policy(module)
        num_images = getattr(dataset, "num_images", None)
        limit = policy.limit(num_images)
        if limit is not None and count > limit:
            of = f" of {num_images} training images" if num_images is not None else ""
            raise DataError(
                f"stopping: {count} bad training images (missing, truncated, corrupt or of the wrong size) exceed "
                f"the budget data.bad_images.budget={policy.budget} ({limit} allowed{of}); fix or remove them, or "
                f"raise the budget (null: no limit). Every bad image seen:\n"
                + format_bad_images(_describe(dataset, i) for i in self.train.values())
            )

    # ------------------------------------------------------------------ evaluation
    def note_eval(self, stage: str, rows: list[int]) -> None:
        """Remember this process's bad rows of a validation/test batch until the epoch ends."""
        self.eval_rows.setdefault(stage, []).extend(rows)

    def report_eval(self, module: pl.LightningModule, stage: str) -> dict[str, float]:
        """``{"<stage>/bad_images": files}`` over every rank (warning naming them) when the dataset marks bad
        images or some were seen; ``{}`` otherwise. Every rank calls this at the end of the epoch."""
        rows = gather_indices(module, self.eval_rows.get(stage, []))
        self.eval_rows[stage] = []
        dataset = _dataset(module, stage)
        if not rows and getattr(dataset, "on_bad_image", "raise") == "raise":
            return {}
        files: dict[int, int] = {}
        for index in rows:
            files.setdefault(_image_key(dataset, index), index)
        if files and module.global_rank == 0:
            log.warning(
                "%s: %d bad image(s) (missing, truncated, corrupt or of the wrong size): their %d box(es) got no "
                "prediction and count as misses (data.bad_images):\n%s",
                stage,
                len(files),
                len(rows),
                format_bad_images(_describe(dataset, i) for i in files.values()),
            )
        return {f"{stage}/bad_images": float(len(files))}

    # ------------------------------------------------------------------ checkpoints
    def save(self, checkpoint: dict[str, Any]) -> None:
        """Put the training set into a checkpoint (nothing when empty)."""
        if self.train:
            checkpoint[BAD_IMAGES_KEY] = [[key, index] for key, index in self.train.items()]

    def load(self, checkpoint: Mapping[str, Any]) -> None:
        """Add a checkpoint's training set to this one."""
        for key, index in checkpoint.get(BAD_IMAGES_KEY, []):
            self.train.setdefault(int(key), int(index))

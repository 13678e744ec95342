"""The LightningModule of top-down heatmap pose estimation: training loss, flip-test evaluation, optimiser and LR
schedule, and checkpoints that carry their own resolved Hydra config.

Data flow (docs/ARCHITECTURE.md): batch -> ``model`` -> heatmaps -> (flip test) -> ``codec.decode`` on the device
-> ``crop_to_image`` -> ``CocoWholeBodyMetric.update``. Every component is passed in, built from ``conf/`` by
:func:`wbpose.build.build_module` (also used to rebuild a module from a checkpoint alone).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from wbpose.build import build_module
from wbpose.checkpoints.io import load_checkpoint, load_state_dict_checked
from wbpose.checkpoints.reader import CONFIG_KEY, RAW_CONFIG_KEY
from wbpose.codecs import flip_test_average
from wbpose.data.bad_images import BAD_ROWS_KEY, BadImagePolicy, format_bad_images
from wbpose.data.errors import DataError
from wbpose.engine.image_logging import log_image_to_loggers
from wbpose.geometry import crop_to_image
from wbpose.keypoints import FLIP_INDICES
from wbpose.visualize import draw_crop_predictions

log = logging.getLogger(__name__)

#: Checkpoint key of the bad training images seen so far ([image key, instance index] pairs), so the budget spans
#: a resumed run.
BAD_IMAGES_KEY = "wbpose_bad_images"

__all__ = ["TopdownPoseModule"]


class TopdownPoseModule(pl.LightningModule):
    """Train and evaluate a top-down heatmap pose model.

    Args:
        model: images (B, 3, H, W) -> heatmaps (B, K, h, w).
        codec: owns decoding (``decode(heatmaps) -> (keypoints_xy crop px, scores)``).
        loss: ``loss(pred, target, weights) -> scalar``.
        optimizer: partial optimiser, called with ``params=``.
        scheduler: partial scheduler factory, called with ``optimizer=`` and ``steps_per_epoch=`` and stepped
            every optimiser step; ``None`` keeps the LR constant.
        val_metric: ``CocoWholeBodyMetric`` with prefix "val" (``None``: validation only logs nothing).
        test_metric: the same with prefix "test" (``None``: ``val_metric`` is used for testing too).
        flip_test: average with the heatmaps of the mirrored crop (docs/conventions.md#flip-test).
        shift_heatmap: shift the flipped-back heatmaps one pixel right (MMPose default).
        num_vis_images: crops drawn and logged after each validation (0 disables).
        vis_score_thr: keypoints at or below this score are not drawn.
        channels_last: run the model in the NHWC memory layout: ``True``, ``False``, or ``"auto"`` (default): NHWC
            when the trainer runs on CPU, where oneDNN's NHWC convolutions are faster (figures: README,
            ``benchmarks/model.py``), the default layout on GPUs (not benchmarked there yet).
        input_hw: network input (height, width); when given, Lightning's model summary shows the in/out shapes
            and the FLOPs of one image.
    """

    def __init__(
        self,
        model: nn.Module,
        codec: Any,
        loss: nn.Module | Callable[..., torch.Tensor],
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        val_metric: Any | None = None,
        test_metric: Any | None = None,
        flip_test: bool = True,
        shift_heatmap: bool = True,
        num_vis_images: int = 8,
        vis_score_thr: float = 0.3,
        channels_last: bool | str = "auto",
        input_hw: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        # plain ints: hyperparameters go into checkpoints, which are read weights-only (no OmegaConf objects)
        input_hw = None if input_hw is None else [int(v) for v in input_hw]
        self.save_hyperparameters(
            ignore=["model", "codec", "loss", "optimizer", "scheduler", "val_metric", "test_metric"], logger=False
        )
        self.model = model
        self.codec = codec
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_metric = val_metric
        self.test_metric = test_metric
        self.flip_test = flip_test
        self.shift_heatmap = shift_heatmap
        self.num_vis_images = num_vis_images
        self.vis_score_thr = vis_score_thr
        if channels_last not in (True, False, "auto"):
            raise ValueError(f"channels_last must be true, false or 'auto', got {channels_last!r}")
        self.channels_last = channels_last if channels_last == "auto" else bool(channels_last)
        if channels_last is True:
            self._to_channels_last()
        self.register_buffer("flip_indices", torch.as_tensor(FLIP_INDICES, dtype=torch.long), persistent=False)
        #: Resolved and raw configs written into checkpoints (set by ``build_module``; restored from checkpoints).
        self.wbpose_config: dict[str, Any] | None = None
        self.wbpose_config_raw: dict[str, Any] | None = None
        self._vis: dict[str, torch.Tensor] | None = None
        #: Distinct bad images (image key -> first instance index): "train" over the run, every DDP rank's; and
        #: the bad rows (instance indices) of this process in the current validation/test epoch.
        self._bad_train: dict[int, int] = {}
        self._bad_eval_rows: dict[str, list[int]] = {"val": [], "test": []}
        if input_hw is not None:  # lets Lightning's model summary show in/out shapes and FLOPs
            self.example_input_array = torch.zeros(1, 3, int(input_hw[0]), int(input_hw[1]))

    # ------------------------------------------------------------------ forward / training
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Heatmaps of a batch of crops. Shape: images (B, 3, H, W) -> (B, K, h, w)."""
        return self._run_model(images)

    def _run_model(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last is True:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def _to_channels_last(self) -> None:
        """NHWC weights (and, from now on, inputs). Parameters keep their identity and the layout through .to()."""
        self.model = self.model.to(memory_format=torch.channels_last)
        self.channels_last = True

    def setup(self, stage: str) -> None:
        """Resolve ``channels_last="auto"`` on the trainer's device: before DDP wraps the model and before the
        optimiser exists, so both see the final layout."""
        if self.channels_last == "auto":
            if self.trainer.strategy.root_device.type == "cpu":
                self._to_channels_last()
            else:
                self.channels_last = False

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if "bad_index" in batch:
            self._count_bad_training_images(batch, batch["image"].shape[0])
        heatmaps = self._run_model(batch["image"])
        loss = self.loss(heatmaps, batch["heatmaps"], batch["weights"])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); lower the learning rate, check the data, "
                f"or resume from the last good checkpoint"
            )
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=heatmaps.shape[0])
        return loss

    # ------------------------------------------------------------------ evaluation
    def predict_heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Heatmaps with the flip test applied when enabled. Shape: (B, 3, H, W) -> (B, K, h, w)."""
        heatmaps = self._run_model(images)
        if self.flip_test:
            flipped = self._run_model(images.flip(-1))
            heatmaps = flip_test_average(heatmaps, flipped, self.flip_indices, shift=self.shift_heatmap)
        return heatmaps

    def predict_batch(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the model, flip test and decoding on a batch and map keypoints to image pixels.

        Returns:
            ``keypoints_crop`` (B, K, 2) crop px, ``keypoints`` (B, K, 2) image px, ``scores`` (B, K).
        """
        images = batch["image"]
        heatmaps = self.predict_heatmaps(images)
        keypoints_crop, scores = self.codec.decode(heatmaps)
        input_wh = (images.shape[-1], images.shape[-2])
        keypoints = crop_to_image(keypoints_crop, batch["center_xy"], batch["scale_wh"], input_wh)
        return {"keypoints_crop": keypoints_crop, "keypoints": keypoints, "scores": scores}

    def _eval_step(
        self, batch: Mapping[str, torch.Tensor], batch_idx: int, metric: Any | None, stage: str = "val"
    ) -> None:
        pred = self.predict_batch(batch)
        bad_rows = self._bad_rows(batch)
        if bad_rows:  # boxes on a bad image get no prediction: misses in the metric (data.bad_images)
            self._bad_eval_rows.setdefault(stage, []).extend(bad_rows)
        if metric is not None and len(bad_rows) < batch["image"].shape[0]:
            fields = (
                batch["instance_id"],
                batch["image_id"],
                pred["keypoints"],
                pred["scores"],
                batch["bbox_score"],
                batch["scale_wh"].prod(-1),
            )
            if bad_rows:
                keep = batch["bad_index"] < 0
                fields = tuple(f[keep] for f in fields)
            metric.update(*fields)
        if batch_idx == 0 and self.num_vis_images > 0 and self.global_rank == 0:
            n = self.num_vis_images
            self._vis = {
                "image": batch["image"][:n].detach().float().cpu(),
                "keypoints": pred["keypoints_crop"][:n].detach().float().cpu(),
                "scores": pred["scores"][:n].detach().float().cpu(),
            }

    def _eval_epoch_end(self, metric: Any | None, stage: str) -> dict[str, float]:
        results: dict[str, float] = {}
        if metric is not None:
            results = {k: float(v) for k, v in metric.compute().items()}
            metric.reset()
        results.update(self._report_bad_eval_images(stage))
        if results:
            # compute() already gathered every rank's predictions, so every rank holds the same numbers; the
            # epoch-end mean over ranks is then exact (and keeps Lightning's DDP logging checks quiet).
            self.log_dict(results, sync_dist=True)
        if self._vis is not None and not self.trainer.sanity_checking:
            grid = draw_crop_predictions(
                self._vis["image"], self._vis["keypoints"], self._vis["scores"], self.vis_score_thr
            )
            log_image_to_loggers(self.loggers, f"{stage}/predictions", grid, self.global_step, self.current_epoch)
        self._vis = None
        return results

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, self.val_metric)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end(self.val_metric, "val")

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(
            batch, batch_idx, self.test_metric if self.test_metric is not None else self.val_metric, stage="test"
        )

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end(self.test_metric if self.test_metric is not None else self.val_metric, "test")

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Image-pixel keypoints and scores with the batch's ids (for drawing and export)."""
        pred = self.predict_batch(batch)
        keys = ("image_id", "instance_id", "bbox_score", "center_xy", "scale_wh")
        return {"keypoints": pred["keypoints"], "scores": pred["scores"], **{k: batch[k] for k in keys if k in batch}}

    # ------------------------------------------------------------------ bad images (data.bad_images)
    @staticmethod
    def _bad_rows(batch: Mapping[str, Any]) -> list[int]:
        """Instance indices of the batch's rows whose image was bad (``[]`` for a batch without ``bad_index``):
        noted on the host by the datamodule (``BAD_ROWS_KEY``), else read from the device tensor (a sync)."""
        rows = batch.get(BAD_ROWS_KEY)
        if rows is None:
            bad = batch.get("bad_index")
            rows = bad[bad >= 0].tolist() if isinstance(bad, torch.Tensor) else []
        return rows

    def _bad_image_dataset(self, stage: str) -> Any | None:
        """The dataset whose instance indices ``bad_index`` holds: the datamodule's, else the loader's, else None."""
        trainer = self._trainer
        if trainer is None:
            return None
        dataset = getattr(trainer.datamodule, "train_dataset" if stage == "train" else "val_dataset", None)
        if dataset is None:
            loader = {"train": "train_dataloader", "val": "val_dataloaders", "test": "test_dataloaders"}[stage]
            dataset = getattr(getattr(trainer, loader, None), "dataset", None)
        return dataset

    @staticmethod
    def _image_key(dataset: Any | None, index: int) -> int:
        """The image of instance ``index`` (its row in the dataset's image table; the index itself without one)."""
        rows = getattr(getattr(dataset, "instances", None), "image_index", None)
        return int(rows[index]) if rows is not None else int(index)

    @staticmethod
    def _describe_bad_image(dataset: Any | None, index: int) -> str:
        describe = getattr(dataset, "describe_bad_image", None)
        return describe(index) if describe is not None else f"instance index {index} (no dataset to name its file)"

    def _gather_indices(self, local: list[int]) -> list[int]:
        """``local`` of every DDP rank, concatenated (one collective when no rank has any, two otherwise); every
        rank calls this at the same point."""
        trainer = self._trainer
        if trainer is None or trainer.world_size <= 1:
            return list(local)
        counts = self.all_gather(torch.tensor([len(local)], dtype=torch.long, device=self.device))
        most = int(counts.max())
        if most == 0:
            return []
        padded = torch.full((most,), -1, dtype=torch.long, device=self.device)
        if local:
            padded[: len(local)] = torch.as_tensor(local, dtype=torch.long, device=self.device)
        gathered = self.all_gather(padded).reshape(-1)
        return gathered[gathered >= 0].tolist()

    def _bad_image_policy(self) -> BadImagePolicy:
        policy = getattr(getattr(self._trainer, "datamodule", None), "bad_images", None)
        return policy if isinstance(policy, BadImagePolicy) else BadImagePolicy()

    def _count_bad_training_images(self, batch: Mapping[str, Any], batch_size: int) -> None:
        """Warn once per file and process about the batch's bad images (each replaced by another instance in the
        loader), add every rank's new ones to the run's count, log ``train/bad_images``, stop past the budget.

        Under DDP every training step gathers the ranks' new bad images (one all_gather of one number, a second
        only when some rank has any): training ranks run the same number of steps, so every rank counts the same
        union and all stop together with the same error."""
        dataset = self._bad_image_dataset("train")
        new: dict[int, int] = {}
        for index in self._bad_rows(batch):  # the bad rows only: almost always none
            key = self._image_key(dataset, index)
            if key not in self._bad_train and key not in new:
                new[key] = index
                log.warning(
                    "skipping a bad training image (the sample is replaced by the next instance whose image reads; "
                    "data.bad_images): %s",
                    self._describe_bad_image(dataset, index),
                )
        everyone = self._gather_indices(list(new.values()))
        if not everyone:
            self.log("train/bad_images", float(len(self._bad_train)), on_step=True, on_epoch=False,
                     batch_size=batch_size)  # fmt: skip
            return
        for index in everyone:
            self._bad_train.setdefault(self._image_key(dataset, index), index)
        count = len(self._bad_train)
        self.log("train/bad_images", float(count), on_step=True, on_epoch=False, batch_size=batch_size)
        policy = self._bad_image_policy()
        num_images = getattr(dataset, "num_images", None)
        limit = policy.limit(num_images)
        if limit is not None and count > limit:
            of = f" of {num_images} training images" if num_images is not None else ""
            raise DataError(
                f"stopping: {count} bad training images (missing, truncated, corrupt or of the wrong size) exceed "
                f"the budget data.bad_images.budget={policy.budget} ({limit} allowed{of}); fix or remove them, or "
                f"raise the budget (null: no limit). Every bad image seen:\n"
                + format_bad_images(self._describe_bad_image(dataset, i) for i in self._bad_train.values())
            )

    def _report_bad_eval_images(self, stage: str) -> dict[str, float]:
        """``{"<stage>/bad_images": files}`` over every rank (warning naming them) when the dataset marks bad
        images or some were seen; ``{}`` otherwise. Every rank calls this at the end of the epoch."""
        rows = self._gather_indices(self._bad_eval_rows.get(stage, []))
        self._bad_eval_rows[stage] = []
        dataset = self._bad_image_dataset(stage)
        if not rows and getattr(dataset, "on_bad_image", "raise") == "raise":
            return {}
        files: dict[int, int] = {}
        for index in rows:
            files.setdefault(self._image_key(dataset, index), index)
        if files and self.global_rank == 0:
            log.warning(
                "%s: %d bad image(s) (missing, truncated, corrupt or of the wrong size): their %d box(es) got no "
                "prediction and count as misses (data.bad_images):\n%s",
                stage,
                len(files),
                len(rows),
                format_bad_images(self._describe_bad_image(dataset, i) for i in files.values()),
            )
        return {f"{stage}/bad_images": float(len(files))}

    # ------------------------------------------------------------------ optimisation
    def _steps_per_epoch(self) -> int:
        trainer = self.trainer
        if trainer.train_dataloader is None:
            trainer.fit_loop.setup_data()  # builds the train loader so num_training_batches is known
        batches = trainer.num_training_batches
        if not math.isfinite(batches) or batches <= 0:
            raise ValueError(
                "the LR schedule needs a sized train loader (steps per epoch), got num_training_batches="
                f"{batches}; use sched=constant for iterable datasets"
            )
        return max(1, math.ceil(batches / trainer.accumulate_grad_batches))

    def on_train_start(self) -> None:
        """Give a resumed train loader its place in the epoch from the checkpoint.

        Lightning (2.6) hands the saved loader state over only when it builds the train loader after restoring the
        checkpoint; :meth:`_steps_per_epoch` built it before (Lightning issue #20550), so the state waits in the fit
        loop and is handed over here. The loader (``wbpose.data.sampling.ResumableDataLoader``) starts its pass at
        the first batch asked for, which comes after this hook. A no-op when there is nothing left to hand over.
        """
        load = getattr(self.trainer.fit_loop, "_load_combined_loader_states", None)
        if load is None:  # another Lightning: say so rather than fail
            log.warning("this Lightning has no fit_loop._load_combined_loader_states: a mid-epoch resume replays data")
            return
        load()

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("training needs an optimiser: compose the config with optim=adam (or another)")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer, steps_per_epoch=self._steps_per_epoch())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.wbpose_config is not None:
            checkpoint[CONFIG_KEY] = self.wbpose_config
        if self.wbpose_config_raw is not None:
            checkpoint[RAW_CONFIG_KEY] = self.wbpose_config_raw
        if self._bad_train:
            checkpoint[BAD_IMAGES_KEY] = [[key, index] for key, index in self._bad_train.items()]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.wbpose_config is None:
            self.wbpose_config = checkpoint.get(CONFIG_KEY)
            self.wbpose_config_raw = checkpoint.get(RAW_CONFIG_KEY)
        for key, index in checkpoint.get(BAD_IMAGES_KEY, []):
            self._bad_train.setdefault(int(key), int(index))

    def set_config(self, cfg: DictConfig) -> None:
        """Remember the config (resolved and raw) so that checkpoints can rebuild this module without Hydra."""
        self.wbpose_config = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        self.wbpose_config_raw = OmegaConf.to_container(cfg, resolve=False)  # type: ignore[assignment]

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str | torch.device = "cpu", with_metrics: bool = False
    ) -> TopdownPoseModule:
        """Rebuild a module from one of our checkpoints alone, from the config it carries.

        Args:
            path: a ``.ckpt`` written by ``scripts/train.py``.
            map_location: device for the weights.
            with_metrics: also build the metrics (needs the annotation files the config names).
        """
        loaded = load_checkpoint(path)
        if loaded.config is None:
            raise ValueError(
                f"checkpoint {path} has no embedded config ('{CONFIG_KEY}'); build the module from a config"
            )
        module = build_module(OmegaConf.create(loaded.config), with_metrics=with_metrics, init_weights=False)
        load_state_dict_checked(module.model, loaded.state_dict, loaded.source)
        return module.to(map_location)

"""The LightningModule of top-down heatmap pose estimation: training loss, flip-test evaluation, optimiser and LR
schedule, and checkpoints that carry their own resolved Hydra config.

Data flow (docs/architecture.md): batch -> ``model`` -> heatmaps -> (flip test) -> ``codec.decode`` on the device
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
from wbpose.engine.bad_images import BadImageLedger, bad_rows
from wbpose.engine.fast_step import Capture, TrainStep, autocast_dtype, check_step_mode
from wbpose.engine.image_logging import log_image_to_loggers
from wbpose.geometry import crop_to_image
from wbpose.keypoints import FLIP_INDICES
from wbpose.visualize import draw_crop_predictions

log = logging.getLogger(__name__)

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
            when the trainer runs on CPU, where oneDNN's NHWC convolutions are faster (figures: docs/benchmarks.md,
            ``benchmarks/model.py``), the default layout on GPUs (not benchmarked there yet).
        input_hw: network input (height, width); when given, Lightning's model summary shows the in/out shapes
            and the FLOPs of one image.
        step_mode: how a training step runs (:mod:`wbpose.engine.fast_step`): ``"eager"`` (default),
            ``"compile"`` (``torch.compile`` of forward and loss) or ``"cuda_graph"`` (forward, loss and backward
            captured as one CUDA graph; one CUDA device, no gradient accumulation, no ``16-mixed``). Every mode
            computes the eager step's numbers; the optimiser's update, the LR schedule and gradient clipping stay
            Lightning's.
        compile_options: ``torch.compile`` keyword arguments for ``step_mode="compile"`` (``None``:
            ``mode="reduce-overhead"`` on CUDA, the defaults elsewhere).
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
        step_mode: str = "eager",
        compile_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # plain data: hyperparameters go into checkpoints, which are read weights-only (no OmegaConf objects)
        input_hw = None if input_hw is None else [int(v) for v in input_hw]
        if isinstance(compile_options, DictConfig):
            compile_options = OmegaConf.to_container(compile_options, resolve=True)  # type: ignore[assignment]
        compile_options = dict(compile_options or {})
        check_step_mode(step_mode)
        if compile_options and step_mode != "compile":
            raise ValueError(f"compile_options apply to step_mode=compile only; got step_mode={step_mode!r}")
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
        #: The bad images met so far (wbpose.engine.bad_images): training over the run, evaluation this epoch.
        self.bad_image_ledger = BadImageLedger()
        self.step_mode = step_mode
        self.compile_options = compile_options
        #: The ``cuda_graph`` capture (``None``: ``CudaGraphCapture``); tests set a ``RerunCapture`` to run on CPU.
        self.graph_capture: Capture | None = None
        self._train_step: TrainStep | None = None
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
        if stage == "fit" and self.step_mode == "cuda_graph":
            self._check_cuda_graph_trainer()

    def _check_cuda_graph_trainer(self) -> None:
        """The trainer settings a captured step cannot serve, named before any data is loaded."""
        trainer = self.trainer
        device = trainer.strategy.root_device
        problems = []
        if device.type != "cuda" and self.graph_capture is None:
            problems.append(f"the trainer runs on {device.type}, CUDA graphs need a CUDA GPU (trainer=gpu)")
        if trainer.world_size > 1:
            problems.append(f"{trainer.world_size} processes: a captured backward pass would skip DDP's gradient "
                            "all-reduce (use step_mode=compile with DDP)")  # fmt: skip
        if trainer.accumulate_grad_batches != 1:
            problems.append(f"accumulate_grad_batches={trainer.accumulate_grad_batches}: every replay overwrites "
                            "the gradients")  # fmt: skip
        if str(trainer.precision) in ("16-mixed", "16"):
            problems.append("precision 16-mixed scales the loss outside the graph (use bf16-mixed)")
        if problems:
            raise ValueError("step_mode=cuda_graph cannot run here: " + "; ".join(problems))

    def _make_train_step(self) -> TrainStep:
        precision = str(self.trainer.precision) if self._trainer is not None else "32-true"
        return TrainStep(
            self.model,
            self.loss,
            mode=self.step_mode,
            autocast=autocast_dtype(precision),
            channels_last=self.channels_last is True,
            compile_options=self.compile_options,
            capture=self.graph_capture,
        )

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if "bad_index" in batch:
            self.bad_image_ledger.count_training(self, batch, batch["image"].shape[0])
        if self._train_step is None:
            self._train_step = self._make_train_step()
        loss = self._train_step(batch["image"], batch["heatmaps"], batch["weights"])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); lower the learning rate, check the data, "
                f"or resume from the last good checkpoint"
            )
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Lightning's backward pass, skipped where the training step has run it (``step_mode="cuda_graph"``)."""
        if self._train_step is not None and self._train_step.computes_grads:
            return
        super().backward(loss, *args, **kwargs)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        """Zero the gradients before the backward pass; with ``step_mode="cuda_graph"`` the step has already
        written them (Lightning zeroes between the training step and the backward pass), so they stay."""
        if self._train_step is not None and self._train_step.computes_grads:
            return
        super().optimizer_zero_grad(epoch, batch_idx, optimizer)

    # ------------------------------------------------------------------ evaluation
    def predict_heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Heatmaps with the flip test applied when enabled. Shape: (B, 3, H, W) -> (B, K, h, w).

        With the model in eval mode the crops and their mirrors go through the network as one batch of 2B (one
        forward pass: half the launches; twice the activation memory of a B batch, which a validation batch
        affords). BatchNorm then uses its running statistics, so every crop's heatmaps are those of two separate
        passes (to the kernels' rounding). In training mode BatchNorm's batch statistics would mix the crops with
        their mirrors, so there the two halves run as two passes.
        """
        if not self.flip_test:
            return self._run_model(images)
        if self.model.training:
            heatmaps, flipped = self._run_model(images), self._run_model(images.flip(-1))
        else:
            n = images.shape[0]
            both = self._run_model(torch.cat([images, images.flip(-1)]))
            heatmaps, flipped = both[:n], both[n:]
        return flip_test_average(heatmaps, flipped, self.flip_indices, shift=self.shift_heatmap)

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
        bad = bad_rows(batch)
        if bad:  # boxes on a bad image get no prediction: misses in the metric (data.bad_images)
            self.bad_image_ledger.note_eval(stage, bad)
        if metric is not None and len(bad) < batch["image"].shape[0]:
            fields = (
                batch["instance_id"],
                batch["image_id"],
                pred["keypoints"],
                pred["scores"],
                batch["bbox_score"],
                batch["scale_wh"].prod(-1),
            )
            if bad:
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
        results.update(self.bad_image_ledger.report_eval(self, stage))
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
        self.bad_image_ledger.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.wbpose_config is None:
            self.wbpose_config = checkpoint.get(CONFIG_KEY)
            self.wbpose_config_raw = checkpoint.get(RAW_CONFIG_KEY)
        self.bad_image_ledger.load(checkpoint)

    def set_config(self, cfg: DictConfig) -> None:
        """Remember the config (resolved and raw) so that checkpoints can rebuild this module without Hydra."""
        self.wbpose_config = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        self.wbpose_config_raw = OmegaConf.to_container(cfg, resolve=False)  # type: ignore[assignment]

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str | torch.device = "cpu", ann_file: str | Path | None = None
    ) -> TopdownPoseModule:
        """Rebuild a module from one of our checkpoints alone, from the config it carries.

        The stored config is read as data (:mod:`wbpose.checkpoints.stored_config`): model, input, codec and
        module settings only, built from the project's own classes; a file naming anything else is refused.

        Args:
            path: a ``.ckpt`` written by ``scripts/train.py``.
            map_location: device for the weights.
            ann_file: also build the metrics, scoring against this annotation file (the checkpoint's data config is
                never used; the metrics write no results file).
        """
        loaded = load_checkpoint(path)
        if loaded.config is None:
            raise ValueError(
                f"checkpoint {path} has no embedded config ('{CONFIG_KEY}'); build the module from a config"
            )
        cfg = OmegaConf.create(loaded.config)
        with_metrics = ann_file is not None
        module = build_module(cfg, ann_file=None if ann_file is None else str(ann_file), with_metrics=with_metrics,
                              init_weights=False)  # fmt: skip
        load_state_dict_checked(module.model, loaded.state_dict, loaded.source)
        return module.to(map_location)

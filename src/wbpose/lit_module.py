"""The LightningModule of top-down heatmap pose estimation: training loss, flip-test evaluation, optimiser and LR
schedule, and checkpoints that carry their own resolved Hydra config.

Data flow (ARCHITECTURE.md): batch -> ``model`` -> heatmaps -> (flip test) -> ``codec.decode`` on the device ->
``crop_to_image`` -> ``CocoWholeBodyMetric.update``. The module is the only Lightning code of the project; every
component is built from ``conf/`` by :func:`build_module` (also used to rebuild a module from a checkpoint alone).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from wbpose.data.keypoints import FLIP_INDICES
from wbpose.geometry import crop_to_image
from wbpose.utils.image_logging import draw_crop_predictions, log_image_to_loggers

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG_KEY",
    "RAW_CONFIG_KEY",
    "TopdownPoseModule",
    "build_module",
    "load_checkpoint_config",
    "load_module_from_checkpoint",
]

#: Key under which checkpoints store the resolved Hydra config (a plain dict): the exact record of the run.
CONFIG_KEY = "wbpose_config"
#: The same config before interpolation (``${paths.data_dir}`` etc. kept), so that evaluation on another machine
#: re-resolves paths there; see ``wbpose.evaluate``.
RAW_CONFIG_KEY = "wbpose_config_raw"


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
        flip_test: average with the heatmaps of the mirrored crop (SPEC 4.6).
        shift_heatmap: shift the flipped-back heatmaps one pixel right (MMPose default).
        num_vis_images: crops drawn and logged after each validation (0 disables).
        vis_score_thr: keypoints at or below this score are not drawn.
        channels_last: run the model in the NHWC memory layout: ``True``, ``False``, or ``"auto"`` (default): NHWC
            when the trainer runs on CPU, where oneDNN's NHWC convolutions are faster (W32 256x192 on 2 cores:
            21.9 vs 14.0 img/s forward, ``benchmarks/model.py``), the default layout on GPUs until measured there.
    """

    def __init__(
        self,
        model: nn.Module,
        codec: Any,
        loss: nn.Module | Callable[..., torch.Tensor],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        val_metric: Any | None = None,
        test_metric: Any | None = None,
        flip_test: bool = True,
        shift_heatmap: bool = True,
        num_vis_images: int = 8,
        vis_score_thr: float = 0.3,
        channels_last: bool | str = "auto",
    ) -> None:
        super().__init__()
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
            from wbpose.codecs import flip_test_average

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

    def _eval_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, metric: Any | None) -> None:
        pred = self.predict_batch(batch)
        if metric is not None:
            metric.update(
                batch["instance_id"],
                batch["image_id"],
                pred["keypoints"],
                pred["scores"],
                batch["bbox_score"],
                batch["scale_wh"].prod(-1),
            )
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
        self._eval_step(batch, batch_idx, self.test_metric if self.test_metric is not None else self.val_metric)

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

    def configure_optimizers(self) -> Any:
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.wbpose_config is None:
            self.wbpose_config = checkpoint.get(CONFIG_KEY)
            self.wbpose_config_raw = checkpoint.get(RAW_CONFIG_KEY)

    def set_config(self, cfg: DictConfig) -> None:
        """Remember the config (resolved and raw) so that checkpoints can rebuild this module without Hydra."""
        self.wbpose_config = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        self.wbpose_config_raw = OmegaConf.to_container(cfg, resolve=False)  # type: ignore[assignment]

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str | torch.device = "cpu", with_metrics: bool = False
    ) -> TopdownPoseModule:
        """Rebuild a module from a checkpoint alone using its embedded config (see :func:`build_module`)."""
        return load_module_from_checkpoint(path, map_location=map_location, with_metrics=with_metrics)


# ---------------------------------------------------------------------- building from config
def model_arch(cfg: DictConfig) -> str | None:
    """The architecture name of a config (``model.net.arch``), or ``None`` when it has none."""
    arch = OmegaConf.select(cfg, "model.net.arch", default=None)
    return None if arch is None else str(arch)


def build_module(
    cfg: DictConfig, codec: Any | None = None, with_metrics: bool = True, load_init_weights: bool = True
) -> TopdownPoseModule:
    """Instantiate model, codec, loss, optimiser/scheduler partials and metrics from a composed config.

    Config nodes used: ``model.net`` (the network), ``model.pretrained`` (ImageNet backbone checkpoint),
    ``model.init.pretrained`` (a pose checkpoint whose backbone starts training), ``codec``, ``optim``,
    ``sched`` and ``module`` (``TopdownPoseModule`` arguments with nested ``loss``/``val_metric``/``test_metric``).

    Args:
        cfg: the composed (training or evaluation) config.
        codec: an already built codec (the DataModule shares it); built from ``cfg.codec`` when ``None``.
        with_metrics: build the metrics (they read the annotation file); ``False`` for data-free use.
        load_init_weights: load ``model.pretrained`` / ``model.init.pretrained`` when set.
    """
    net = instantiate(cfg.model.net)
    if load_init_weights:
        from wbpose.utils.init_weights import load_init_weights as _load

        _load(net, cfg.model)
    if codec is None:
        codec = instantiate(cfg.codec)
    overrides: dict[str, Any] = {}
    if not with_metrics:
        overrides = {"val_metric": None, "test_metric": None}
    optimizer = instantiate(cfg.optim)
    scheduler = instantiate(cfg.sched) if cfg.get("sched") is not None else None
    module = instantiate(cfg.module, model=net, codec=codec, optimizer=optimizer, scheduler=scheduler, **overrides)
    module.set_config(cfg)
    return module


def load_checkpoint_config(path: str | Path) -> tuple[dict[str, Any], DictConfig | None]:
    """Load a checkpoint file and return ``(checkpoint dict, embedded config or None)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    # weights_only loading: opening a checkpoint never runs code from it (numpy values allow-listed only).
    from wbpose.checkpoints.mmpose import read_checkpoint

    checkpoint = read_checkpoint(path)
    cfg = checkpoint.get(CONFIG_KEY) if isinstance(checkpoint, dict) else None
    return checkpoint, (OmegaConf.create(cfg) if cfg is not None else None)


def check_same_arch(expected: str | None, found: str | None, source: str) -> None:
    """Raise a clear error when a checkpoint was trained with another architecture than the config builds."""
    if expected and found and expected != found:
        raise ValueError(
            f"checkpoint {source} holds an HRNet-{found} model but the config builds HRNet-{expected}; "
            f"select the matching model (model=hrnet_{found}) or another checkpoint"
        )


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` whose error names the file and the first mismatching tensors."""
    own = module.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if mismatched or missing or unexpected:
        raise ValueError(
            f"checkpoint {source} does not fit the model (another architecture?): "
            f"{len(mismatched)} shape mismatches {mismatched[:3]}, {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    module.load_state_dict(state_dict, strict=True)


def load_module_from_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    with_metrics: bool = False,
    cfg: DictConfig | None = None,
) -> TopdownPoseModule:
    """Rebuild a :class:`TopdownPoseModule` from a checkpoint's embedded config and load its weights.

    Args:
        path: a ``.ckpt`` written by ``scripts/train.py``.
        map_location: device for the weights.
        with_metrics: also build the metrics (needs the annotation files the config names).
        cfg: use this config instead of the embedded one (its arch must match the checkpoint's).
    """
    checkpoint, embedded = load_checkpoint_config(path)
    if cfg is None:
        if embedded is None:
            raise ValueError(f"checkpoint {path} has no embedded '{CONFIG_KEY}'; pass a config (model=..., codec=...)")
        cfg = embedded
    elif embedded is not None:
        check_same_arch(model_arch(cfg), model_arch(embedded), str(path))
    module = build_module(cfg, with_metrics=with_metrics, load_init_weights=False)
    load_state_dict_checked(module, checkpoint["state_dict"], str(path))
    return module.to(map_location)

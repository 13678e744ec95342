"""What the experiment dashboards compare runs by: the hyperparameters a sweep varies, the best whole-body AP and its
epoch, and the final per-part results in the columns of the seed tables.

:class:`DashboardSummary` (``conf/callbacks/dashboards.yaml``, part of ``callbacks=default``) does, for the loggers
attached to the trainer (others are left alone):

- **TensorBoard**: at the start of fit, the HParams plugin's data: the run as a session holding the hyperparameters
  (``hparams``: input size, codec, sigma, model, LR, batch size, seed, experiment), and an experiment listing the
  metrics (the final per-part AP/AR ``val/<part>_<ap|ar>``, ``best/<monitor>``, ``best/epoch``): names that are also
  logged as scalars, so the HParams dashboard shows each run's last value of each (the final validation of the best
  checkpoint). The session ends as a success at the end of fit, or a failure on an exception.
- **wandb**: ``define_metric(monitor, summary="max,last")``: the run summary holds the best and the last value.
- **every logger**: at each validation during fit, ``best/<monitor>`` and ``best/epoch`` (Lightning's 0-based epoch,
  as in the ``best_epoch<NNN>.ckpt`` name): the best value so far and the epoch it came from (the first one on ties).
- **at a validation outside fit** (``wbpose-train``'s final validation of the best checkpoint): the seed-table row of
  its metrics, as a wandb Table (key ``seed_table``), a TensorBoard text and an MLflow artifact (``seed_table.md``).

The best value and its epoch are kept in checkpoints (a resumed run carries on from them). Only the first process
writes; a logger that fails to take something gets a warning, never a failed run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from wbpose.metrics.tables import PART_COLUMNS, metrics_table, part_values

log = logging.getLogger(__name__)

__all__ = ["DashboardSummary", "part_metric_names", "seed_table_columns"]

STATS = ("ap", "ar")


def part_metric_names(prefix: str = "val") -> list[str]:
    """``["val/body_ap", "val/body_ar", ..., "val/wholebody_ar"]``: the per-part metrics in seed-table order."""
    return [f"{prefix}/{part}_{stat}" for _, part in PART_COLUMNS for stat in STATS]


def seed_table_columns() -> list[str]:
    """``["Body AP", "Body AR", ..., "Whole AR"]``: the value columns of the seed tables."""
    return [f"{title} {stat.upper()}" for title, _ in PART_COLUMNS for stat in STATS]


def _hparam_value(value: Any) -> bool | float | str:
    """A value TensorBoard's HParams can hold: bool, number or string (``None`` as ``"null"``, Hydra's spelling)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def hparams_summaries(
    hparams: Mapping[str, Any], metrics: Sequence[str], start_time: float | None = None
) -> tuple[Any, Any]:
    """The HParams plugin's experiment and session-start summaries (``tensorboard`` protobufs, for a SummaryWriter's
    file writer): ``hparams`` as the session's values, ``metrics`` as the experiment's metric names."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    infos, start = [], plugin_data_pb2.SessionStartInfo(start_time_secs=start_time or time.time())
    for name, raw in hparams.items():
        value = _hparam_value(raw)
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
            kind = "DATA_TYPE_BOOL"
        elif isinstance(value, float):
            start.hparams[name].number_value = value
            kind = "DATA_TYPE_FLOAT64"
        else:
            start.hparams[name].string_value = value
            kind = "DATA_TYPE_STRING"
        infos.append(api_pb2.HParamInfo(name=name, type=api_pb2.DataType.Value(kind)))
    experiment = api_pb2.Experiment(
        hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metrics]
    )
    return (
        _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
    )


def session_end_summary(success: bool, end_time: float | None = None) -> Any:
    """The HParams plugin's session-end summary: status success or failure."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    status = api_pb2.Status.Value("STATUS_SUCCESS" if success else "STATUS_FAILURE")
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=end_time or time.time())
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))


def _summary(tag: str, data: Any) -> Any:
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata

    value = summary_pb2.Summary.Value(
        tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR
    )
    return summary_pb2.Summary(value=[value])


class DashboardSummary(pl.Callback):
    """HParams for TensorBoard, best-value summaries, and the seed-table row of the final validation (module doc).

    Args:
        hparams: name -> value of the hyperparameters runs are compared by (``conf/callbacks/dashboards.yaml``
            interpolates them from the config; add your own there). Values: numbers, strings, bools; ``None`` is
            recorded as ``"null"``, a list as ``"256x192"``.
        monitor: the metric whose best value and epoch are tracked (``${optimized_metric}``); higher is better.
        prefix: prefix of the per-part metrics (``val``: ``val/body_ap`` ...).
        table_key: key of the seed-table row in wandb and TensorBoard, file name (``.md``) in MLflow.
    """

    def __init__(
        self,
        hparams: Mapping[str, Any] | None = None,
        monitor: str = "val/wholebody_ap",
        prefix: str = "val",
        table_key: str = "seed_table",
    ) -> None:
        self.hparams = dict(hparams or {})
        self.monitor = monitor
        self.prefix = prefix
        self.table_key = table_key
        self.best_value: float | None = None
        self.best_epoch: int | None = None

    @property
    def metric_names(self) -> list[str]:
        """The HParams metrics: the per-part AP/AR, ``best/<monitor>`` and ``best/epoch``."""
        return [*part_metric_names(self.prefix), f"best/{self.monitor}", "best/epoch"]

    # ------------------------------------------------------------------ state (kept in checkpoints)
    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_value = state_dict.get("best_value")
        self.best_epoch = state_dict.get("best_epoch")

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                self._tensorboard(logger, *hparams_summaries(self.hparams, self.metric_names))
            elif isinstance(logger, WandbLogger):
                self._guarded(logger, lambda lg: lg.experiment.define_metric(self.monitor, summary="max,last"))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == TrainerFn.FITTING:
            self._track_best(trainer)
        elif trainer.state.fn == TrainerFn.VALIDATING and trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{self.prefix}/")}
            if metrics:
                self._publish_table(trainer, metrics)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end_sessions(trainer, success=True)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._end_sessions(trainer, success=False)

    # ------------------------------------------------------------------ helpers
    def _track_best(self, trainer: pl.Trainer) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        if self.best_value is None or float(value) > self.best_value:
            self.best_value, self.best_epoch = float(value), int(trainer.current_epoch)
        if trainer.is_global_zero:
            best = {f"best/{self.monitor}": self.best_value, "best/epoch": float(self.best_epoch)}
            for logger in trainer.loggers:
                self._guarded(logger, lambda lg: lg.log_metrics(best, step=trainer.global_step))

    def _end_sessions(self, trainer: pl.Trainer, success: bool) -> None:
        if not trainer.is_global_zero:
            return
        from pytorch_lightning.loggers import TensorBoardLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                self._tensorboard(logger, session_end_summary(success))

    def _publish_table(self, trainer: pl.Trainer, metrics: Mapping[str, float]) -> None:
        from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

        step = trainer.global_step

        def tensorboard_text(lg: Any) -> None:
            lg.experiment.add_text(self.table_key, metrics_table({"final": metrics}, first_column="Run"), step)

        def mlflow_artifact(lg: Any) -> None:
            name = lg._run_name or lg.run_id  # noqa: SLF001 - the name the run was started with
            text = metrics_table({str(name): metrics}, first_column="Run")
            lg.experiment.log_text(lg.run_id, text, f"{self.table_key}.md")

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                self._guarded(logger, lambda lg: self._wandb_table(lg, metrics))
            elif isinstance(logger, TensorBoardLogger):
                self._guarded(logger, tensorboard_text)
            elif isinstance(logger, MLFlowLogger):
                self._guarded(logger, mlflow_artifact)

    def _wandb_table(self, logger: Any, metrics: Mapping[str, float]) -> None:
        import wandb

        values = [None if math.isnan(v) or v < 0 else v for v in part_values(metrics, self.prefix)]
        name = logger.experiment.name or logger.experiment.id
        table = wandb.Table(columns=["Run", *seed_table_columns()], data=[[name, *values]])
        logger.experiment.log({self.table_key: table})

    def _tensorboard(self, logger: Any, *summaries: Any) -> None:
        def write(lg: Any) -> None:
            writer = lg.experiment._get_file_writer()  # noqa: SLF001 - as Lightning's own log_hyperparams
            for summary in summaries:
                writer.add_summary(summary)
            writer.flush()

        self._guarded(logger, write)

    @staticmethod
    def _guarded(logger: Any, action: Any) -> None:
        try:
            action(logger)
        except Exception as err:  # noqa: BLE001 - a dashboard is never worth stopping a training run for
            log.warning("dashboard summary: %s did not take it: %s", type(logger).__name__, err)

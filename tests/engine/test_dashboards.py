"""DashboardSummary on its own: HParams protobufs TensorBoard can parse, the best value and its epoch (kept across a
resume), the seed-table row of a final validation. The whole path, through real loggers in a sweep:
tests/integration/test_dashboards.py."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn

from wbpose.engine.dashboards import (
    DashboardSummary,
    hparams_summaries,
    part_metric_names,
    seed_table_columns,
    session_end_summary,
)


class RecordingLogger:
    """A logger that keeps what it is given (any logger but TensorBoard/wandb/MLflow only gets metrics)."""

    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((dict(metrics), step))


def fake_trainer(loggers: list, fn: TrainerFn = TrainerFn.FITTING, **fields) -> SimpleNamespace:
    defaults = {"sanity_checking": False, "is_global_zero": True, "current_epoch": 0, "global_step": 0,
                "callback_metrics": {}}  # fmt: skip
    return SimpleNamespace(loggers=loggers, state=SimpleNamespace(fn=fn), **{**defaults, **fields})


def test_hparams_protobufs_parse_back() -> None:
    from tensorboard.plugins.hparams import api_pb2, metadata

    hparams = {"input": [256, 192], "seed": 1, "lr": 5e-4, "flip": True, "experiment": None, "codec": "dark"}
    experiment, start = hparams_summaries(hparams, ["val/wholebody_ap", "best/epoch"], start_time=12.0)
    assert experiment.value[0].tag == metadata.EXPERIMENT_TAG and start.value[0].tag == metadata.SESSION_START_INFO_TAG
    exp = metadata.parse_experiment_plugin_data(experiment.value[0].metadata.plugin_data.content)
    types = {h.name: api_pb2.DataType.Name(h.type).removeprefix("DATA_TYPE_") for h in exp.hparam_infos}
    assert types == {"input": "STRING", "seed": "FLOAT64", "lr": "FLOAT64", "flip": "BOOL", "experiment": "STRING",
                     "codec": "STRING"}  # fmt: skip
    assert [m.name.tag for m in exp.metric_infos] == ["val/wholebody_ap", "best/epoch"]
    info = metadata.parse_session_start_info_plugin_data(start.value[0].metadata.plugin_data.content)
    assert info.hparams["input"].string_value == "256x192" and info.hparams["seed"].number_value == 1
    assert info.hparams["flip"].bool_value is True and info.hparams["experiment"].string_value == "null"
    assert info.start_time_secs == 12.0
    end = metadata.parse_session_end_info_plugin_data(session_end_summary(False).value[0].metadata.plugin_data.content)
    assert api_pb2.Status.Name(end.status) == "STATUS_FAILURE"


def test_best_value_and_epoch_survive_a_resume() -> None:
    logger = RecordingLogger()
    callback = DashboardSummary(monitor="val/wholebody_ap")
    sanity = fake_trainer([logger], sanity_checking=True, callback_metrics={"val/wholebody_ap": 0.9})
    callback.on_validation_end(sanity, None)  # the sanity check's numbers are not a result
    for epoch, value in enumerate([0.2, 0.5, math.nan, 0.5, 0.4]):
        trainer = fake_trainer([logger], current_epoch=epoch, global_step=10 * epoch,
                               callback_metrics={"val/wholebody_ap": value})  # fmt: skip
        callback.on_validation_end(trainer, None)
    assert (callback.best_value, callback.best_epoch) == (0.5, 1)  # the first of equal values; NaN skipped
    assert [m["best/epoch"] for m, _ in logger.logged] == [0, 1, 1, 1]
    assert [step for _, step in logger.logged] == [0, 10, 30, 40]

    resumed = DashboardSummary(monitor="val/wholebody_ap")
    resumed.load_state_dict(callback.state_dict())
    for epoch, value in [(5, 0.45), (6, 0.6)]:
        resumed.on_validation_end(fake_trainer([], current_epoch=epoch, callback_metrics={"val/wholebody_ap": value}),
                                  None)  # fmt: skip
        assert resumed.best_epoch == (1 if epoch == 5 else 6)
    other_rank = DashboardSummary()
    other_rank.on_validation_end(
        fake_trainer([logger], is_global_zero=False, callback_metrics={"val/wholebody_ap": 0.3}), None
    )
    assert other_rank.best_value == 0.3 and len(logger.logged) == 4  # tracked on every rank, logged by the first


def test_final_validation_writes_the_seed_table_row(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = {name: 0.1 * (i + 1) for i, name in enumerate(part_metric_names("val"))}
    metrics["val/face_ap"] = -1.0  # no face in the ground truth
    logger = TensorBoardLogger(tmp_path, name=None, version="")
    callback = DashboardSummary()
    callback.on_validation_end(fake_trainer([logger], TrainerFn.VALIDATING, global_step=7, callback_metrics=metrics),
                               None)  # fmt: skip
    logger.finalize("success")
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors("seed_table/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == 7
    assert "| Run | " + " | ".join(seed_table_columns()) + " |" in text
    assert "| final | 0.100 | 0.200 | 0.300 | 0.400 | - | 0.600 | 0.700 | 0.800 | 0.900 | 1.000 |" in text


def test_the_callback_is_configured_by_default(make_cfg) -> None:
    from wbpose.build import build_callbacks

    cfg = make_cfg(["model=hrnet_tiny", "data=synthetic", "input=256x192", "codec=dark", "seed=5", "optim.lr=1e-3"])
    (callback,) = [cb for cb in build_callbacks(cfg) if isinstance(cb, DashboardSummary)]
    assert callback.hparams == {"experiment": None, "input": "256x192", "codec": "dark", "sigma": 2, "model": "tiny",
                                "lr": 1e-3, "batch_size": 32, "seed": 5}  # fmt: skip
    assert callback.monitor == "val/wholebody_ap" and callback.metric_names[-2:] == ["best/val/wholebody_ap",
                                                                                     "best/epoch"]  # fmt: skip

"""Where an evaluation's wall time goes: waiting for crops, the network, decoding, the metric.

:class:`StageTimer` is a callback for ``Trainer.validate``/``Trainer.test``. It wraps, for the duration of the
loop, the module's ``model.forward`` (every call; with the flip test one pass over the crops and their mirrors),
``codec.decode`` and the metric's ``compute``, and measures the time the loop spends waiting for the next batch (the
loader cutting crops in its workers, plus the copy to the device). On a GPU each timed call ends with a device
synchronisation so that the kernel time lands in its own stage (this costs a little throughput; the split is for
reading, not a benchmark).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["STAGES", "StageTimer", "format_split"]

#: The stages of the split, in pipeline order ("other": the rest of the loop, e.g. the metric's ``update``).
STAGES = ("loading", "crops", "network", "decode", "metric", "other")


def format_split(seconds: dict[str, float], boxes: int | None = None) -> str:
    """One line: ``time split (s): loading 1.2 | crops 3.4 | ... | total 9.9 [(N boxes, M boxes/s)]``."""
    total = sum(seconds.get(k, 0.0) for k in STAGES)
    parts = " | ".join(f"{k} {seconds.get(k, 0.0):.1f}" for k in STAGES)
    rate = f" ({boxes} boxes, {boxes / total:.0f} boxes/s)" if boxes and total > 0 else ""
    return f"time split (s): {parts} | total {total:.1f}{rate}"


class StageTimer(pl.Callback):
    """Accumulates the wall time of an evaluation loop per stage (see the module docstring).

    ``seconds`` holds the totals once the loop has ended; ``loading`` is not measured here (the caller times the
    datamodule's ``prepare_data``/``setup`` and stores it) and ``other`` is the loop's wall time minus the rest.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._restore: list[tuple[Any, str, Any]] = []
        self._mark = 0.0
        self._loop_start = 0.0

    def _wrap(self, owner: Any, name: str, stage: str, sync: bool) -> None:
        if owner is None or not hasattr(owner, name):
            return
        original: Callable[..., Any] = getattr(owner, name)
        had_own = name in vars(owner)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = original(*args, **kwargs)
            if sync:
                torch.cuda.synchronize()
            self.seconds[stage] += time.perf_counter() - start
            return out

        setattr(owner, name, timed)
        self._restore.append((owner, name, original if had_own else None))

    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, metric: Any) -> None:
        sync = pl_module.device.type == "cuda"
        self._wrap(getattr(pl_module, "model", None), "forward", "network", sync)
        self._wrap(getattr(pl_module, "codec", None), "decode", "decode", sync)
        self._wrap(metric, "compute", "metric", False)
        self._loop_start = self._mark = time.perf_counter()

    def _end(self) -> None:
        for owner, name, original in reversed(self._restore):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._restore.clear()
        measured = sum(self.seconds[k] for k in ("crops", "network", "decode", "metric"))
        self.seconds["other"] = max(0.0, time.perf_counter() - self._loop_start - measured)

    def _batch_start(self) -> None:
        self.seconds["crops"] += time.perf_counter() - self._mark

    def _batch_end(self) -> None:
        self._mark = time.perf_counter()

    # Lightning hooks (test and validate)
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metric = getattr(pl_module, "test_metric", None) or getattr(pl_module, "val_metric", None)
        self._start(trainer, pl_module, metric)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, pl_module, getattr(pl_module, "val_metric", None))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end()

    def on_test_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._batch_start()

    def on_validation_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._batch_start()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._batch_end()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._batch_end()

"""StageClock (wbpose.inference.pipeline): each lap adds the time since the previous lap to the stage it names."""

from __future__ import annotations

import itertools

from wbpose.inference import pipeline
from wbpose.inference.pipeline import StageClock


def test_laps_add_up_per_stage(monkeypatch):
    ticks = itertools.chain([0.0, 10.0, 11.0, 13.0, 20.0, 20.5, 24.0, 30.0, 37.0])
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: next(ticks))
    clock = StageClock(("read", "work"))  # t = 0
    assert clock.start() == 10.0
    clock.lap("read")  # 11 - 10
    assert clock.lap("work") == 13.0  # 13 - 11
    clock.start()  # 20: the gap 13..20 counts nowhere
    clock.lap("read")  # 20.5 - 20
    clock.lap("work")  # 24 - 20.5
    clock.lap("work")  # 30 - 24
    clock.totals["extra"] = 1.5
    assert clock.totals == {"read": 1.5, "work": 11.5, "extra": 1.5}
    assert list(clock.totals) == ["read", "work", "extra"]  # named order

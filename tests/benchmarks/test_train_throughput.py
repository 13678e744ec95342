"""``benchmarks/train_throughput.py --step-modes``: the table the GPU check prints, on the CPU with the tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.paths import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("train_throughput", "benchmarks")


def test_step_modes_table_times_and_compares_each_mode(bench, tmp_path, capsys) -> None:
    torch._dynamo.reset()
    out = tmp_path / "steps.json"
    rows = bench.main(["--device", "cpu", "--archs", "tiny", "--batch", "2", "--iters", "1", "--step-modes",
                       "compile", "--compile-backend", "eager", "--json", str(out)])  # fmt: skip
    assert [r[5] for r in rows] == ["eager", "compile"]  # eager always first, the reference
    data = json.loads(out.read_text())
    assert data["benchmark"] == "train_step_modes" and data["rows"] == rows
    assert "compile" in data["notes"][-1] and "'backend': 'eager'" in data["notes"][-1]
    eager, compiled = rows
    assert float(eager[6].split()[0]) > 0 and float(compiled[6].split()[0]) > 0 and eager[7] == "1.00"
    # the eager backend runs the same operations: the compiled step's first step equals the eager one
    assert eager[9].startswith("eager again: loss 0.0e+00, grads 0.0e+00")
    assert compiled[9].startswith("loss 0.0e+00, grads 0.0e+00, weights max 0.0e+00")
    assert "| tiny | 128x96 | 2 | 32-true | False | compile |" in capsys.readouterr().out


def test_cuda_graph_mode_on_the_cpu_is_refused_before_any_work(bench) -> None:
    with pytest.raises(SystemExit, match="--step-modes cuda_graph needs --device cuda"):
        bench.main(["--device", "cpu", "--archs", "tiny", "--step-modes", "eager", "cuda_graph"])


def test_a_broken_mode_is_reported_and_the_next_mode_still_runs(bench, capsys) -> None:
    """``benchmarks/gpu.py`` calls ``step_mode_rows`` with its own input size, capture and rates: a mode that
    raises gets a ``failed`` row (its traceback in the log) and the modes after it are still timed."""

    class RefusingCapture:
        def __call__(self, body):
            raise RuntimeError("capture refused")

    torch._dynamo.reset()
    rates: dict[str, float] = {}
    rows = bench.step_mode_rows("tiny", 2, "32-true", True, ["cuda_graph", "compile"], torch.device("cpu"), 1,
                                compile_options={"backend": "eager"}, settings=((64, 64), (16, 16), 1.0),
                                capture=RefusingCapture, rates=rates)  # fmt: skip
    assert [r[5] for r in rows] == ["eager", "cuda_graph", "compile"] and rows[0][1] == "64x64"
    assert rows[1][6:] == ["failed", "-", "-", "RuntimeError: capture refused"]
    assert "RuntimeError: capture refused" in capsys.readouterr().err  # the traceback
    assert sorted(rates) == ["compile", "eager"] and all(r > 0 for r in rates.values())
    assert rows[2][6].split()[0] == f"{rates['compile']:.1f}"  # the row prints the median it timed (CPU: 1 decimal)

"""``benchmarks/gpu.py --smoke``: the GPU check's tiny CPU version runs end to end and prints every row."""

from __future__ import annotations

import importlib.util

import pytest

from helpers.paths import REPO_ROOT


@pytest.mark.slow
def test_gpu_benchmark_smoke(capsys):
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO_ROOT / "benchmarks/gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = dict(bench.main(["--smoke"]))
    assert any(k.startswith("train tiny") and k.endswith("memory") for k in rows)
    assert any("loader" in k for k in rows)
    assert rows["decode DARK: max |device - CPU| px"].endswith("(ok)")
    assert rows["decode DARK: max |bf16 - fp32| px"].endswith("(ok)")
    assert any(k.startswith("val protocol") and "metric" in v for k, v in rows.items())
    assert "| check | result |" in capsys.readouterr().out

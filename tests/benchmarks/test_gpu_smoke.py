"""``benchmarks/gpu.py --smoke``: the GPU check's tiny CPU version runs end to end and prints every row."""

from __future__ import annotations

import pytest

from helpers.paths import load_script


@pytest.mark.slow  # 34 s of CPU time (65 s wall at load 9 on 2 shared cores): `make test-slow`
def test_gpu_benchmark_smoke(capsys):
    bench = load_script("gpu", "benchmarks")
    rows = dict(bench.main(["--smoke"]))
    assert any(k.startswith("train tiny") and k.endswith("memory") for k in rows)
    assert any("loader" in k for k in rows)
    assert rows["decode DARK: max |device - CPU| px"].endswith("(ok)")
    assert rows["decode DARK: max |bf16 - fp32| px"].endswith("(ok)")
    assert any(k.startswith("val protocol") and "metric" in v for k, v in rows.items())
    assert "| check | result |" in capsys.readouterr().out

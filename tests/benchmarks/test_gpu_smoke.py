"""``bash benchmarks/gpu.sh --smoke``: the GPU check's tiny CPU version runs end to end through the shell script
(interpreter choice, wheel handling, log) and ``benchmarks/gpu.py``, and prints and writes every row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import REPO_ROOT


@pytest.mark.slow  # 40 s at load 6 on 2 shared cores, 4 min at load 9: `make test-slow`
def test_gpu_benchmark_smoke(tmp_path: Path) -> None:
    no_wheels = tmp_path / "wheels"  # no MMPose wheels: its rows say how to get them (test_mmpose_step.py runs it)
    no_wheels.mkdir()
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "out"), "WBPOSE_WHEELS": str(no_wheels)}
    env.pop("WBPOSE_MMPOSE_SITE", None)
    done = subprocess.run(["bash", "benchmarks/gpu.sh", "--smoke", "--json", str(tmp_path / "gpu.json")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = dict(json.loads((tmp_path / "gpu.json").read_text())["rows"])
    assert rows["decode DARK: max |device - CPU| px"].endswith("(ok)")
    assert rows["decode DARK: max |bf16 - fp32| px"].endswith("(ok)")
    assert rows["device crops vs cv2.warpAffine (fixture)"].endswith("ok)")
    assert rows["nvJPEG vs OpenCV decode (fixture files)"].startswith("skipped (no CUDA")
    assert "samples/s" in rows["floor: imread + warpAffine, 1 core"]
    for decode_on in ("cpu", "gpu"):
        assert "per worker =" in rows[f"loader decode_on={decode_on} b4 1 workers"]
        assert rows[f"train tiny 64x64 b4 fp32 channels_last loader decode_on={decode_on} (1 workers)"].endswith(")")
    assert "with the device crops" in rows["loader decode_on=gpu b4 1 workers"]
    assert "img/s" in rows["train tiny 64x64 b4 fp32 channels_last memory"]
    (val,) = [v for k, v in rows.items() if k.startswith("val protocol tiny flip DARK decode_on=gpu")]
    assert all(part in val for part in ("network", "decode", "metric", "crops on device", "loader wait"))
    assert rows["mmpose"].startswith("skipped (no --mmpose-site")
    assert rows["train compiled / CUDA-graph step"].startswith("not wired yet")
    assert done.stdout.rstrip().splitlines()[-1] == f"wrote {tmp_path / 'gpu.json'}"
    table = done.stdout[done.stdout.rindex("| check | result |") :]
    assert table.count("\n| ") == len(rows)  # the one table, last
    assert "| check | result |" in (tmp_path / "out" / "gpu.log").read_text()

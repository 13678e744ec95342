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


@pytest.mark.slow  # 45 s on 2 shared cores at load 4-6 (each section starts its own process)
def test_gpu_benchmark_smoke(tmp_path: Path) -> None:
    no_wheels = tmp_path / "wheels"  # no MMPose wheels: its rows say how to get them (test_mmpose_step.py runs it)
    no_wheels.mkdir()
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "out"), "WBPOSE_WHEELS": str(no_wheels)}
    env.pop("WBPOSE_MMPOSE_SITE", None)
    cmd = ["bash", "benchmarks/gpu.sh", "--smoke", "--compile", "--compile-backend", "eager", "--json",
           str(tmp_path / "gpu.json")]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = dict(json.loads((tmp_path / "gpu.json").read_text())["rows"])
    assert rows["decode DARK: max |device - CPU| px"].endswith("(ok)")
    assert rows["decode DARK: max |bf16 - fp32| px"].endswith("(ok)")
    assert rows["device crops vs cv2.warpAffine (fixture)"].endswith("ok)")
    assert rows["nvJPEG vs OpenCV decode (fixture files)"].startswith("skipped (no CUDA")
    assert "samples/s" in rows["floor: imread + warpAffine, 1 core"]
    for decode_on in ("cpu", "gpu"):
        assert "per worker =" in rows[f"loader decode_on={decode_on} b4 1 workers"]
    assert "with the device crops" in rows["loader decode_on=gpu b4 1 workers"]
    # the step modes on in-memory batches, each compared with the eager step on the same batch: the CPU stand-in of
    # the CUDA graph and dynamo's capture run the eager operations, so they land on it exactly
    head = "step tiny 64x64 b4 fp32 channels_last memory step_mode="
    modes = ("eager", "cuda_graph (CPU stand-in: RerunCapture)", "compile (backend eager)")
    for mode in modes:
        value = rows[head + mode]
        assert " img/s, " in value and " x eager, first step " in value, value
        assert "loss 0.0e+00, grads 0.0e+00, weights max 0.0e+00" in value, value
    assert "vs eager: eager again: " in rows[head + "eager"]
    # end to end with the loader: every mode with the device crops, the fastest in memory also with the CPU crops
    train = {k: v for k, v in rows.items() if k.startswith("train tiny 64x64 b4 fp32 channels_last step_mode=")}
    assert len(train) == 4 and all(v.endswith(")") and " img/s (" in v for v in train.values()), train
    for mode in modes[1:]:
        assert f"train tiny 64x64 b4 fp32 channels_last step_mode={mode} loader decode_on=gpu (1 workers)" in train
    (fastest,) = [k for k, v in train.items() if v.endswith("(the fastest step mode in memory)") and "=gpu" in k]
    assert fastest.replace("decode_on=gpu", "decode_on=cpu") in train
    (val,) = [v for k, v in rows.items() if k.startswith("val protocol tiny flip DARK decode_on=gpu")]
    assert all(part in val for part in ("network", "decode", "metric", "crops on device", "loader wait"))
    assert rows["mmpose"].startswith("skipped (no --mmpose-site")
    assert rows["tests: pytest -m gpu (5 files)"].startswith("0 passed, 0 failed, 0 errors, ")  # no CUDA: skipped
    assert [part.split()[0] for part in rows["sections s"].split(", ")] == ["checks", "steps", "train", "val",
                                                                             "loader", "tests"]  # fmt: skip
    assert "(" not in rows["sections s"]  # none stopped, failed or skipped
    assert done.stdout.rstrip().splitlines()[-1] == f"wrote {tmp_path / 'gpu.json'}"
    table = done.stdout[done.stdout.rindex("| check | result |") :]
    assert table.count("\n| ") == len(rows)  # the one table, last
    assert "| check | result |" in (tmp_path / "out" / "gpu.log").read_text()

"""``benchmarks/mmpose_step.py --smoke``: MMPose 1.3.2's own training step and pipeline run on CPU from the carried
wheels (``bash benchmarks/fetch_mmpose_wheels.sh``), with the stand-ins for what mmcv-lite and these machines lack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import REPO_ROOT

WHEELS = Path(os.environ.get("WBPOSE_WHEELS", REPO_ROOT / "benchmarks" / "wheels")) / "mmpose"


@pytest.mark.slow  # MMPose's W32 steps on CPU: 100 s at load 6 on 2 shared cores
def test_mmpose_step_smoke(tmp_path: Path) -> None:
    if not list(WHEELS.glob("mmpose-1.3.2-*.whl")):
        pytest.skip(f"no MMPose wheels in {WHEELS} (bash benchmarks/fetch_mmpose_wheels.sh)")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    *map(str, sorted(WHEELS.glob("*.whl")))], check=True, timeout=300)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT / "src")])}
    out = tmp_path / "mmpose.json"
    done = subprocess.run([sys.executable, "benchmarks/mmpose_step.py", "--smoke", "--json", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r[0]: r[1:] for r in json.loads(out.read_text())["rows"]}
    assert rows["versions"][0] == "mmpose 1.3.2, mmengine 0.10.7, mmcv 2.1.0"
    assert "xtcocotools" in rows["versions"][1] and "mmcv.ops" in rows["versions"][1]
    assert float(rows["step fp32 batch 2"][0]) > 0
    assert rows["step bf16 (AmpOptimWrapper)"][1].startswith("skipped")
    for name in ("MMPose train pipeline, 1 process", "wbpose train pipeline, 1 process"):
        assert float(rows[name][0]) > 0 and "x the floor" in rows[name][1]
    for name in ("wbpose loader, 1 workers, batch 2", "MMPose loader, 1 workers, batch 2"):
        assert float(rows[name][0]) > 0 and "per worker" in rows[name][1]

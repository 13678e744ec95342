"""The installed package works outside the checkout: console commands, the shipped config tree, --config-dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import REPO_ROOT

TINY = [
    "experiment=demo",
    "debug=fdr",
    "data.num_workers=0",
    "trainer.enable_progress_bar=false",
    "callbacks.rich_progress_bar=null",
    "extras.print_config=false",
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wbpose built as a wheel and installed (no dependencies: they are this venv's) into a target folder."""
    tmp = tmp_path_factory.mktemp("installed")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(REPO_ROOT), "-w", str(tmp / "wheel")],
                   check=True, capture_output=True, cwd=tmp)  # fmt: skip
    wheel = next((tmp / "wheel").glob("wbpose-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True,
                   capture_output=True, cwd=tmp)  # fmt: skip
    return tmp / "site"


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    env.pop("WBPOSE_ROOT", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_package_ships_its_configs(installed: Path, tmp_path: Path) -> None:
    code = "import wbpose, wbpose.app.config as c; print(wbpose.__file__); print(c.CONFIG_DIR)"
    proc = _run(installed, tmp_path, "-c", code)
    assert proc.returncode == 0, proc.stderr
    package_file, config_dir = proc.stdout.split()
    assert Path(package_file).is_relative_to(installed)  # the installed copy, not the checkout
    assert Path(config_dir).is_relative_to(installed) and (Path(config_dir) / "experiment" / "demo.yaml").is_file()


def test_wbpose_train_runs_outside_the_checkout(installed: Path, synthetic_root: Path, tmp_path: Path) -> None:
    script = installed / "bin" / "wbpose-train"
    assert script.is_file()
    proc = _run(installed, tmp_path, str(script), *TINY, f"data.data_root={synthetic_root}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "logs").glob("*/runs/*/metrics.json"))  # paths resolve under the cwd
    assert len(runs) == 1

    # --config-dir: a user's own experiment next to the shipped ones
    user = tmp_path / "my_configs" / "experiment"
    user.mkdir(parents=True)
    (user / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - demo\nseed: 4242\n")
    proc = _run(installed, tmp_path, str(script), "--config-dir", str(tmp_path / "my_configs"), "experiment=mine",
                *TINY[1:], f"data.data_root={synthetic_root}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    configs = [p.parent / ".hydra" / "config.yaml" for p in (tmp_path / "logs").glob("*/runs/*/metrics.json")]
    assert len(configs) == 2 and sum("seed: 4242" in c.read_text() for c in configs) == 1

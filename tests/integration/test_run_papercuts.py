"""Run-level papercuts: wandb ids kept by ckpt_path=auto, debug= with simulated DDP, --help on every console
command, errors shown once (no config tree on the terminal), debug=limit logging losses,
trainer.enable_progress_bar=false alone, unwritable run folders named before any work."""

from __future__ import annotations

import csv
import importlib
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from conftest import small_overrides
from helpers.paths import REPO_ROOT
from wbpose.app.config import compose_config
from wbpose.app.train import keep_cpu_processes, train


def _script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_auto_resume_keeps_one_wandb_id(synthetic_root: Path, tmp_path: Path, monkeypatch) -> None:
    """The same command twice with ckpt_path=auto and offline wandb: one wandb id (a real one, not "None")."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logs = tmp_path / "logs"
    command = [
        *small_overrides(synthetic_root), "logger=wandb", "ckpt_path=auto", f"paths.log_dir={logs}",
        "trainer.max_steps=2", "trainer.max_epochs=-1", "trainer.limit_val_batches=0", "validate=false",
        "callbacks.model_checkpoint=null", "callbacks.last_checkpoint.every_n_train_steps=1",
        "callbacks.learning_rate_monitor=null", "module.num_vis_images=0", "extras.print_config=false",
    ]  # fmt: skip
    ids = []
    for name in ("first", "second"):
        cfg = compose_config("train", command, output_dir=logs / "train" / "runs" / name)
        train(cfg)
        run_dir = logs / "train" / "runs" / name
        ids.append((run_dir / "wandb_id.txt").read_text().strip())
        offline = [p.name for p in (run_dir / "wandb").glob("offline-run-*")]
        assert len(offline) == 1 and offline[0].endswith(f"-{ids[-1]}"), offline  # the id wandb really used
    assert ids[0] == ids[1] and ids[0] not in ("", "None")
    assert cfg.ckpt_path and "first" in cfg.ckpt_path  # the second run resumed the first


@pytest.mark.parametrize(
    ("trainer", "extra", "devices"),
    [("ddp_sim", [], 2), ("ddp_cpu", [], 2), ("ddp_sim", ["trainer.devices=1"], 1), ("cpu", [], 1)],
)
def test_debug_keeps_simulated_ddp_processes(tmp_path: Path, trainer: str, extra: list[str], devices: int) -> None:
    overrides = ["experiment=demo", f"trainer={trainer}", "debug=fdr", *extra]
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    assert cfg.trainer.devices == 1  # what debug= alone composes
    keep_cpu_processes(cfg, overrides)
    assert cfg.trainer.devices == devices and cfg.trainer.accelerator == "cpu"


def _console_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml (name -> "module:function"; no tomllib on Python 3.10)."""
    section = (REPO_ROOT / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    pairs = [line.split("=", 1) for line in section.splitlines() if "=" in line and not line.startswith("#")]
    return {name.strip(): target.strip().strip('"') for name, target in pairs}


@pytest.mark.parametrize("name", sorted(_console_scripts()))
def test_every_console_script_has_help(name: str, monkeypatch) -> None:
    """``<command> --help`` exits 0 with a usage line (called as the installed wrapper calls it)."""
    module, _, function = _console_scripts()[name].partition(":")
    main = getattr(importlib.import_module(module), function)
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        sys.exit(main())
    assert exit_info.value.code in (0, None), err.getvalue()[-2000:]
    assert f"usage: {name}" in out.getvalue().lower(), out.getvalue()[:500]


def test_failing_run_shows_its_error_once_and_no_config_tree(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _script("model=hrnet_tiny", f"data.data_root={tmp_path / 'nowhere'}", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path)  # fmt: skip
    shown = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert shown.count("COCO-WholeBody data not found") == 1, shown
    assert shown.count("Traceback") <= 1
    assert "CONFIG" not in shown and "──" not in shown  # the tree went to the run folder only
    assert "CONFIG" in (run_dir / "config_tree.log").read_text()
    assert "COCO-WholeBody data not found" in (run_dir / "train.log").read_text()  # and the traceback to the log


def test_unwritable_run_folder_is_named_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a folder below a regular file cannot be created, even by root
    proc = _script("experiment=demo", "debug=fdr", f"hydra.run.dir={blocker / 'run'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"the run folder {blocker / 'run'} is not writable" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    proc = _script("experiment=demo", "debug=fdr", f"paths.log_dir={blocker / 'logs'}", cwd=tmp_path)
    assert proc.returncode == 1 and f"{blocker / 'logs'}" in proc.stderr and "Traceback" not in proc.stderr


def test_debug_limit_logs_losses_with_only_the_progress_bar_switched_off(synthetic_root: Path, tmp_path: Path) -> None:
    """debug=limit (4 steps) logs train/loss; trainer.enable_progress_bar=false works without also removing the
    rich progress bar callback by hand."""
    overrides = [o for o in small_overrides(synthetic_root) if not o.startswith("callbacks.rich_progress_bar")]
    overrides += ["debug=limit", "trainer.enable_progress_bar=false", "module.num_vis_images=0", "input=128x96"]
    overrides += ["trainer.max_epochs=1", "validate=false"]  # its 4 steps, once: the logging cadence is the same
    cfg = compose_config("train", overrides, output_dir=tmp_path / "run")
    assert cfg.callbacks.rich_progress_bar is not None
    _, objects = train(cfg)
    assert objects["trainer"].progress_bar_callback is None
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [r["train/loss"] for r in rows if r.get("train/loss")]
    assert len(losses) >= 2, rows[:3]

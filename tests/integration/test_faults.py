"""Faults a long run must survive or report clearly: torn checkpoints, unwritable or full run folders."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from wbpose.app.resume import RUN_KEY_FILE, find_last_checkpoint
from wbpose.app.startup import check_output_dir, checkpoint_bytes
from wbpose.checkpoints import load_checkpoint, read_checkpoint
from wbpose.checkpoints.reader import is_intact
from wbpose.engine.checkpoint_io import AtomicCheckpointIO
from wbpose.models import build_pose_model


def _write_forever(path: Path) -> None:
    """The child's loop: save 8 MB checkpoints one after the other until killed."""
    torch.set_num_threads(1)
    io = AtomicCheckpointIO()
    step = 0
    while True:
        step += 1
        io.save_checkpoint({"step": step, "weights": torch.full((2_000_000,), float(step))}, path)


def test_sigkill_during_checkpoint_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    """A writer saving 8 MB checkpoints in a loop is SIGKILLed at random points 20 times: what is there loads."""
    path = tmp_path / "last.ckpt"
    rng = random.Random(0)
    steps = []
    for _ in range(20):
        pid = os.fork()
        if pid == 0:  # the writer (forked: no interpreter start-up per kill)
            try:
                _write_forever(path)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if path.exists():
            checkpoint = read_checkpoint(path)  # never raises: the file is complete
            assert torch.all(checkpoint["weights"] == checkpoint["step"])
            steps.append(checkpoint["step"])
    assert len(steps) >= 15 and len(set(steps)) > 1  # kills landed at different points, mostly after some writes


def test_truncated_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    model = build_pose_model("tiny")
    good = tmp_path / "good.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
                                         good)  # fmt: skip
    data = good.read_bytes()
    for cut in (10, len(data) // 3, len(data) - 20):
        torn = tmp_path / f"torn_{cut}.ckpt"
        torn.write_bytes(data[:cut])
        assert not is_intact(torn)
        with pytest.raises(ValueError, match=rf"torn_{cut}.ckpt is truncated or corrupt"):
            load_checkpoint(torn)
    assert is_intact(good)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # a flipped byte inside a tensor: torch.load would not notice
    (tmp_path / "flipped.ckpt").write_bytes(bytes(flipped))
    assert not is_intact(tmp_path / "flipped.ckpt")


def test_auto_resume_skips_a_torn_last_ckpt(tmp_path: Path, caplog) -> None:
    run = tmp_path / "train" / "runs" / "a"
    (run / "checkpoints").mkdir(parents=True)
    (run / RUN_KEY_FILE).write_text("k\n")
    older = run / "checkpoints" / "step4.ckpt"
    torch.save({"step": 4}, older)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(older.read_bytes()[:100])  # torn, and newer
    os.utime(older, (1, 1))
    with caplog.at_level("WARNING", logger="wbpose.app.resume"):
        assert find_last_checkpoint(tmp_path / "train", "k") == older
    assert f"skipping {last}" in caplog.text
    assert find_last_checkpoint(tmp_path / "train", "other key") is None


def test_unwritable_or_full_run_folder_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="a_file/run is not writable"):
        check_output_dir(blocker / "run")
    model = build_pose_model("tiny")
    check_output_dir(tmp_path / "ok", model)  # plenty of room here
    free = int(checkpoint_bytes(model))  # room for one checkpoint only
    monkeypatch.setattr("wbpose.app.startup.shutil.disk_usage", lambda _: SimpleNamespace(free=free))
    with pytest.raises(OSError, match=r"not enough disk space .* MiB free, about .* MiB needed"):
        check_output_dir(tmp_path / "ok", model)


def test_train_refuses_an_unwritable_run_folder(make_cfg, synthetic_root, tmp_path: Path) -> None:
    from wbpose.app.train import train

    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    cfg = make_cfg(["trainer.max_steps=1"], root=synthetic_root)
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(PermissionError, match="not writable"):
        train(cfg)


def test_one_ddp_rank_raising_ends_both_ranks(synthetic_root: Path, tmp_path: Path) -> None:
    """2-process gloo DDP, rank 1 raises at step 2: the run exits non-zero within 60 s of that failure (timed from
    the moment rank 1 raises, so the processes' start-up does not count), its error in the log."""
    import subprocess
    import sys

    from helpers.paths import REPO_ROOT

    cmd = [
        sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "model=hrnet_tiny", "data=synthetic",
        f"data.data_root={synthetic_root}", "data.num_workers=0", "data.batch_size=4", "trainer=ddp_cpu",
        "trainer.max_steps=20", "trainer.limit_val_batches=0", "validate=false", "callbacks.rich_progress_bar=null",
        "extras.print_config=false", "+callbacks.die._target_=helpers.callbacks.RaiseOnRank",
        f"hydra.run.dir={tmp_path / 'run'}", f"+callbacks.die.stamp={tmp_path / 'raised_at'}",
    ]  # fmt: skip
    # the test's own wbpose (an inherited PYTHONPATH, e.g. a checkout's src/) and the helpers for the callback
    path = os.pathsep.join(p for p in (str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    ended = time.time()
    assert proc.returncode != 0
    assert "rank 1 failed on purpose at step 2" in proc.stderr + proc.stdout
    raised = float((tmp_path / "raised_at").read_text())
    assert 0 <= ended - raised < 60, f"the run ended {ended - raised:.1f} s after rank 1 failed"

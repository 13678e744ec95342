"""Exact mid-epoch resume: a run SIGKILLed mid-epoch and resumed from its last step checkpoint trains on exactly the
batches, and ends with exactly the weights, of an uninterrupted run (docs/conventions.md#training-order-and-resume).

Each run is ``scripts/train.py`` in a subprocess (one with 2 loader workers; two gloo DDP ranks with 2 workers
each). The killed run is started in its own session and, once it has taken step ``kill_at`` (after the step
checkpoint before it), SIGKILLs its whole process group: ranks and loader workers die at once, nothing is flushed.
The uninterrupted run goes on beside the killed run and then beside the resumed one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from helpers.paths import REPO_ROOT
from wbpose.checkpoints import read_checkpoint

TIMEOUT_S = 300


def _command(root: Path, run_dir: Path, trainer: str, max_steps: int, *extra: str) -> list[str]:
    return [
        sys.executable, str(REPO_ROOT / "scripts" / "train.py"),
        "model=hrnet_tiny", "data=synthetic", f"data.data_root={root}",
        "data.num_workers=2", "data.persistent_workers=true", "data.batch_size=4",
        f"trainer={trainer}", "trainer.deterministic=true", f"trainer.max_steps={max_steps}", "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "validate=false", "~logger", "seed=42", "cpu_threads=1",
        "callbacks.model_checkpoint=null", "callbacks.learning_rate_monitor=null", "callbacks.rich_progress_bar=null",
        "callbacks.model_summary=null", "callbacks.last_checkpoint.every_n_train_steps=2",
        "module.num_vis_images=0", "extras.print_config=false",
        "+callbacks.batches._target_=helpers.callbacks.RecordBatches", f"+callbacks.batches.path={run_dir}/batches",
        f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own session (process group), its output to ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "tests")}
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _finish(proc: subprocess.Popen, log: Path) -> str:
    """Wait for ``proc`` (its whole process group is killed on a timeout); return its output."""
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return log.read_text()


def _living_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (a killed worker stays a zombie until it is reaped)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _batches(run_dir: Path, rank: int) -> dict[int, list[int]]:
    """global step -> instance ids of the batch trained at that step (``helpers.callbacks.RecordBatches``)."""
    lines = (run_dir / f"batches.rank{rank}").read_text().splitlines()
    return {int(line.split()[0]): [int(i) for i in line.split()[1:]] for line in lines}


def _kill_resume_compare(root: Path, tmp_path: Path, trainer: str, kill_at: int, max_steps: int, ranks: int) -> None:
    procs: list[subprocess.Popen] = []
    try:
        _compare(root, tmp_path, trainer, kill_at, max_steps, ranks, procs)
    finally:  # nothing outlives a failed test
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _compare(root: Path, tmp_path: Path, trainer: str, kill_at: int, max_steps: int, ranks: int, procs: list) -> None:
    ref_dir, killed_dir, resumed_dir = tmp_path / "ref", tmp_path / "killed", tmp_path / "resumed"
    weights = "+callbacks.weights._target_=helpers.callbacks.SaveWeightsAtEnd"
    logs = {name: tmp_path / f"{name}.log" for name in ("ref", "killed", "resumed")}
    ref = _start(
        _command(root, ref_dir, trainer, max_steps, weights, f"+callbacks.weights.path={tmp_path}/ref.pt"), logs["ref"]
    )
    procs.append(ref)
    killer = ("+callbacks.killer._target_=helpers.callbacks.SigkillAtStep", f"+callbacks.killer.step={kill_at}")
    killed = _start(_command(root, killed_dir, trainer, max_steps, *killer), logs["killed"])
    procs.append(killed)
    killed_log = _finish(killed, logs["killed"])
    assert killed.returncode == -signal.SIGKILL, killed_log[-4000:]
    deadline = time.monotonic() + 10
    while _living_members(killed.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _living_members(killed.pid), "a rank or a loader worker of the killed run is still alive"

    last = killed_dir / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(last)
    step = checkpoint["global_step"]
    (loader,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert step == kill_at - 1 and loader["epoch"] == 0 and loader["batches"] == step
    assert 0 < step < loader["num_batches"] < max_steps, "the kill must fall mid-epoch and the resume cross an epoch"
    assert loader["num_replicas"] == ranks

    resumed = _start(
        _command(root, resumed_dir, trainer, max_steps, f"ckpt_path={last}", weights,
                 f"+callbacks.weights.path={tmp_path}/resumed.pt"),
        logs["resumed"],
    )  # fmt: skip
    procs.append(resumed)
    resumed_log, ref_log = _finish(resumed, logs["resumed"]), _finish(ref, logs["ref"])
    assert ref.returncode == 0, ref_log[-4000:]
    assert resumed.returncode == 0, resumed_log[-4000:]

    for rank in range(ranks):  # the same batches, step by step, on every rank
        reference, after = _batches(ref_dir, rank), _batches(resumed_dir, rank)
        assert sorted(after) == list(range(step + 1, max_steps + 1))
        assert after == {s: ids for s, ids in reference.items() if s > step}, f"rank {rank}"
        assert _batches(killed_dir, rank).items() <= reference.items()
    a = torch.load(tmp_path / "ref.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == max_steps
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)


def test_sigkill_mid_epoch_with_workers_resumes_exactly(synthetic_root: Path, tmp_path: Path) -> None:
    """One process, 2 loader workers, 10 batches an epoch: killed at step 5 (last.ckpt of step 4), resumed to step
    12 across the epoch boundary: the batches and the weights of the uninterrupted run."""
    _kill_resume_compare(synthetic_root, tmp_path, "cpu", kill_at=5, max_steps=12, ranks=1)


def test_sigkill_mid_epoch_under_ddp_resumes_exactly(synthetic_root: Path, tmp_path: Path) -> None:
    """Two gloo DDP ranks with 2 loader workers each, 5 batches an epoch per rank: killed at step 3 (last.ckpt of
    step 2, rank 0's loader state), resumed to step 6: every rank trains on its own shard's batches of the
    uninterrupted run, and the weights are equal."""
    _kill_resume_compare(synthetic_root, tmp_path, "ddp_cpu", kill_at=3, max_steps=6, ranks=2)

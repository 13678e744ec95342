"""A DDP rank killed mid-run: the run ends, and no process of it (rank, loader, metric writer or worker, fork
server) outlives it. Processes forked from a rank with threads could hang for good in the child's after-fork
handler and stay behind as orphans; the metric forks none (``wbpose.metrics.evaluation``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from helpers.paths import REPO_ROOT

#: Seconds the run may take to end after one rank is killed (Lightning's launcher polls its ranks every 5 s).
END_BOUND_S = 25


def _session_members(sid: int) -> list[psutil.Process]:
    """Living (not zombie) processes of session ``sid``: everything the run started, however deep, that did not
    leave the session."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _rank_process(root: psutil.Process, rank: int) -> psutil.Process | None:
    if rank == 0:
        return root
    for child in root.children(recursive=True):
        try:
            if child.environ().get("LOCAL_RANK") == str(rank):
                return child
        except psutil.Error:
            continue
    return None


def _stacks_of_hung_run(sid: int, tmp_path: Path) -> str:
    """Make every process of the run print its threads' stacks (faulthandler, on SIGABRT) and return what the
    run wrote from then on, with the processes it had: what a hang that happens once in many runs leaves to read.
    All are stopped first and then dumped one at a time, so that no process reacts to another's end and the stacks
    do not interleave in the shared log."""
    log = tmp_path / "out.log"
    start = log.stat().st_size
    members = sorted(_session_members(sid), key=lambda p: p.pid)
    described = []
    for p in members:
        with contextlib.suppress(psutil.Error):
            described.append(f"{p.pid} {p.status()} {' '.join(p.cmdline())[:120]}")
            p.suspend()
    for p in members:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGABRT)
            p.resume()
            time.sleep(1)
    return "\n".join(described) + "\n" + log.read_text(errors="replace")[start:][-20000:]


# rank 0 killed: its children lose their parent (the orphan case); rank 1 killed: Lightning's launcher in rank 0
# notices within its 5 s poll and ends the run (slow: ~25 s each on the shared 2-core machine)
@pytest.mark.parametrize("killed_rank", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_killed_rank_leaves_no_process_behind(synthetic_root: Path, tmp_path: Path, killed_rank: int) -> None:
    run_dir = tmp_path / "run"
    marker = tmp_path / "validating"
    cmd = [
        sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "model=hrnet_tiny", "data=synthetic",
        f"data.data_root={synthetic_root}", "data.num_workers=1", "data.batch_size=4", "data.val_batch_size=2",
        "trainer=ddp_cpu", "trainer.max_epochs=1000", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
        "trainer.check_val_every_n_epoch=1", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
        "module.num_vis_images=0", f"module.val_metric.outfile={run_dir}/val_results.json",
        "+module.val_metric.num_procs=2", "+module.val_metric.engine=xtcocotools", "extras.print_config=false",
        "+callbacks.mark._target_=helpers.callbacks.TouchOnValidation", f"+callbacks.mark.path={marker}",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)
    # PYTHONFAULTHANDLER: a run that hangs is sent SIGABRT below and prints every thread's stack into out.log
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path, "PYTHONFAULTHANDLER": "1"}
    with open(tmp_path / "out.log", "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    root = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 240
        while not Path(f"{marker}.rank0").exists():  # the first validation has begun on rank 0
            assert proc.poll() is None, (tmp_path / "out.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"no validation within 240 s\n{_stacks_of_hung_run(proc.pid, tmp_path)}"
            time.sleep(0.1)
        seen = {p.pid: p for p in _session_members(proc.pid)}
        assert len(seen) >= 2, "expected both ranks (and their loader workers) in the run's session"
        victim = _rank_process(root, killed_rank)
        assert victim is not None, f"rank {killed_rank} not found"
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        remaining = _session_members(proc.pid)
        while time.monotonic() - killed_at < END_BOUND_S and (proc.poll() is None or remaining):
            time.sleep(0.25)
            remaining = _session_members(proc.pid)
        ended_after = time.monotonic() - killed_at
        described = [f"{p.pid} {' '.join(p.cmdline())[:160]}" for p in remaining if p.is_running()]
        assert proc.poll() is not None, f"the run did not end within {END_BOUND_S} s of killing rank {killed_rank}"
        assert not described, f"processes outlived the run: {described}"
        assert ended_after < END_BOUND_S
    finally:
        for p in _session_members(proc.pid):  # never leave anything behind, whatever failed above
            p.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

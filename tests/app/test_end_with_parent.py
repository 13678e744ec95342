"""A non-first rank ends when the process that started it ends (:func:`wbpose.app.startup.end_with_parent`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers.paths import REPO_ROOT
from wbpose.app.startup import end_with_parent

# A "rank 0" that starts a "rank 1" (LOCAL_RANK=1) which watches its parent and has one multiprocessing child of
# its own (as a DataLoader worker would); rank 0 prints both pids and then waits to be killed.
_RANK0 = textwrap.dedent(
    """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env={**os.environ, "LOCAL_RANK": "1"},
                             stdout=subprocess.PIPE, text=True)
    print(os.getpid(), child.stdout.readline().strip(), flush=True)
    time.sleep(600)
    """
)
_RANK1 = textwrap.dedent(
    """
    import multiprocessing, os, time
    from wbpose.app.startup import end_with_parent
    if __name__ == "__main__":
        end_with_parent(poll_s=0.1)
        worker = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(600,), daemon=True)
        worker.start()
        print(os.getpid(), worker.pid, flush=True)
        time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waits for its reaper only
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_a_rank_and_its_workers_end_when_rank_zero_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "rank1.py"
    script.write_text(_RANK1)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        env.pop(name, None)
    rank0 = subprocess.Popen(
        [sys.executable, "-c", _RANK0, f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"],
        env=env, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    pids: list[int] = []
    try:
        pids = [int(p) for p in rank0.stdout.readline().split()]
        assert len(pids) == 3, pids
        _, rank1, worker = pids
        assert _alive(rank1) and _alive(worker)
        rank0.send_signal(signal.SIGKILL)
        rank0.wait()
        deadline = time.monotonic() + 20
        while (_alive(rank1) or _alive(worker)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(rank1), "rank 1 outlived the rank that started it"
        assert not _alive(worker), "rank 1's worker outlived it"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_first_process_starts_no_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert end_with_parent(on_orphaned=lambda: None) is None


def test_a_rank_watches_and_calls_back_only_once_orphaned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    called = []
    parent = [os.getppid()]
    monkeypatch.setattr(os, "getppid", lambda: parent[0])
    thread = end_with_parent(poll_s=0.01, on_orphaned=lambda: called.append(True))
    assert thread is not None and thread.daemon
    time.sleep(0.1)
    assert not called, "called back while the parent lives"
    parent[0] = 1
    thread.join(timeout=5)
    assert called == [True]

"""Loader worker thread limits: OpenCV and torch down to one thread, the thread variables of the native libraries;
a worker that is not its rank's child ends with the rank (``end_with``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import cv2
import pytest
import torch

from wbpose.data.workers import THREAD_ENV, end_with, limit_threads, thread_settings


def test_limit_threads_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    for name in THREAD_ENV:
        monkeypatch.setenv(name, "8")
    try:
        cv2.setNumThreads(4)
        torch.set_num_threads(2)
        assert thread_settings()["cv2"] == 4
        limit_threads()
        settings = thread_settings()
        assert settings["cv2"] == 1 and settings["torch"] == 1
        assert all(settings[name] == os.environ[name] == "1" for name in THREAD_ENV)
    finally:
        cv2.setNumThreads(cv2_threads)
        torch.set_num_threads(torch_threads)


# A "worker" that is not the "rank"'s child: it watches the pid given in argv[1] (with pidfd, or polling when
# argv[2] == "poll"), says so, and would sleep for ten minutes.
_WORKER = textwrap.dedent(
    """
    import os, sys, time
    if sys.argv[2] == "poll":
        del os.pidfd_open
    from wbpose.data.workers import end_with
    assert end_with(int(sys.argv[1]), poll_s=0.1) is not None
    print("watching", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("how", ["pidfd", "poll"])
def test_a_worker_ends_with_a_rank_that_is_not_its_parent(how: str) -> None:
    rank = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(rank.pid), how], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "watching"
        time.sleep(0.5)
        assert worker.poll() is None  # the rank is alive: the worker stays
        rank.kill()
        rank.wait()
        assert worker.wait(timeout=10) == 1
    finally:
        for proc in (rank, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_worker_forked_by_its_rank_is_left_to_torch() -> None:
    assert end_with(os.getppid()) is None

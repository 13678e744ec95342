"""Loader worker processes: one thread per worker for every library that would otherwise start a pool of its own.

A loader worker is one process among many (16 on a 16-core GPU machine), each building whole batches. OpenCV's
``parallel_for_`` (``cv2.warpAffine``, ``cv2.resize``, ...) starts as many threads as the machine has cores in every
process that calls it, so 16 workers run 16 x 16 threads for work that one thread per worker does best: the threads
fight for the cores, and each small warp pays the pool's wake-up and join. A forked worker also inherits
``cv2.setNumThreads`` from its parent, but not reliably the parent's choice (a spawned one starts afresh), so the
worker sets it itself. MMPose's engine does the same (``mmengine.utils.dl_utils.setup_env``: ``cv2.setNumThreads(0)``
and ``OMP_NUM_THREADS=1`` / ``MKL_NUM_THREADS=1`` for its workers).

:func:`limit_threads` is what every loader worker of :class:`~wbpose.engine.datamodule.WholeBodyDataModule` runs
first (its ``worker_init_fn``): OpenCV without threads (``cv2.setNumThreads(0)``: OpenCV runs its functions on the
calling thread), torch with one intra-op thread (torch's worker loop sets this too; set again so that a worker made
by another loader gets it), and the thread variables of OpenMP, MKL and OpenBLAS set to 1 for anything the worker
loads or starts later.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

import cv2
import torch

__all__ = ["THREAD_ENV", "end_with", "limit_threads", "thread_settings", "when_process_ends"]

#: The environment variables that size the thread pools of OpenMP, MKL and OpenBLAS, set to 1 in each worker.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads() -> None:
    """One thread for OpenCV and torch in this process, and 1 in :data:`THREAD_ENV` (see the module docstring)."""
    for name in THREAD_ENV:
        os.environ[name] = "1"
    cv2.setNumThreads(0)
    torch.set_num_threads(1)


def thread_settings() -> dict[str, int | str | None]:
    """This process's thread settings: ``cv2`` and ``torch`` thread counts and the :data:`THREAD_ENV` variables."""
    return {"cv2": cv2.getNumThreads(), "torch": torch.get_num_threads(), **{k: os.environ.get(k) for k in THREAD_ENV}}


def _wait_for_end(pid: int, poll_s: float) -> None:
    """Return once process ``pid`` (not this process's parent) has ended: a pidfd where the platform has one, else a
    poll of its pid."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])  # readable once the process has ended
        return
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(poll_s)


def when_process_ends(pid: int, then: Callable[[], None], poll_s: float, name: str) -> threading.Thread:
    """Call ``then`` in a daemon thread (named ``name``) once process ``pid`` has ended.

    This process's parent is watched through ``os.getppid()``, compared every ``poll_s`` seconds with ``pid``: it
    changes the moment the parent ends, whether or not anything reaps it. Any other process is watched by
    :func:`_wait_for_end`.
    """
    watch_parent = pid == os.getppid()

    def watch() -> None:
        if watch_parent:
            while os.getppid() == pid:
                time.sleep(poll_s)
        else:
            _wait_for_end(pid, poll_s)
        then()

    thread = threading.Thread(target=watch, name=name, daemon=True)
    thread.start()
    return thread


def end_with(pid: int, poll_s: float = 1.0) -> threading.Thread | None:
    """End this process (exit status 1, at once) when process ``pid`` ends.

    A worker forked by its rank is the rank's child, and torch's worker loop ends it once its parent has gone. A
    worker started by a fork server is the server's child, so that check cannot see its rank die: a rank killed
    mid-run would leave its workers behind. Each worker of ours therefore watches its rank itself.

    Returns:
        The watching daemon thread, or None when ``pid`` is this process's parent (torch's check covers it).
    """
    if pid == os.getppid():
        return None
    return when_process_ends(pid, lambda: os._exit(1), poll_s, name=f"wbpose-end-with-{pid}")

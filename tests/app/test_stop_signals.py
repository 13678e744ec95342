"""A run started with the scheduler's stop signals blocked unblocks them
(:func:`wbpose.app.startup.unblock_stop_signals`): otherwise submitit's pre-emption handler never runs and the job
is never re-queued."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Blocks SIGUSR2 and SIGTERM before anything starts a thread (as a process inherits them from its launcher: every
# thread then blocks them), installs a handler, sends itself SIGUSR2 (which stays pending), and prints whether the
# handler ran before and after the call under test (argv[1] == "unblock") or a plain wait.
_PROCESS = textwrap.dedent(
    """
    import os, signal, sys, time
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGTERM})
    from wbpose.app.startup import unblock_stop_signals
    seen = []
    signal.signal(signal.SIGUSR2, lambda *_: seen.append("SIGUSR2"))
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.2)
    before = list(seen)
    names = unblock_stop_signals() if sys.argv[1] == "unblock" else []
    time.sleep(0.2)
    still_blocked = sorted(signal.Signals(s).name for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    print(before, seen, names, still_blocked)
    """
)


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PROCESS, mode], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(sys.platform == "win32", reason="no pthread_sigmask on Windows")
def test_a_blocked_preemption_signal_is_delivered_once_unblocked():
    waited = _run("wait")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.split() == ["[]", "[]", "[]", "['SIGTERM',", "'SIGUSR2']"]  # blocked: never handled

    unblocked = _run("unblock")
    assert unblocked.returncode == 0, unblocked.stderr
    assert unblocked.stdout.split() == ["[]", "['SIGUSR2']", "['SIGTERM',", "'SIGUSR2']", "[]"]
    assert "['SIGTERM', 'SIGUSR2'] arrived blocked from the launcher" in unblocked.stderr


def test_nothing_is_reported_when_nothing_was_blocked():
    from wbpose.app.startup import unblock_stop_signals

    assert unblock_stop_signals() == []

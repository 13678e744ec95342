"""Checks before any training starts: a writable run folder of this run's own, with room for the checkpoints.

A 210-epoch run that fails at its first checkpoint, hours in, because the folder is read-only or the disk is
full, is the failure these catch up front. So is a folder that already holds another run (two jobs of a SLURM array
started in the same second, or a ``hydra.run.dir`` given twice): the second run is refused instead of mixing its
metrics and checkpoints into the first's. (A missing dataset is checked by
:func:`wbpose.data.layout.ensure_dataset`.)
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from wbpose.data.workers import when_process_ends

__all__ = [
    "RUN_KEY_FILE",
    "check_output_dir",
    "checkpoint_bytes",
    "claim_run_folder",
    "clear_previous_run",
    "end_with_parent",
    "is_first_process",
    "unblock_stop_signals",
    "RunFolderCheck",
]

#: Written by every training run in its folder (its overrides' hash, read by ``ckpt_path=auto``); created
#: exclusively, so two processes can never both own one folder.
RUN_KEY_FILE = "run_key.txt"
#: What a previous run leaves in its folder (besides :data:`RUN_KEY_FILE`).
RUN_MARKERS = ("checkpoints", "metrics.json", "csv/metrics.csv")

_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")

log = logging.getLogger(__name__)


def is_first_process() -> bool:
    """True unless the environment names this process a non-zero rank (torchrun, SLURM, or Lightning's launcher of
    the other ranks, which run the same command in the same folder)."""
    return all(os.environ.get(name, "0") in ("0", "") for name in _RANK_VARIABLES)


def _previous_run(folder: Path) -> list[str]:
    """The files in ``folder`` that show a run was (or is) there."""
    found = []
    for name in (RUN_KEY_FILE, *RUN_MARKERS):
        path = folder / name
        if path.is_dir() and any(path.iterdir()) or path.is_file():
            found.append(name)
    return found


def clear_previous_run(output_dir: str | Path) -> None:
    """Delete what :func:`claim_run_folder` looks for in ``output_dir`` (the demo's fixed folder is re-used on
    purpose: each demo run replaces the previous one)."""
    folder = Path(output_dir)
    for name in (RUN_KEY_FILE, *RUN_MARKERS):
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


def claim_run_folder(output_dir: str | Path, key: str, continue_same_run: bool = False) -> bool:
    """Make ``output_dir`` this run's own: refuse a folder that holds another run, then write ``key`` to
    :data:`RUN_KEY_FILE` (created exclusively: of two runs starting in one folder at once, one is refused).

    With ``continue_same_run`` (``ckpt_path=auto``) a folder whose :data:`RUN_KEY_FILE` holds this very ``key`` is
    kept: the same command started again in its own folder, as a job that submitit re-queues after a pre-emption or
    time-out (Hydra's job folder does not change), continues there.

    Ranks other than the first (:func:`is_first_process`) share the first's folder and only check nothing.

    Returns:
        True when the folder already held this run and is continued, else False.

    Raises:
        FileExistsError: the folder already holds a run, naming it and what was found.
    """
    folder = Path(output_dir)
    if not is_first_process():
        return False
    key_file = folder / RUN_KEY_FILE
    if continue_same_run and key_file.is_file() and key_file.read_text().strip() == key:
        return True
    hint = (
        "; two runs in one folder would mix their metrics and checkpoints. Start this run in a new folder "
        "(leave hydra.run.dir / paths.output_dir at their default, which is unique per run), or resume that run "
        f"in a new folder with ckpt_path={folder / 'checkpoints' / 'last.ckpt'} (or ckpt_path=auto)"
    )
    found = _previous_run(folder)
    if found:
        raise FileExistsError(f"the run folder {folder} already holds a run ({', '.join(found)}){hint}")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / RUN_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise FileExistsError(
            f"the run folder {folder} was taken by another run starting at the same time{hint}"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return False


#: Checkpoints a run keeps at once: the best and last.ckpt (save_top_k=1 + save_last), one more being written.
CHECKPOINTS_KEPT = 3


def checkpoint_bytes(model: nn.Module, optimizer_states_per_param: int = 2) -> int:
    """Size of one checkpoint: fp32 weights and buffers plus the optimiser's per-parameter states (Adam: 2)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return params * (1 + optimizer_states_per_param) + buffers


def check_output_dir(output_dir: str | Path, model: nn.Module | None = None, margin: float = 1.5) -> None:
    """Raise a clear error when ``output_dir`` cannot be written or lacks room for the run's checkpoints.

    Raises:
        PermissionError: the folder cannot be created or written.
        OSError: free space below ``margin`` x :data:`CHECKPOINTS_KEPT` checkpoints of ``model``.
    """
    folder = Path(output_dir)
    probe = folder / f".write_test_{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"the run folder {folder} is not writable ({err.strerror or err}); pass paths.log_dir=<a writable "
            "folder> (or hydra.run.dir=...)"
        ) from None
    if model is None:
        return
    needed = int(margin * CHECKPOINTS_KEPT * checkpoint_bytes(model))
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(
            f"not enough disk space for the checkpoints in {folder}: {free / 2**20:.0f} MiB free, about "
            f"{needed / 2**20:.0f} MiB needed ({CHECKPOINTS_KEPT} checkpoints of "
            f"{checkpoint_bytes(model) / 2**20:.0f} MiB, x{margin} margin); free space or move paths.log_dir"
        )


def _refuse_unwritable(folder: str) -> None:
    try:
        check_output_dir(folder)
    except OSError as err:
        raise SystemExit(f"error: {err}") from None  # a message, not a traceback from inside Hydra


def _hydra_callback_base() -> type:
    from hydra.experimental.callback import Callback

    return Callback


class RunFolderCheck(_hydra_callback_base()):
    """Hydra callback (``conf/hydra/default.yaml``): before Hydra creates the run (or sweep) folder, make sure it
    can be written, and stop with one line naming it if not (instead of a traceback from Hydra's ``mkdir``)."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _refuse_unwritable(str(config.hydra.run.dir))

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _refuse_unwritable(str(config.hydra.sweep.dir))


def _end_this_process() -> None:
    """Stop this process's own children (DataLoader workers) and leave at once, skipping clean-up that waits on
    peers which are gone."""
    for child in multiprocessing.active_children():
        child.terminate()
    logging.shutdown()
    os._exit(1)


def end_with_parent(
    poll_s: float = 1.0, on_orphaned: Callable[[], None] = _end_this_process
) -> threading.Thread | None:
    """In a rank other than the first, end this process when the process that started it ends.

    Lightning starts ranks 1..N-1 of a one-machine run as children of rank 0. When rank 0 dies (killed, out of
    memory), its children would otherwise keep running, holding their GPU memory, until a collective happens to
    fail, or for good when they are waiting on something that never fails. A daemon thread compares the parent's
    pid every ``poll_s`` seconds with the one at start (:func:`wbpose.data.workers.when_process_ends`) and, once it
    changes, logs the fact and calls ``on_orphaned`` (by default: terminate this rank's DataLoader workers, then
    exit with status 1). torchrun's and SLURM's ranks get the same watch over their agent or step daemon.

    Returns:
        The watching thread, or None in the first process (which has no launcher of ours to outlive).
    """
    if is_first_process():
        return None
    parent = os.getppid()

    def orphaned() -> None:
        log.error(
            "the process that started this rank (pid %d) has ended; ending this rank (pid %d)", parent, os.getpid()
        )
        on_orphaned()

    return when_process_ends(parent, orphaned, poll_s, name="wbpose-end-with-parent")


#: What a scheduler sends a job before stopping it: SLURM's ``--signal`` (SIGUSR1 or SIGUSR2), submitit's
#: pre-emption and time-limit warning (SIGUSR2), SIGTERM, and SIGCONT after a suspend.
STOP_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM", "SIGCONT")


def unblock_stop_signals() -> list[str]:
    """Unblock :data:`STOP_SIGNALS` in this (the main) thread, and name those that were blocked.

    A process inherits its set of blocked signals from whatever started it: a shell, a CI runner, a container's
    init, a job script. A blocked SIGUSR2 stays pending: submitit's handler never runs, and a pre-empted job trains
    on until it is killed, without a checkpoint and without being re-queued. Unblocking delivers any signal
    already pending. Each blocked one is logged as a warning, since the launcher that blocked it may block it in
    other programs too.

    Returns:
        The names of the signals that were blocked (empty where the platform has no ``pthread_sigmask``).
    """
    if not hasattr(signal, "pthread_sigmask"):
        return []
    wanted = {getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)}
    was_blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted) & wanted
    names = sorted(signal.Signals(number).name for number in was_blocked)
    if names:
        log.warning("%s arrived blocked from the launcher; unblocked so that pre-emption reaches this run", names)
    return names

"""How often a two-process CPU (gloo) DDP run hangs before it ends, by how its loader workers start.

Each run is ``scripts/train.py`` on the tiny model and a small synthetic set with ``trainer=ddp_cpu``, one loader
worker per rank and one epoch of 2 training and 2 validation batches, in a session of its own. A run that has not
ended after ``--limit`` seconds counts as hung: its processes are killed and the next run starts. The modes
alternate run by run (``fork``, then ``auto``, then ``fork``, ...) so that the machine's load falls on both alike.

What it shows: with ``data.worker_start=fork`` a rank forks its loader workers beside gloo's threads, and a worker
forked while one of them holds a lock waits inside ``fork`` for good (docs/data.md, Loader workers); ``auto`` starts
them from a fork server. Hangs are rare (a few in a few hundred runs on two cores), so a run of this script takes
many runs to say anything: ``--runs 100`` per mode takes about 40 minutes. A CPU burner beside it
(``--burners 1``) makes the timing of the threads more varied.

Usage: ``python benchmarks/ddp_start_hangs.py [--runs 100] [--modes fork auto] [--limit 90] [--burners 0]
[--json PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import ROOT, add_json_argument, environment, write_json  # noqa: E402
from wbpose.synthetic.generate import generate_dataset  # noqa: E402


def _command(root: Path, run_dir: Path, mode: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "scripts" / "train.py"), "model=hrnet_tiny", "data=synthetic",
        f"data.data_root={root}", f"data.worker_start={mode}", "data.num_workers=1", "data.batch_size=4",
        "data.val_batch_size=2", "trainer=ddp_cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=2", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
        "module.num_vis_images=0", "extras.print_config=false", "logger=csv", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def one_run(root: Path, run_dir: Path, mode: str, limit: float) -> float | None:
    """Seconds the run took to end, or None when it had not ended after ``limit`` seconds (then killed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    with open(run_dir.with_suffix(".log"), "w") as out:
        proc = subprocess.Popen(
            _command(root, run_dir, mode), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the run's session: ranks, workers, fork servers
        proc.wait()
    if code != 0:
        raise RuntimeError(f"{mode}: the run failed (exit {code}); its output is in {run_dir.with_suffix('.log')}")
    return time.monotonic() - start


def _burn() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs per mode")
    parser.add_argument("--modes", nargs="+", default=["fork", "auto"], help="data.worker_start values")
    parser.add_argument("--limit", type=float, default=90.0, help="seconds after which a run counts as hung")
    parser.add_argument("--burners", type=int, default=0, help="busy processes beside the runs")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    print(environment())
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for burner in burners:
        burner.start()
    ended: dict[str, list[float]] = {mode: [] for mode in args.modes}
    hung = dict.fromkeys(args.modes, 0)
    try:
        with tempfile.TemporaryDirectory(prefix="wbpose_ddp_hangs_") as tmp:
            root = Path(tmp) / "data"
            generate_dataset(root, num_train=16, num_val=6, seed=0)
            for i in range(args.runs):
                for mode in args.modes:
                    seconds = one_run(root, Path(tmp) / f"{mode}_{i}", mode, args.limit)
                    if seconds is None:
                        hung[mode] += 1
                    else:
                        ended[mode].append(seconds)
                    print(f"run {i + 1}/{args.runs} {mode}: {'HUNG' if seconds is None else f'{seconds:.1f} s'}",
                          flush=True)  # fmt: skip
    finally:
        for burner in burners:
            burner.terminate()
    columns = ["worker_start", "runs", "hung", "median s (ended runs)"]
    rows = [
        [mode, args.runs, hung[mode], round(statistics.median(ended[mode]), 1) if ended[mode] else None]
        for mode in args.modes
    ]
    for row in rows:
        print(" | ".join(str(cell) for cell in row))
    notes = [f"limit {args.limit:g} s, {args.burners} CPU burner(s) beside the runs"]
    write_json(args.json, "ddp_start_hangs", columns, rows, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""ckpt_path=auto without training: which checkpoint a run resumes, in a new folder or in its own (re-queued)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from wbpose.app.resume import RUN_KEY_FILE, resolve_auto_resume, run_key

OVERRIDES = ["experiment=demo", "seed=1", "ckpt_path=auto"]


@pytest.fixture(autouse=True)
def _first_process(monkeypatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)


def _cfg(output_dir: Path, log_dir: Path, ckpt_path: str | None = "auto"):
    return OmegaConf.create(
        {"paths": {"output_dir": str(output_dir), "log_dir": str(log_dir)}, "task_name": "train",
         "ckpt_path": ckpt_path, "logger": None}
    )  # fmt: skip


def _run(folder: Path, key: str, mtime: float, csv_rows: str | None = None) -> Path:
    """A run folder with its key and a (tiny, real) last.ckpt written at ``mtime``."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / RUN_KEY_FILE).write_text(key + "\n")
    last = folder / "checkpoints" / "last.ckpt"
    torch.save({"global_step": 4, "state_dict": {}}, last)
    os.utime(last, (mtime, mtime))
    if csv_rows is not None:
        (folder / "csv").mkdir()
        (folder / "csv" / "metrics.csv").write_text(csv_rows)
    return last


def test_a_requeued_job_resumes_its_own_folder_first(tmp_path: Path) -> None:
    """The job folder of a multirun (here outside paths.log_dir) holds this run: its last.ckpt is resumed, even
    though another folder of the same command under the log folder has a newer one; its CSV is kept aside."""
    key = run_key(OVERRIDES)
    job = tmp_path / "multirun" / "3"
    own = _run(job, key, mtime=100, csv_rows="epoch,step\n0,1\n")
    _run(tmp_path / "logs" / "train" / "runs" / "other", key, mtime=200)
    cfg = _cfg(job, tmp_path / "logs")
    assert resolve_auto_resume(cfg, OVERRIDES) == own and cfg.ckpt_path == str(own)
    assert (job / "csv" / "metrics.attempt1.csv").read_text() == "epoch,step\n0,1\n"
    assert not (job / "csv" / "metrics.csv").exists()  # Lightning would have deleted it: moved aside instead
    (job / "csv" / "metrics.csv").write_text("second attempt\n")
    resolve_auto_resume(_cfg(job, tmp_path / "logs"), OVERRIDES)  # re-queued a second time
    assert (job / "csv" / "metrics.attempt2.csv").read_text() == "second attempt\n"


def test_a_new_folder_resumes_the_newest_checkpoint_of_the_same_command(tmp_path: Path) -> None:
    key = run_key(OVERRIDES)
    _run(tmp_path / "logs" / "train" / "runs" / "old", key, mtime=100)
    newest = _run(tmp_path / "logs" / "train" / "runs" / "newer", key, mtime=200)
    _run(tmp_path / "logs" / "train" / "runs" / "foreign", run_key(["seed=2"]), mtime=300)
    fresh = tmp_path / "logs" / "train" / "runs" / "fresh"
    cfg = _cfg(fresh, tmp_path / "logs")
    assert resolve_auto_resume(cfg, OVERRIDES) == newest
    assert (fresh / RUN_KEY_FILE).read_text() == key + "\n"  # the new folder claimed


def test_other_ranks_find_the_same_checkpoint_in_a_continued_folder(tmp_path: Path, monkeypatch) -> None:
    """Only the first rank claims the folder; every rank must still resume the job folder's own last.ckpt."""
    key = run_key(OVERRIDES)
    job = tmp_path / "multirun" / "0"
    own = _run(job, key, mtime=100)
    _run(tmp_path / "logs" / "train" / "runs" / "elsewhere", key, mtime=200)
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert resolve_auto_resume(_cfg(job, tmp_path / "logs"), OVERRIDES) == own


def test_without_auto_a_folder_holding_the_run_is_refused(tmp_path: Path) -> None:
    job = tmp_path / "multirun" / "0"
    overrides = [o for o in OVERRIDES if o != "ckpt_path=auto"]
    _run(job, run_key(overrides), mtime=100)
    with pytest.raises(FileExistsError, match="already holds a run"):
        resolve_auto_resume(_cfg(job, tmp_path / "logs", ckpt_path=None), overrides)

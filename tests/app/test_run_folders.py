"""One run, one folder: run folders are unique per run (SLURM ids when present), and a training refuses a folder
that already holds a run instead of mixing two runs' metrics and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from wbpose.app.config import CONFIG_DIR
from wbpose.app.startup import RUN_KEY_FILE, claim_run_folder, clear_previous_run

_SLURM = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "TORCHELASTIC_RUN_ID")


def _folders(overrides: tuple[str, ...] = ()) -> tuple[str, str]:
    """(hydra.run.dir, hydra.sweep.dir) of a freshly composed train config, resolved as Hydra resolves them."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.select(cfg, "hydra.run.dir"), OmegaConf.select(cfg, "hydra.sweep.dir")


def test_runs_composed_in_the_same_second_get_their_own_folders(monkeypatch) -> None:
    for name in _SLURM:
        monkeypatch.delenv(name, raising=False)
    first, second = _folders(), _folders()
    assert first[0] != second[0] and first[1] != second[1]  # a random part, whatever the clock says
    stamp = lambda path: Path(path).name.rsplit("_", 1)[0]  # noqa: E731
    assert len(stamp(first[0])) == len("2026-01-01_00-00-00")
    # within one composed config the id is drawn once: the run folder and the sweep folder agree
    assert Path(first[0]).name.rsplit("_", 1)[1] == Path(first[1]).name.rsplit("_", 1)[1]


def test_slurm_ids_name_the_folder(monkeypatch) -> None:
    for name in _SLURM:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert _folders()[0].endswith("_4242")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4200")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    run_dir, sweep_dir = _folders()
    assert run_dir.endswith("_4200_7") and sweep_dir.endswith("_4200_7")


def test_torchrun_ranks_share_the_rendezvous_id(monkeypatch) -> None:
    for name in _SLURM:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # plain torchrun without --rdzv-id: nothing shared to use
    assert _folders()[0] != _folders()[0]
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "3f2c9a1e-77aa-4b0e-9d1c-5a0e2b7c1d00")  # --standalone draws a uuid
    assert _folders()[0].endswith("_3f2c9a1e") and _folders()[1].endswith("_3f2c9a1e")


@pytest.mark.parametrize("left", [RUN_KEY_FILE, "checkpoints/last.ckpt", "csv/metrics.csv", "metrics.json"])
def test_a_folder_holding_a_run_is_refused(tmp_path: Path, monkeypatch, left: str) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "run"
    (folder / left).parent.mkdir(parents=True, exist_ok=True)
    (folder / left).write_text("x")
    with pytest.raises(FileExistsError, match=rf"run folder {folder} already holds a run \({left.split('/')[0]}"):
        claim_run_folder(folder, "key")
    assert (folder / left).read_text() == "x"  # untouched
    monkeypatch.setenv("LOCAL_RANK", "1")  # another rank of the same run: it shares the first rank's folder
    claim_run_folder(folder, "key")


def test_claiming_is_exclusive(tmp_path: Path, monkeypatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "run"
    (folder / ".hydra").mkdir(parents=True)  # what Hydra writes before the run starts does not count
    claim_run_folder(folder, "abc")
    assert (folder / RUN_KEY_FILE).read_text() == "abc\n"
    with pytest.raises(FileExistsError, match="already holds a run"):
        claim_run_folder(folder, "abc")
    clear_previous_run(folder)  # the demo re-uses its folder on purpose
    claim_run_folder(folder, "def")
    assert (folder / RUN_KEY_FILE).read_text() == "def\n"


def test_train_refuses_a_folder_holding_a_run(make_cfg, synthetic_root: Path) -> None:
    from wbpose.app.train import train

    cfg = make_cfg(["trainer.max_steps=1"], root=synthetic_root)
    out = Path(cfg.paths.output_dir)
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"earlier run")
    with pytest.raises(FileExistsError, match=f"run folder {out} already holds a run"):
        train(cfg)
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == b"earlier run"
    assert not (out / "csv").exists()  # refused before any work


def test_a_folder_holding_this_very_run_is_continued_only_when_asked(tmp_path: Path, monkeypatch) -> None:
    """ckpt_path=auto (continue_same_run): a re-queued job starts again in its own folder, holding its own key."""
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "run"
    assert claim_run_folder(folder, "abc", continue_same_run=True) is False  # a new folder: claimed
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    assert claim_run_folder(folder, "abc", continue_same_run=True) is True  # the same run: continued
    assert (folder / RUN_KEY_FILE).read_text() == "abc\n" and (folder / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(FileExistsError, match="already holds a run"):
        claim_run_folder(folder, "abc")  # the same run without ckpt_path=auto would start over: refused
    with pytest.raises(FileExistsError, match="already holds a run"):
        claim_run_folder(folder, "another", continue_same_run=True)  # another command's run
    (folder / RUN_KEY_FILE).unlink()
    with pytest.raises(FileExistsError, match=r"already holds a run \(checkpoints"):
        claim_run_folder(folder, "abc", continue_same_run=True)  # checkpoints of an unknown run

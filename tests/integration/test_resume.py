"""A run killed mid-epoch resumes from last.ckpt with the step, optimiser and scheduler state it had."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wbpose.app.train import train


def _overrides(max_steps: int) -> list[str]:
    return [
        "data.batch_size=4",  # ~8 batches per epoch: step 5 is mid-epoch
        f"trainer.max_steps={max_steps}",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "validate=false",
        "~logger",
        "callbacks.model_checkpoint=null",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        "callbacks.last_checkpoint.every_n_epochs=null",
        "callbacks.learning_rate_monitor=null",
        "sched.warmup_iters=6",  # the LR still changes at every step we compare
        "sched.milestones=[1]",
        "module.num_vis_images=0",
    ]


def _adam_state(ckpt: dict) -> dict[int, dict[str, torch.Tensor]]:
    return ckpt["optimizer_states"][0]["state"]


def test_resume_mid_epoch(make_cfg, synthetic_root, tmp_path) -> None:
    # uninterrupted run: 8 steps, keeping every 2-step checkpoint
    full_cfg = make_cfg([*_overrides(8), "callbacks.last_checkpoint.save_top_k=-1"], root=synthetic_root)
    _, full = train(full_cfg)
    full_dir = Path(full_cfg.paths.output_dir) / "checkpoints"
    per_epoch = full["trainer"].num_training_batches
    assert 4 < per_epoch < 8 + 4, "step 5 must fall inside an epoch and 8 steps span two epochs"

    # killed run: same seed, dies at step 5 (mid-epoch); last.ckpt is from step 4
    killed_cfg = make_cfg(
        [*_overrides(8), "+callbacks.killer._target_=helpers.callbacks.KillAtStep", "+callbacks.killer.step=5"],
        root=synthetic_root,
    )
    killed_cfg.paths.output_dir = str(tmp_path / "killed")
    with pytest.raises(RuntimeError, match="killed at step 5"):
        train(killed_cfg)
    last = Path(killed_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    killed = torch.load(last, map_location="cpu", weights_only=False)
    assert killed["global_step"] == 4
    reference = torch.load(sorted(full_dir.glob("*step=4*.ckpt"))[0], map_location="cpu", weights_only=False)
    # deterministic up to the kill: the saved optimiser and scheduler state equal the uninterrupted run's
    for key, state in _adam_state(reference).items():
        for name, value in state.items():
            torch.testing.assert_close(_adam_state(killed)[key][name], value)
    assert killed["lr_schedulers"][0]["last_epoch"] == reference["lr_schedulers"][0]["last_epoch"] == 4

    # resume to 8 steps
    resume_cfg = make_cfg([*_overrides(8), f"ckpt_path={last}"], root=synthetic_root)
    resume_cfg.paths.output_dir = str(tmp_path / "resumed")
    _, resumed = train(resume_cfg)
    trainer, full_trainer = resumed["trainer"], full["trainer"]
    assert trainer.global_step == full_trainer.global_step == 8
    assert trainer.current_epoch == full_trainer.current_epoch
    opt, full_opt = trainer.optimizers[0], full_trainer.optimizers[0]
    assert opt.param_groups[0]["lr"] == pytest.approx(full_opt.param_groups[0]["lr"])
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == 8 and sched.lr_lambdas[0].steps_per_epoch == per_epoch
    steps = {float(s["step"]) for s in opt.state_dict()["state"].values()}
    assert steps == {8.0}  # Adam's bias correction continues from the restored count


def test_resume_from_other_arch_names_both(make_cfg, tmp_path) -> None:
    from wbpose.app.train import check_resume_checkpoint
    from wbpose.checkpoints.reader import CONFIG_KEY

    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": {}, CONFIG_KEY: {"model": {"net": {"arch": "tiny"}}}}, path)
    cfg = make_cfg(["model=hrnet_w48", f"ckpt_path={path}"])
    with pytest.raises(ValueError, match="HRNet-tiny.*HRNet-w48"):
        check_resume_checkpoint(cfg)
    cfg = make_cfg([f"ckpt_path={tmp_path / 'missing.ckpt'}"])
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        check_resume_checkpoint(cfg)


def test_ckpt_path_auto_resumes_the_same_command(make_cfg, synthetic_root, tmp_path, monkeypatch, caplog) -> None:
    """A killed run, started again with the very same command and ckpt_path=auto, continues from its last.ckpt."""
    import logging

    from helpers.callbacks import RecordStartStep

    logs = tmp_path / "logs"
    command = [
        *_overrides(8),
        "ckpt_path=auto",
        f"paths.log_dir={logs}",
        "+callbacks.killer._target_=helpers.callbacks.KillAtEnvStep",
        "+callbacks.start._target_=helpers.callbacks.RecordStartStep",
    ]
    first = make_cfg(command, root=synthetic_root)
    first.paths.output_dir = str(logs / "train" / "runs" / "first")
    monkeypatch.setenv("WBPOSE_TEST_KILL_AT_STEP", "5")
    with caplog.at_level(logging.INFO, logger="wbpose.app.resume"), pytest.raises(RuntimeError, match="step 5"):
        train(first)
    assert "starting from scratch" in caplog.text  # nothing to resume yet: said so
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4

    monkeypatch.delenv("WBPOSE_TEST_KILL_AT_STEP")
    caplog.clear()
    second = make_cfg(command, root=synthetic_root)
    second.paths.output_dir = str(logs / "train" / "runs" / "second")
    with caplog.at_level(logging.INFO, logger="wbpose.app.resume"):
        _, objects = train(second)
    assert f"resuming {last}" in caplog.text and second.ckpt_path == str(last)
    start = next(cb for cb in objects["trainer"].callbacks if isinstance(cb, RecordStartStep))
    assert start.start_step == 4 and objects["trainer"].global_step == 8

    # another command (another seed) is another run: it does not pick up these checkpoints
    other = make_cfg([*command, "seed=7"], root=synthetic_root)
    other.paths.output_dir = str(logs / "train" / "runs" / "other")
    other.trainer.max_steps = 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wbpose.app.resume"):
        train(other)
    assert "starting from scratch" in caplog.text and other.ckpt_path is None


@pytest.mark.slow  # two short trainings: about 35 s of CPU (tests/app/test_resume.py checks the choice cheaply)
def test_ckpt_path_auto_continues_a_requeued_job_in_its_own_folder(make_cfg, synthetic_root, tmp_path, monkeypatch,
                                                                   caplog) -> None:  # fmt: skip
    """A job re-queued by submitit starts again in the same job folder (a multirun's <sweep dir>/<n>, outside
    paths.log_dir here): with ckpt_path=auto it resumes that folder's last.ckpt; the earlier CSV is kept aside."""
    import logging

    from helpers.callbacks import RecordStartStep

    command = [
        *(o for o in _overrides(8) if o != "~logger"),  # the CSV logger, whose file Lightning would delete
        "+logger.csv.flush_logs_every_n_steps=1",
        "trainer.log_every_n_steps=1",
        "ckpt_path=auto",
        f"paths.log_dir={tmp_path / 'logs'}",
        "+callbacks.killer._target_=helpers.callbacks.KillAtEnvStep",
        "+callbacks.start._target_=helpers.callbacks.RecordStartStep",
    ]
    job = tmp_path / "multirun" / "0"
    first = make_cfg(command, root=synthetic_root)
    first.paths.output_dir = str(job)
    monkeypatch.setenv("WBPOSE_TEST_KILL_AT_STEP", "5")
    with pytest.raises(RuntimeError, match="step 5"):
        train(first)
    earlier_csv = (job / "csv" / "metrics.csv").read_text()
    assert "train/loss" in earlier_csv

    monkeypatch.delenv("WBPOSE_TEST_KILL_AT_STEP")
    again = make_cfg(command, root=synthetic_root)
    again.paths.output_dir = str(job)
    with caplog.at_level(logging.INFO, logger="wbpose.app.resume"):
        _, objects = train(again)
    assert "already holds this run (a re-queued job): continuing there" in caplog.text
    assert again.ckpt_path == str(job / "checkpoints" / "last.ckpt")
    start = next(cb for cb in objects["trainer"].callbacks if isinstance(cb, RecordStartStep))
    assert start.start_step == 4 and objects["trainer"].global_step == 8
    assert (job / "csv" / "metrics.attempt1.csv").read_text() == earlier_csv

    # without ckpt_path=auto, starting over in that folder would mix two runs: refused
    plain = make_cfg([o for o in command if o != "ckpt_path=auto"], root=synthetic_root)
    plain.paths.output_dir = str(job)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(plain)

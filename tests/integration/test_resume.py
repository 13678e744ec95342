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
        "callbacks.lr_monitor=null",
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

"""End to end on generated data: fast_dev_run training, a short run whose checkpoint evaluates from itself alone,
and the clear errors for a missing data root and a checkpoint of another architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.paths import REPO_ROOT
from wbpose.app.config import compose_config
from wbpose.app.evaluate import evaluate
from wbpose.app.train import train


def test_fast_dev_run(make_cfg, synthetic_root) -> None:
    cfg = make_cfg(["debug=fast_dev_run"], root=synthetic_root)
    value, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert value is not None and 0.0 <= value <= 1.0
    assert {"val/body_ap", "val/hand_ar", "val/wholebody_ap"} <= set(objects["metrics"])


@pytest.fixture
def short_run(make_cfg, synthetic_root, tmp_path) -> tuple[Path, dict]:
    cfg = make_cfg(
        ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.check_val_every_n_epoch=1", "codec=dark"],
        root=synthetic_root,
    )
    _, objects = train(cfg)
    return Path(cfg.paths.output_dir), objects


def test_short_run_then_eval_from_checkpoint_alone(short_run, synthetic_root, tmp_path, capsys) -> None:
    """Model, input, codec and module settings come from the checkpoint alone; the data from the command line."""
    run_dir, objects = short_run
    data = ["data=synthetic", f"data.data_root={synthetic_root}", "data.num_workers=0", "data.val_batch_size=16"]
    ckpt = Path(objects["validated_checkpoint"])
    assert ckpt.name.startswith("best_epoch000") and (run_dir / "checkpoints" / "last.ckpt").is_file()
    saved = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert saved == pytest.approx(objects["metrics"])
    assert (run_dir / "csv" / "images" / "val_predictions_epoch000.png").is_file()

    eval_cfg = compose_config("eval", [f"ckpt_path={ckpt}", "trainer=cpu", *data], output_dir=tmp_path / "eval")
    metrics, eval_objects = evaluate(eval_cfg, overrides=[f"ckpt_path={ckpt}", "trainer=cpu", *data])
    assert eval_objects["cfg"].codec._target_.endswith("DarkHeatmap")  # from the checkpoint's config
    # same checkpoint, same detector boxes: the numbers of training's final validation
    assert metrics["test/wholebody_ap"] == pytest.approx(saved["val/wholebody_ap"])
    assert metrics["test/body_ar"] == pytest.approx(saved["val/body_ar"])
    assert (tmp_path / "eval" / "metrics.json").is_file()
    results = json.loads((tmp_path / "eval" / "results_keypoints.json").read_text())
    assert results and len(results[0]["face_kpts"]) == 68 * 3
    # the printed time split: every stage measured, network and metric really timed, the stages add up
    timings = eval_objects["timings"]
    assert set(timings) == {"loading", "crops", "network", "decode", "metric", "other"}
    assert min(timings.values()) >= 0 and timings["network"] > 0 and timings["metric"] > 0 and timings["decode"] > 0
    out = capsys.readouterr().out
    assert "time split (s): loading" in out and f"total {sum(timings.values()):.1f}" in out
    assert "Testing DataLoader 0: 100%" in out  # not a terminal: the plain TQDM bar, readable in a log file
    assert eval_objects["module"].model.forward.__func__ is type(eval_objects["module"].model).forward  # unwrapped

    gt = ["data.val_bbox_source=gt"]
    gt_cfg = compose_config("eval", [f"ckpt_path={ckpt}", *gt, *data], output_dir=tmp_path / "eval_gt")
    gt_metrics, gt_objects = evaluate(gt_cfg, overrides=[*gt, "module.flip_test=false"])
    assert set(gt_metrics) == set(metrics)
    assert gt_objects["datamodule"].val_bbox_source == "gt"
    assert json.loads((tmp_path / "eval_gt" / "metrics.json").read_text())["bbox_source"] == "gt"

    wrong = ["model=hrnet_w32"]
    bad_cfg = compose_config("eval", [f"ckpt_path={ckpt}", *wrong], output_dir=tmp_path / "eval_bad")
    with pytest.raises(ValueError, match="HRNet-tiny.*HRNet-w32"):
        evaluate(bad_cfg, overrides=wrong)


def test_missing_data_root_says_what_to_pass(make_cfg, tmp_path) -> None:
    cfg = make_cfg([f"data.data_root={tmp_path / 'nowhere'}", "data.synthetic=null"], root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data\.data_root=/path/to/coco"):
        train(cfg)


def test_missing_checkpoint(tmp_path) -> None:
    cfg = compose_config("eval", [f"ckpt_path={tmp_path / 'none.ckpt'}"], output_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="none.ckpt"):
        evaluate(cfg)


def test_demo_runs_end_to_end(synthetic_root, tmp_path, capsys) -> None:
    from wbpose.app.demo import run_demo

    overrides = [
        "experiment=demo",
        f"data.data_root={synthetic_root}",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.check_val_every_n_epoch=1",
        "trainer.enable_progress_bar=false",
        "callbacks.rich_progress_bar=null",
        "logger=[csv,wandb]",
    ]
    cfg = compose_config("train", overrides, output_dir=tmp_path / "demo")
    result = run_demo(cfg)
    assert result["png"].is_file() and result["png"].stat().st_size > 1000
    assert set(result["before"]) == set(result["after"]) and "val/wholebody_ap" in result["after"]
    out = capsys.readouterr().out
    assert "| untrained |" in out and "| trained (1 epochs) |" in out
    assert list((tmp_path / "demo" / "wandb").glob("offline-run-*"))


def test_mmpose_file_round_trips_through_convert_and_eval(short_run, synthetic_root, tmp_path) -> None:
    """A trained model saved as an MMPose 0.x file evaluates, directly and after wbpose-convert, to the same
    numbers as its native checkpoint (the path a user takes to reproduce a seed-table row)."""
    import subprocess
    import sys

    import torch

    from wbpose.checkpoints.mmpose import read_checkpoint

    run_dir, objects = short_run
    native = Path(objects["validated_checkpoint"])
    state = {k.removeprefix("model."): v for k, v in read_checkpoint(native)["state_dict"].items()}
    # 0.x names: keypoint_head.final_layer.* instead of head.final_layer.*
    mmpose_state = {("keypoint_" + k if k.startswith("head.") else k): v for k, v in state.items()}
    mmpose_file = tmp_path / "hrnet_tiny_mmpose0x.pth"
    torch.save({"meta": {"epoch": 1, "mmpose_version": "0.29.0"}, "state_dict": mmpose_state}, mmpose_file)

    converted = tmp_path / "converted.pth"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "convert.py"), str(mmpose_file), str(converted)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert converted.is_file()

    def run_eval(ckpt: Path, name: str) -> dict[str, float]:
        overrides = [
            f"ckpt_path={ckpt}",
            "trainer=cpu",
            "model=hrnet_tiny",
            "data=synthetic",
            f"data.data_root={synthetic_root}",
            "data.num_workers=0",
            "codec=dark",
        ]
        cfg = compose_config("eval", overrides, output_dir=tmp_path / name)
        metrics, _ = evaluate(cfg, overrides=overrides)
        return metrics

    native_metrics = run_eval(native, "native")
    for ckpt, name in ((mmpose_file, "mmpose"), (converted, "converted")):
        metrics = run_eval(ckpt, name)
        assert metrics["test/wholebody_ap"] == pytest.approx(native_metrics["test/wholebody_ap"], abs=1e-12)
        assert metrics["test/face_ar"] == pytest.approx(native_metrics["test/face_ar"], abs=1e-12)

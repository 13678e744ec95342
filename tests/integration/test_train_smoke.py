"""End to end on generated data: fast_dev_run training, a short run whose checkpoint evaluates from itself alone,
and the clear errors for a missing data root and a checkpoint of another architecture.

Checkpoints and runs are compared by their predictions (the results json: every keypoint and score), not by AP: a
model trained for two batches scores AP = AR = 0.0, and so does any other set of random weights. The file-format
comparison uses weights with heatmaps of order 1 (``helpers.fakes.calibrated_model``), asserted to give
confident keypoints, and a control checkpoint with other weights must give other keypoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import small_overrides
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


def read_results(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A results json as arrays: image ids (N,), keypoints x, y, score in the file's part order (N, 133, 3), and
    instance scores (N,)."""
    records = json.loads(Path(path).read_text())
    assert records, f"{path} holds no predictions"
    parts = [k for k in records[0] if k.endswith("kpts") or k == "keypoints"]
    ids = np.array([r["image_id"] for r in records])
    keypoints = np.array([np.concatenate([r[p] for p in parts]) for r in records], np.float64).reshape(-1, 133, 3)
    return ids, keypoints, np.array([r["score"] for r in records], np.float64)


def assert_same_predictions(path_a: Path, path_b: Path) -> None:
    """Two results files hold the same people with the same keypoints (1e-3 px) and scores (1e-5)."""
    ids_a, kp_a, sc_a = read_results(path_a)
    ids_b, kp_b, sc_b = read_results(path_b)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(kp_a[..., :2], kp_b[..., :2], atol=1e-3, rtol=0)
    np.testing.assert_allclose(kp_a[..., 2], kp_b[..., 2], atol=1e-5, rtol=0)
    np.testing.assert_allclose(sc_a, sc_b, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def short_run(synthetic_root, tmp_path_factory) -> tuple[Path, dict]:
    """Two training batches and a validation whose predictions are written to ``val_results.json``."""
    run_dir = tmp_path_factory.mktemp("short_run") / "run"
    overrides = [
        *small_overrides(synthetic_root),
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.check_val_every_n_epoch=1",
        "codec=dark",
        f"module.val_metric.outfile={run_dir / 'val_results.json'}",
    ]
    cfg = compose_config("train", overrides, output_dir=run_dir)
    _, objects = train(cfg)
    return run_dir, objects


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
    # and the same predictions, keypoint by keypoint, as that validation wrote
    assert_same_predictions(run_dir / "val_results.json", tmp_path / "eval" / "results_keypoints.json")
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


@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")  # validating a copied checkpoint
def test_checkpoint_formats_and_validation_give_the_same_keypoints(short_run, synthetic_root, tmp_path) -> None:
    """Weights with confident outputs, stored as our checkpoint, an MMPose 0.x file and that file after
    wbpose-convert, give the same results json on evaluation, and the same as training's validation of the
    checkpoint (the path a user takes to reproduce a seed-table row). Other weights give other keypoints."""
    import subprocess
    import sys

    import torch

    from helpers.fakes import calibrated_model, mmpose_file

    run_dir, objects = short_run
    # our checkpoint format, written by training, with its weights replaced by ones whose heatmaps peak near 1
    native_trained = torch.load(Path(objects["validated_checkpoint"]), map_location="cpu", weights_only=False)
    weights = calibrated_model("tiny", seed=0)
    model_keys = {k for k in native_trained["state_dict"] if k.startswith("model.")}
    assert model_keys == {f"model.{k}" for k in weights.state_dict()}
    native_trained["state_dict"].update({f"model.{k}": v for k, v in weights.state_dict().items()})
    native = tmp_path / "calibrated.ckpt"
    torch.save(native_trained, native)
    mmpose_0x = mmpose_file(weights, tmp_path / "hrnet_tiny_mmpose0x.pth", version="0.x")
    other = mmpose_file(calibrated_model("tiny", seed=1), tmp_path / "other_weights.pth", version="0.x")

    converted = tmp_path / "converted.pth"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "convert.py"), str(mmpose_0x), str(converted)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert converted.is_file()

    def run_eval(ckpt: Path, name: str) -> Path:
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
        evaluate(cfg, overrides=overrides)
        return tmp_path / name / "results_keypoints.json"

    native_results = run_eval(native, "native")
    _, keypoints, scores = read_results(native_results)
    # non-trivial outputs: many confident keypoints (the metric's 0.2 threshold), instance scores that differ
    assert (keypoints[..., 2] > 0.2).mean() > 0.1
    assert np.ptp(scores) > 0.01 and np.ptp(keypoints[..., 0]) > 20

    for ckpt, name in ((mmpose_0x, "mmpose"), (converted, "converted")):
        assert_same_predictions(native_results, run_eval(ckpt, name))

    # training's validation of the same checkpoint (train=false validates ckpt_path) writes the same predictions
    val_results = tmp_path / "validate" / "val_results.json"
    val_overrides = [
        *small_overrides(synthetic_root),
        "codec=dark",
        "train=false",
        f"ckpt_path={native}",
        f"module.val_metric.outfile={val_results}",
    ]
    train(compose_config("train", val_overrides, output_dir=tmp_path / "validate"))
    assert_same_predictions(native_results, val_results)

    # the control: other weights move the keypoints, so the comparisons above can fail
    _, other_keypoints, _ = read_results(run_eval(other, "other"))
    assert other_keypoints.shape != keypoints.shape or np.abs(other_keypoints - keypoints)[..., :2].max() > 1.0

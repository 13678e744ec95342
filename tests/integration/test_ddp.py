"""Two-process CPU DDP (gloo): training and validation run, and the distributed validation equals a
single-process evaluation of the same checkpoint (no padded duplicates, no lost instances)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wbpose.app.config import compose_config, project_root
from wbpose.app.evaluate import evaluate


def _results(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(image_id, score) per kept instance and its 133 x 3 keypoints, in a canonical order."""
    rows = json.loads(path.read_text())
    fields = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
    kpts = np.asarray([sum((r[f] for f in fields), []) for r in rows], dtype=np.float64)
    ids = np.asarray([(r["image_id"], r["score"]) for r in rows], dtype=np.float64)
    order = np.lexsort((kpts[:, 1], kpts[:, 0], -ids[:, 1], ids[:, 0]))
    return ids[order], kpts[order]


def test_ddp_cpu_matches_single_process(synthetic_root, tmp_path) -> None:
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable,
        str(project_root() / "scripts" / "train.py"),
        "model=hrnet_tiny",
        "data=synthetic",
        f"data.data_root={synthetic_root}",
        "data.num_workers=0",
        "data.batch_size=4",
        # one crop per batch: identical arithmetic in both runs, so even the untrained model's nearly flat
        # heatmaps (argmax ties) decode to the same keypoints
        "data.val_batch_size=1",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.check_val_every_n_epoch=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "callbacks.rich_progress_bar=null",
        "module.num_vis_images=0",
        f"module.val_metric.outfile={run_dir}/val_results.json",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = json.loads((run_dir / "metrics.json").read_text())
    ckpt = ddp["checkpoint"]

    eval_dir = tmp_path / "single"
    # one compute thread, as each DDP process had (OMP_NUM_THREADS=1): the same convolution arithmetic
    # the data comes from the command line (a checkpoint's data config is never used)
    data = ["data=synthetic", f"data.data_root={synthetic_root}", "data.num_workers=0", "data.val_batch_size=1"]
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "trainer=cpu", "cpu_threads=1", *data], output_dir=eval_dir)
    threads = torch.get_num_threads()
    try:
        single, objects = evaluate(cfg)
    finally:
        torch.set_num_threads(threads)
    n_instances = len(objects["datamodule"].val_dataset)
    for key, value in ddp["metrics"].items():
        assert single[key.replace("val/", "test/")] == pytest.approx(value, abs=1e-6), key

    ddp_ids, ddp_kpts = _results(run_dir / "val_results.json")
    single_ids, single_kpts = _results(eval_dir / "results_keypoints.json")
    assert 0 < len(single_ids) <= n_instances
    np.testing.assert_allclose(ddp_ids, single_ids, atol=1e-6)
    np.testing.assert_allclose(ddp_kpts, single_kpts, atol=1e-3)

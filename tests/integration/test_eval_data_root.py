"""The data root is read-only to evaluation and training, whatever a checkpoint's stored config says.

The real 4-image COCO-WholeBody sample (``WBPOSE_SAMPLE_DATA``) is laid out as a val-only root (val json, val2017
images, detection file; no train json) and scored with a checkpoint whose stored config says synthetic data (the
config a ``data=synthetic`` training run stores). Evaluation must score the real val json and leave every byte of
the root as it was, add nothing; asking for synthetic data on that root is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from helpers.paths import SAMPLE_ANN, SAMPLE_DET, sample_root
from helpers.references import ref_kept_instances
from wbpose.app.config import compose_config
from wbpose.checkpoints.reader import LIGHTNING_VERSION_KEY, RAW_CONFIG_KEY
from wbpose.data.layout import DET_FILE, TRAIN_ANN, VAL_ANN

SAMPLE = os.environ.get("WBPOSE_SAMPLE_DATA")
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not SAMPLE, reason="set WBPOSE_SAMPLE_DATA to a folder like the real COCO-WholeBody sample"),
]
ANN, DET = SAMPLE_ANN, SAMPLE_DET


@pytest.fixture
def val_only_root(tmp_path: Path) -> Path:
    """The sample in the real layout, val files only (as a user's copy holding just the val split)."""
    sample = sample_root()
    root = tmp_path / "coco"
    for rel, src in ((VAL_ANN, sample / ANN), (DET_FILE, sample / DET)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    (root / "val2017").mkdir()
    for image in sample.glob("*.jpg"):
        shutil.copyfile(image, root / "val2017" / image.name)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (folders too), with the sha256 of each file."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def synthetic_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny model as a ``data=synthetic`` training run writes it (weights and stored config)."""
    from wbpose.build import build_module

    overrides = ["model=hrnet_tiny", "data=synthetic", "codec=dark", "trainer=cpu"]
    cfg = compose_config("train", overrides, output_dir=tmp_path_factory.mktemp("synthetic_run"))
    module = build_module(cfg, with_metrics=False)
    checkpoint: dict[str, Any] = {"state_dict": module.state_dict(), LIGHTNING_VERSION_KEY: pl.__version__}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint[RAW_CONFIG_KEY]["data"]["synthetic"] is not None  # the config that used to generate data
    path = tmp_path_factory.mktemp("ckpt") / "synthetic.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("bbox_source", ["det", "gt"])
def test_eval_scores_the_real_val_json_and_writes_nothing_into_the_root(
    val_only_root: Path, synthetic_checkpoint: Path, bbox_source: str, tmp_path: Path
) -> None:
    from wbpose.app.evaluate import evaluate

    root = val_only_root
    before = snapshot(root)
    assert not (root / TRAIN_ANN).exists()
    # wbpose-eval ckpt_path=<demo ckpt> data.data_root=/data/coco, as in the report
    overrides = [f"ckpt_path={synthetic_checkpoint}", f"data.data_root={root}", f"data.val_bbox_source={bbox_source}"]
    # small and quick: no flip test, detector boxes scoring 0.5 or more (18 of the sample's 118)
    overrides += ["trainer=cpu", "data.num_workers=0", "module.flip_test=false", "data.det_score_thr=0.5"]
    cfg = compose_config("eval", overrides, output_dir=tmp_path / "eval")
    metrics, objects = evaluate(cfg, overrides=overrides)

    assert snapshot(root) == before  # every byte kept, no file or folder added
    assert objects["cfg"].data.get("synthetic") is None  # the data came from the command line, not the checkpoint
    raw = json.loads((root / VAL_ANN).read_text())
    datamodule, module = objects["datamodule"], objects["module"]
    assert datamodule.val_ann_file == module.test_metric.ann_file == str(root / VAL_ANN)
    dataset = datamodule.val_dataset
    # the real sample's images and instances were scored: 4 images, and per box source its boxes
    assert set(dataset.instances.image_ids.tolist()) == {im["id"] for im in raw["images"]}
    if bbox_source == "gt":
        assert sorted(dataset.instances.instance_ids.tolist()) == sorted(ref_kept_instances(raw)[0])
    else:
        dets = json.loads((root / DET_FILE).read_text())
        assert len(dataset) == sum(d["category_id"] == 1 and d["score"] >= 0.5 for d in dets) > 0
    results = json.loads((tmp_path / "eval" / "results_keypoints.json").read_text())
    assert results and {r["image_id"] for r in results} <= {im["id"] for im in raw["images"]}
    assert 0.0 <= metrics["test/wholebody_ap"] <= 1.0 and all(-1.0 <= v <= 1.0 for v in metrics.values())


def test_synthetic_data_on_a_real_root_is_refused(val_only_root: Path, synthetic_checkpoint: Path, tmp_path: Path):
    """Asked for synthetic data where the generator would have to write (train json absent, val json absent),
    training, evaluation and the DataModule refuse the unmarked folder and leave it untouched."""
    from wbpose.app.evaluate import evaluate
    from wbpose.app.train import train
    from wbpose.engine.datamodule import WholeBodyDataModule

    root = val_only_root
    before = snapshot(root)
    message = rf"refusing to generate synthetic data into {re.escape(str(root))}: the folder is not empty"
    overrides = ["model=hrnet_tiny", "data=synthetic", f"data.data_root={root}", "trainer=cpu", "logger=csv"]
    with pytest.raises(FileExistsError, match=message):
        train(compose_config("train", overrides, output_dir=tmp_path / "train"))
    with pytest.raises(FileExistsError, match=message):
        WholeBodyDataModule(root, (128, 96), synthetic={"num_train": 1, "num_val": 1, "seed": 0}).prepare_data()
    assert snapshot(root) == before

    (root / VAL_ANN).unlink()  # evaluation needs only the val json: without it, generation would be needed
    before = snapshot(root)
    overrides = [f"ckpt_path={synthetic_checkpoint}", "data=synthetic", f"data.data_root={root}", "trainer=cpu"]
    with pytest.raises(FileExistsError, match=message):
        evaluate(compose_config("eval", overrides, output_dir=tmp_path / "eval"), overrides=overrides)
    assert snapshot(root) == before

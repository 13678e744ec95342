"""Bad images in a run (README "Faults", ``data.bad_images``): training skips, names and counts them and stops past
the budget listing every one; validation scores a bad image's boxes as misses and reports it; strict mode raises
the ``DataError`` of the first bad image.

The training set has 200 images of one person each: 3 corrupt (garbage bytes), 1 truncated (the first half of the
JPEG, which OpenCV decodes without an error: the end-of-image marker is checked), 1 missing, and 2 whose
entropy-coded data is broken (garbage in the middle; the first half given its end marker back), which OpenCV
decodes too: libjpeg's warning of that decode is what counts them.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path

import pytest

from helpers.bad_images import REASONS, break_image, image_file, one_person_root
from wbpose.app.train import train
from wbpose.data.errors import DataError

#: image id -> how its training image is broken
BROKEN = {
    7: "corrupt",
    50: "corrupt",
    120: "corrupt",
    77: "truncated",
    160: "missing",
    30: "scrambled",
    140: "cut_and_closed",
}
BAD_VAL_IMAGE = 3
MODULE_LOG = "wbpose.engine.bad_images"  # the module's bad-image ledger logs there


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = one_person_root(tmp_path_factory.mktemp("bad_image_run"), num_train=200, num_val=8)
    for image_id, how in BROKEN.items():
        break_image(image_file(root, "train", image_id), how)
    break_image(image_file(root, "val", BAD_VAL_IMAGE), "corrupt")
    return root


def _overrides(*extra: str) -> list[str]:
    """One epoch of 4 batches of 50 small (32x32) crops; validation on ground-truth boxes."""
    return [
        "data.synthetic=null",
        "data.val_bbox_source=gt",
        "data.batch_size=50",
        "input.image_hw=[32,32]",
        "input.heatmap_hw=[8,8]",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "module.num_vis_images=0",
        *extra,
    ]


NO_VAL = ("validate=false", "trainer.limit_val_batches=0")


def test_training_skips_names_and_counts_bad_images(make_cfg, broken_root: Path, caplog) -> None:
    cfg = make_cfg(_overrides("data.bad_images.budget=10", *NO_VAL), root=broken_root)
    with caplog.at_level(logging.WARNING, logger=MODULE_LOG):
        _, objects = train(cfg)
    trainer = objects["trainer"]
    assert trainer.global_step == 4  # the whole epoch ran: every bad sample had a stand-in
    assert float(trainer.callback_metrics["train/bad_images"]) == len(BROKEN) == 7
    warnings = [r.getMessage() for r in caplog.records if r.name == MODULE_LOG and r.levelno == logging.WARNING]
    for image_id, how in BROKEN.items():
        named = [m for m in warnings if f"train2017/{image_id:012d}.jpg" in m]
        assert len(named) == 1, named  # once per file
        _, reason = named[0].split(f"(image_id {image_id}, instance_id {image_id}): ")
        assert re.fullmatch(REASONS[how], reason), reason
    assert len(warnings) == len(BROKEN)
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv") as f:  # the logger saw the running total
        logged = [float(row["train/bad_images"]) for row in csv.DictReader(f) if row.get("train/bad_images")]
    assert len(logged) == 4 and logged == sorted(logged) and logged[-1] == 7


def test_training_stops_past_the_budget_listing_every_bad_file(make_cfg, broken_root: Path) -> None:
    cfg = make_cfg(_overrides("data.bad_images.budget=2", *NO_VAL), root=broken_root)
    with pytest.raises(DataError, match=r"exceed the budget data\.bad_images\.budget=2 \(2 allowed of 200") as info:
        train(cfg)
    message = str(info.value)
    count = int(re.search(r"stopping: (\d+) bad training images", message).group(1))
    listed = [
        i
        for i in BROKEN
        if re.search(rf"{i:012d}\.jpg \(image_id {i}, instance_id {i}\): {REASONS[BROKEN[i]]}", message)
    ]
    assert count >= 3 and len(listed) == count  # every bad file seen, each with its record and what is wrong


def test_validation_scores_a_bad_image_as_misses_and_reports_it(make_cfg, broken_root: Path, tmp_path, caplog) -> None:
    results = tmp_path / "val_results.json"
    cfg = make_cfg(_overrides("train=false", f"module.val_metric.outfile={results}"), root=broken_root)
    with caplog.at_level(logging.WARNING, logger=MODULE_LOG):
        _, objects = train(cfg)
    metrics = objects["metrics"]
    assert metrics["val/bad_images"] == 1
    assert all(math.isfinite(metrics[f"val/{k}"]) for k in ("wholebody_ap", "body_ap", "hand_ar", "face_ap"))
    warning = next(r.getMessage() for r in caplog.records if "bad image(s)" in r.getMessage())
    assert warning.startswith("val: 1 bad image(s)") and "1 box(es) got no prediction" in warning
    assert (
        f"val2017/{BAD_VAL_IMAGE:012d}.jpg (image_id {BAD_VAL_IMAGE}, instance_id {BAD_VAL_IMAGE}): corrupt" in warning
    )
    predicted = {r["image_id"] for r in json.loads(results.read_text())}
    assert predicted == set(range(1, 9)) - {BAD_VAL_IMAGE}  # no prediction for the bad image: a miss


def test_strict_mode_raises_the_data_error_of_the_first_bad_image(make_cfg, broken_root: Path, tmp_path) -> None:
    cfg = make_cfg(_overrides("data.bad_images.strict=true", *NO_VAL), root=broken_root)
    ids = "|".join(f"{i:012d}" for i in BROKEN)
    pattern = rf"(cannot decode image|missing image file) \S*/train2017/({ids})\.jpg for image_id \d+, instance_id"
    with pytest.raises(DataError, match=pattern):
        train(cfg)
    cfg = make_cfg(_overrides("data.bad_images.strict=true", "train=false"), root=broken_root)
    cfg.paths.output_dir = str(tmp_path / "strict_val")  # a run folder of its own
    with pytest.raises(DataError, match=rf"cannot decode image \S*/val2017/{BAD_VAL_IMAGE:012d}\.jpg"):
        train(cfg)


# in the default run: 20 s of CPU time over both ranks (19 s wall on two quiet cores), mostly start-up
def test_two_ddp_ranks_count_every_bad_image_once(broken_root: Path, tmp_path: Path) -> None:
    """2-process gloo DDP: both ranks agree on the running total (the union of what each rank saw), validation
    reports the bad image once, and a low budget stops both ranks with the same error."""
    import os
    import subprocess
    import sys

    from helpers.paths import REPO_ROOT

    def run(name: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "model=hrnet_tiny", "data=synthetic",
            f"data.data_root={broken_root}", "data.num_workers=0", "trainer=ddp_cpu", "trainer.num_sanity_val_steps=0",
            "trainer.check_val_every_n_epoch=1", "trainer.enable_progress_bar=false",
            "callbacks.rich_progress_bar=null", "extras.print_config=false", "validate=false",
            f"hydra.run.dir={tmp_path / name}", *_overrides(*extra),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    proc = run("ok", "data.bad_images.budget=10")
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(tmp_path / "ok" / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train_counts = [float(r["train/bad_images"]) for r in rows if r.get("train/bad_images")]
    assert train_counts[-1] == len(BROKEN)
    assert [float(r["val/bad_images"]) for r in rows if r.get("val/bad_images")] == [1.0]
    proc = run("stop", "data.bad_images.budget=2")
    assert proc.returncode != 0
    assert "exceed the budget data.bad_images.budget=2" in proc.stderr + proc.stdout

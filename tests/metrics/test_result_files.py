"""Result files (results json, metrics.json) are written atomically and readable like any file the user writes:
mode 0666 less the umask, not tempfile's 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.annotations import make_wholebody_gt, write_json
from helpers.predictions import detector_like_predictions
from wbpose.metrics import CocoWholeBodyMetric
from wbpose.metrics.files import default_file_mode, write_atomic
from wbpose.metrics.results_io import build_results, write_results
from wbpose.metrics.tables import read_metrics_json, write_metrics_json


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_file_mode_follows_the_umask(umask: int, tmp_path: Path) -> None:
    assert default_file_mode() == 0o666 & ~umask
    plain = tmp_path / "plain"
    plain.write_text("x")  # what open() gives: the reference
    assert _mode(write_atomic(tmp_path / "atomic", b"x")) == _mode(plain)
    assert _mode(write_atomic(tmp_path / "pieces", [b"a", b"b"])) == _mode(plain)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left


def test_metrics_json_and_results_files_are_readable(umask: int, tmp_path: Path) -> None:
    expected = 0o666 & ~umask
    path = write_metrics_json(tmp_path / "metrics.json", {"val/ap": 0.5}, checkpoint="x.ckpt")
    assert _mode(path) == expected and read_metrics_json(path) == {"val/ap": 0.5}
    results = build_results(np.array([1]), np.zeros((1, 133, 2)), np.ones((1, 133)), np.ones(1))
    assert _mode(write_results(tmp_path / "results.json", results)) == expected


@pytest.mark.parametrize("num_procs", [1, 2])  # 2: the results json is written by a thread meanwhile
def test_metric_results_json_mode(tmp_path: Path, num_procs: int) -> None:
    old = os.umask(0o022)
    try:
        gt = make_wholebody_gt(4, 2, seed=0)
        ann_file = write_json(tmp_path / "gt.json", gt)
        preds = detector_like_predictions(gt, seed=1)
        metric = CocoWholeBodyMetric(ann_file, outfile=tmp_path / "results.json", num_procs=num_procs)
        metric.update(**{k: torch.as_tensor(v) for k, v in preds.items()})
        metric.compute()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "results.json") == 0o644

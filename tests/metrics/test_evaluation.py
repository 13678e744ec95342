"""The evaluation front door (wbpose.metrics.evaluation): it picks the engine by name, says which one ran, and
both give the same numbers on a results file."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from helpers.annotations import make_wholebody_gt, write_json
from helpers.predictions import gt_as_predictions
from wbpose.metrics.evaluation import ENGINES, evaluate_results_file
from wbpose.metrics.results_io import build_results, write_results


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluation")
    gt = make_wholebody_gt(num_images=2, people_per_image=2, seed=5)
    preds = gt_as_predictions(gt)
    n = len(preds["image_ids"])
    results = build_results(preds["image_ids"], preds["keypoints"], preds["keypoint_scores"], np.ones(n))
    return write_json(folder / "ann.json", gt), write_results(folder / "results.json", results), n


@pytest.mark.filterwarnings("ignore:'.*_score' not found:UserWarning")
def test_each_engine_is_logged_and_gives_the_same_numbers(files, caplog):
    ann, res, n = files
    scores = {}
    for engine in ENGINES:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="wbpose.metrics.evaluation"):
            scores[engine] = evaluate_results_file(ann, res, engine=engine, num_procs=1)
        said = [r.getMessage() for r in caplog.records if r.name == "wbpose.metrics.evaluation"]
        assert said == [f"scoring {n} results with the {engine} engine"], said
    assert scores["fast"] == scores["xtcocotools"]
    assert scores["fast"]["wholebody_ap"] == 1.0


def test_unknown_engine_is_refused_by_name(files):
    with pytest.raises(ValueError, match=r"engine must be one of \('fast', 'xtcocotools'\), got 'numpy'"):
        evaluate_results_file(*files[:2], engine="numpy")


def test_flags_are_keyword_only(files):
    with pytest.raises(TypeError):
        evaluate_results_file(*files[:2], 1)  # num_procs by position

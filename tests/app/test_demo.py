"""The demo draws the metric's selection of people (``select_people`` with the module's metric thresholds) above
its display threshold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from helpers.predictions import random_predictions
from wbpose.metrics.oks import select_people


def test_demo_people_are_the_metric_selection_above_the_display_threshold(monkeypatch):
    """``_person_predictions`` draws select_people's people (with the module's metric thresholds) above min_score."""
    from wbpose.app import demo

    preds = random_predictions(5)
    n = len(preds["image_ids"])
    scale_wh = np.stack([np.sqrt(preds["areas"]), np.sqrt(preds["areas"])], 1)
    batches = [slice(i, min(i + 16, n)) for i in range(0, n, 16)]
    outputs = [
        {
            "keypoints": torch.as_tensor(preds["keypoints"][b]),
            "scores": torch.as_tensor(preds["keypoint_scores"][b]),
            "image_id": torch.as_tensor(preds["image_ids"][b]),
            "instance_id": torch.as_tensor(preds["instance_ids"][b]),
            "bbox_score": torch.as_tensor(preds["bbox_scores"][b]),
            "scale_wh": torch.as_tensor(scale_wh[b]),
        }
        for b in batches
    ]
    monkeypatch.setattr(
        demo, "_quiet_trainer", lambda cfg: SimpleNamespace(predict=lambda module, dataloaders: outputs)
    )
    module = SimpleNamespace(val_metric=SimpleNamespace(keypoint_score_thr=0.3, nms_thr=0.8))
    datamodule = SimpleNamespace(val_dataloader=lambda: None)
    per_image = demo._person_predictions(module, datamodule, cfg=None, min_score=0.25)

    areas = scale_wh.prod(-1)
    keep, scores = select_people(
        preds["image_ids"],
        preds["keypoints"],
        preds["keypoint_scores"],
        preds["bbox_scores"],
        areas,
        instance_ids=preds["instance_ids"],
        keypoint_score_thr=0.3,
        nms_thr=0.8,
    )
    keep, scores = keep[scores > 0.25], scores[scores > 0.25]
    assert len(keep) > 0
    assert sorted(per_image) == sorted(set(preds["image_ids"][keep].tolist()))
    for image_id, people in per_image.items():
        rows = keep[preds["image_ids"][keep] == image_id]
        np.testing.assert_array_equal(people["keypoints"], preds["keypoints"][rows])
        np.testing.assert_array_equal(people["scores"], preds["keypoint_scores"][rows])
        np.testing.assert_array_equal(people["instance_scores"], scores[preds["image_ids"][keep] == image_id])

"""The fast training steps on real training samples: the 12 people of the real COCO-WholeBody sample, augmented and
encoded as in training (MSRA targets, 256x192), through the tiny network: the ``cuda_graph`` logic (CPU stand-in)
and ``compile`` give the eager step's loss, gradients, weights and BatchNorm statistics.

Runs only when ``WBPOSE_SAMPLE_DATA`` names the sample folder (as ``test_real_sample.py``).
"""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch
from torch.utils.data import default_collate

from helpers.paths import SAMPLE_ANN, sample_root
from wbpose.codecs import MSRAHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.engine.fast_step import RerunCapture, step_difference
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(
        not os.environ.get("WBPOSE_SAMPLE_DATA"),
        reason="set WBPOSE_SAMPLE_DATA to a folder like the real COCO-WholeBody sample",
    ),
]


@pytest.fixture(scope="module")
def real_batches() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Two batches of 5 real training crops and a last one of 2 (the partial batch), with their targets."""
    root = sample_root()
    codec = MSRAHeatmap((256, 192), (64, 48), 2.0)
    ds = CocoWholeBodyDataset(root / SAMPLE_ANN, root, (192, 256), codec=codec, transforms=build_train_augmentations())
    batch = default_collate(ds.__getitems__(list(range(len(ds)))))
    assert batch["image"].shape == (12, 3, 256, 192) and float(batch["weights"].sum()) > 500
    cuts = [(0, 5), (5, 10), (10, 12)]
    return [tuple(batch[k][a:b] for k in ("image", "heatmaps", "weights")) for a, b in cuts]


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_pose_model("tiny")


def test_cuda_graph_logic_equals_eager_on_real_samples(real_batches) -> None:
    diff = step_difference(tiny, KeypointMSELoss(), partial(torch.optim.Adam, lr=5e-4), real_batches, "cuda_graph",
                           lrs=[5e-4, 2.5e-4, 5e-4], capture=RerunCapture(warmup=1))  # fmt: skip
    assert (diff.loss, diff.grad, diff.weights, diff.buffers) == (0.0, 0.0, 0.0, 0.0), diff


def test_compile_equals_eager_on_real_samples(real_batches) -> None:
    torch._dynamo.reset()
    diff = step_difference(tiny, KeypointMSELoss(), partial(torch.optim.Adam, lr=5e-4), real_batches[:1], "compile",
                           compile_options={"backend": "aot_eager"})  # fmt: skip
    assert diff.loss < 1e-6 and diff.grad < 1e-5 and diff.update < 1e-3 and diff.buffers < 1e-6, diff

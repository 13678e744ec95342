"""The network's numbers against MMPose's own: a small HRNet built, initialised and run by MMPose 1.3.2.

``hrnet_small_w8.npz`` (``shared/data/mmpose_golden``, see its README) holds MMPose's weights under MMPose's names,
with random BN affine parameters and statistics so that every operation shows in the output, a fixed normalised
input, and MMPose's backbone output and heatmaps for it. Names and shapes agreeing (``test_hrnet.py``) says nothing
about the forward pass; this does: a dropped ReLU, a swapped fusion term or a wrong upsampling moves the heatmaps
by far more than the float tolerance used here.

The folder is found through ``WBPOSE_MMPOSE_GOLDEN`` (``.ci/run`` sets it when ``../shared`` sits beside the clone),
else ``../shared/data/mmpose_golden`` relative to the checkout; the tests skip, saying so, when neither exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.paths import REPO_ROOT
from wbpose.models import HeatmapHead, HRNet, TopdownPoseModel
from wbpose.models.hrnet import HRNetArch

GOLDEN_FILE = "hrnet_small_w8.npz"


def golden_dir() -> Path | None:
    """The golden folder: ``$WBPOSE_MMPOSE_GOLDEN``, else ``<checkout>/../shared/data/mmpose_golden``, if it exists."""
    env = os.environ.get("WBPOSE_MMPOSE_GOLDEN")
    folder = Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "mmpose_golden"
    return folder if (folder / GOLDEN_FILE).is_file() else None


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    folder = golden_dir()
    if folder is None:
        pytest.skip(
            f"MMPose golden file {GOLDEN_FILE} not found (set WBPOSE_MMPOSE_GOLDEN or put shared/ beside the checkout)"
        )
    with np.load(folder / GOLDEN_FILE) as data:
        return {key: data[key] for key in data.files}


def arch_from_mmpose(extra: dict) -> HRNetArch:
    """Our ``HRNetArch`` for MMPose's ``backbone.extra`` (stem fixed at 64 channels by MMPose)."""
    stages = [extra[f"stage{s}"] for s in (2, 3, 4)]
    blocks = {b for stage in stages for b in stage["num_blocks"]}
    assert len(blocks) == 1, "one BasicBlock count for every branch"
    assert extra["stage1"]["block"] == "BOTTLENECK" and all(stage["block"] == "BASIC" for stage in stages)
    width = stages[0]["num_channels"][0]
    for s, stage in enumerate(stages):
        assert stage["num_channels"] == [width * 2**b for b in range(s + 2)]
    return HRNetArch(
        width=width,
        stem_channels=64,
        stage1_planes=extra["stage1"]["num_channels"][0],
        stage1_blocks=extra["stage1"]["num_blocks"][0],
        stage_modules=tuple(stage["num_modules"] for stage in stages),
        stage_blocks=(blocks.pop(),) * 3,
    )


@pytest.fixture(scope="module")
def model(golden) -> TopdownPoseModel:
    meta = json.loads(str(golden["arch"]))
    arch = arch_from_mmpose(meta["backbone_extra"])
    assert arch == HRNetArch(width=8, stem_channels=64, stage1_planes=8, stage1_blocks=1, stage_modules=(1, 1, 1),
                             stage_blocks=(1, 1, 1))  # fmt: skip
    net = TopdownPoseModel(HRNet(arch), HeatmapHead(meta["head"]["in_channels"], meta["head"]["out_channels"]))
    prefix = "state_dict/"
    state = {k[len(prefix) :]: torch.from_numpy(v) for k, v in golden.items() if k.startswith(prefix)}
    net.load_state_dict(state, strict=True)  # every MMPose name present, nothing left over
    return net.eval()


def test_golden_weights_are_not_trivial(golden) -> None:
    """The file exercises BN affine terms and the head (not MMPose's ~0 init): outputs of order 1."""
    assert golden["input"].shape == (2, 3, 128, 96)
    assert golden["heatmaps"].shape == (2, 133, 32, 24)
    assert 0.2 < float(golden["heatmaps"].std()) < 1.0
    assert float(golden["backbone"].std()) > 0.1
    bn_weights = [v for k, v in golden.items() if k.endswith(".weight") and v.ndim == 1]
    assert not any(np.allclose(w, 1.0) for w in bn_weights)


def test_backbone_and_heatmaps_match_mmpose(golden, model: TopdownPoseModel) -> None:
    images = torch.from_numpy(golden["input"])
    with torch.no_grad():
        features = model.backbone(images)
        heatmaps = model(images)
    np.testing.assert_allclose(features.numpy(), golden["backbone"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(heatmaps.numpy(), golden["heatmaps"], rtol=1e-4, atol=1e-5)

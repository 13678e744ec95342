"""MMPose checkpoint import: fake 0.x/1.x files round-trip, wrong arch is reported, unsafe pickles refused."""

import collections
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wbpose.checkpoints import (
    infer_arch,
    load_imagenet_backbone,
    load_mmpose_checkpoint,
)
from wbpose.models import HRNet, build_pose_model


def _random_tiny(seed: int = 0) -> nn.Module:
    """A tiny model with non-trivial weights and BN statistics, so equal outputs mean equal weights."""
    torch.manual_seed(seed)
    model = build_pose_model("tiny")
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            tensor.fill_(7)
        elif name.endswith("running_var"):
            tensor.uniform_(0.5, 1.5)
        else:
            tensor.normal_(0, 0.2)
    return model.eval()


def _outputs(model: nn.Module, seed: int = 1) -> torch.Tensor:
    images = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(images)


def _mmpose0x(model: nn.Module) -> dict:
    state = collections.OrderedDict(
        (k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else k, v)
        for k, v in model.state_dict().items()
    )
    meta = {
        "mmcv_version": "1.3.8",
        "epoch": 210,
        "hook_msgs": {"best_score": np.float64(0.553), "best_ckpt": "best_AP_epoch_210.pth"},
        "config": "model = dict(type='TopDown', ...)",
    }
    return {"meta": meta, "state_dict": state}


def _mmpose1x(model: nn.Module) -> dict:
    state = collections.OrderedDict(model.state_dict())
    state["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    state["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    meta = {"dataset_meta": {"sigmas": np.full(133, 0.02, np.float32), "flip_indices": list(range(133))}}
    return {"meta": meta, "state_dict": state}


@pytest.mark.parametrize("make", [_mmpose0x, _mmpose1x])
def test_fake_mmpose_file_loads_with_identical_outputs(tmp_path: Path, make) -> None:
    source = _random_tiny()
    path = tmp_path / "ckpt.pth"
    torch.save(make(source), path)
    target = build_pose_model("tiny")
    assert not torch.allclose(_outputs(target), _outputs(source))
    model, report = load_mmpose_checkpoint(path, target)
    assert model is target and report.ok
    assert report.loaded == len(source.state_dict())
    assert report.checkpoint_arch == report.model_arch == "tiny"
    torch.testing.assert_close(_outputs(model), _outputs(source), rtol=0, atol=0)
    if make is _mmpose1x:
        assert sorted(report.ignored) == ["data_preprocessor.mean", "data_preprocessor.std"]


def test_ddp_prefix_and_bare_state_dict_without_model() -> None:
    source = _random_tiny()
    bare = {"module." + k: v for k, v in _mmpose0x(source)["state_dict"].items()}
    state, report = load_mmpose_checkpoint(bare)
    assert report.ok and report.checkpoint_arch == "tiny"
    assert set(state) == set(source.state_dict())
    assert torch.equal(state["head.final_layer.weight"], source.head.final_layer.weight)


@pytest.mark.parametrize("arch", ["w32", "w48"])
def test_full_size_mmpose_keys_map_exactly(arch: str) -> None:
    with torch.device("meta"):
        model = build_pose_model(arch)
    fake = _mmpose0x(model)  # meta tensors: keys and shapes only, nothing allocated
    assert infer_arch(fake["state_dict"]) == arch
    _, report = load_mmpose_checkpoint(fake, model)
    assert report.ok and report.loaded == 1754


def test_wrong_arch_gives_clear_report() -> None:
    with torch.device("meta"):
        w48_file = _mmpose0x(build_pose_model("w48"))
        w32_model = build_pose_model("w32")
    with pytest.raises(ValueError, match="looks like HRNet-w48, model is HRNet-w32") as info:
        load_mmpose_checkpoint(w48_file, w32_model)
    assert "shape mismatches" in str(info.value)
    _, report = load_mmpose_checkpoint(w48_file, w32_model, strict=False)
    assert not report.ok and not report.missing and not report.unexpected
    # Only the stem and layer1 (64/256 channels in both) fit; everything from transition1 on differs.
    assert ("backbone.transition1.0.0.weight", (48, 256, 3, 3), (32, 256, 3, 3)) in report.shape_mismatches
    stem_and_layer1 = ("backbone.conv", "backbone.bn", "backbone.layer1.")
    differing = {
        k
        for k in w32_model.state_dict()
        if not k.startswith(stem_and_layer1) and not k.endswith("num_batches_tracked") and k != "head.final_layer.bias"
    }
    assert {k for k, _, _ in report.shape_mismatches} == differing
    assert not any(k.startswith(stem_and_layer1) for k, _, _ in report.shape_mismatches)


def test_seventeen_keypoint_head_is_reported_and_backbone_still_loads() -> None:
    source = _random_tiny()
    state = _mmpose0x(source)["state_dict"]
    state["keypoint_head.final_layer.weight"] = torch.zeros(17, 16, 1, 1)
    state["keypoint_head.final_layer.bias"] = torch.zeros(17)
    target = build_pose_model("tiny")
    with pytest.raises(ValueError, match=r"head.final_layer.weight \[17, 16, 1, 1\] vs model \[133, 16, 1, 1\]"):
        load_mmpose_checkpoint(state, target)
    _, report = load_mmpose_checkpoint(state, target, strict=False)
    assert len(report.shape_mismatches) == 2
    torch.testing.assert_close(target.backbone.conv1.weight, source.backbone.conv1.weight)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    checkpoint = _mmpose0x(_random_tiny())
    checkpoint["meta"]["payload"] = _RunsCode(marker)
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"refusing to load .*evil\.pth.*system"):
        load_mmpose_checkpoint(path, build_pose_model("tiny"))
    assert not marker.exists()


def test_unreadable_files_give_value_errors(tmp_path: Path) -> None:
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_mmpose_checkpoint(tmp_path / "garbage.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_mmpose_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="checkpoint path or a state dict"):
        load_mmpose_checkpoint(42)


def test_imagenet_backbone_ignores_classifier_extras(tmp_path: Path) -> None:
    source = _random_tiny().backbone
    # Old ImageNet files have no num_batches_tracked; classifier parts are extra.
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    extras = {
        "incre_modules.0.0.conv1.weight": torch.zeros(32, 16, 1, 1),
        "downsamp_modules.0.0.weight": torch.zeros(256, 128, 3, 3),
        "final_layer.0.weight": torch.zeros(2048, 1024, 1, 1),
        "classifier.weight": torch.zeros(1000, 2048),
        "stage4.0.fuse_layers.1.0.0.0.weight": torch.zeros(32, 16, 3, 3),
    }
    torch.save({**state, **extras}, tmp_path / "hrnet_tiny_imagenet.pth")
    target = HRNet("tiny")
    report = load_imagenet_backbone(tmp_path / "hrnet_tiny_imagenet.pth", target)
    assert report.ok and sorted(report.ignored) == sorted(extras)
    assert report.loaded == len(state)
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value), key


def test_backbone_from_pose_checkpoint_and_wrong_arch() -> None:
    source = _random_tiny()
    checkpoint = _mmpose0x(source)
    target = HRNet("tiny")
    report = load_imagenet_backbone(checkpoint, target)
    assert report.ok and sorted(report.ignored) == [
        "keypoint_head.final_layer.bias",
        "keypoint_head.final_layer.weight",
    ]
    torch.testing.assert_close(
        target.eval()(torch.ones(1, 3, 64, 32)), source.eval().backbone(torch.ones(1, 3, 64, 32))
    )
    with torch.device("meta"):
        w32 = HRNet("w32")
    with pytest.raises(ValueError, match="shape mismatches"):
        load_imagenet_backbone(checkpoint, w32)


def test_infer_arch_rejects_non_hrnet() -> None:
    with pytest.raises(ValueError, match="not an HRNet state dict"):
        infer_arch({"conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unsupported HRNet width 18"):
        infer_arch({"transition1.0.0.weight": torch.zeros(18, 256, 3, 3), "conv1.weight": torch.zeros(64, 3, 3, 3)})


def _convert_main():
    from wbpose.app.convert import main

    return main


def test_convert_script_round_trip(tmp_path: Path, capsys) -> None:
    source = _random_tiny()
    torch.save(_mmpose1x(source), tmp_path / "mmpose.pth")
    main = _convert_main()
    assert main([str(tmp_path / "mmpose.pth"), str(tmp_path / "out" / "native.pth")]) == 0
    assert "arch tiny" in capsys.readouterr().out
    native = torch.load(tmp_path / "out" / "native.pth", weights_only=True)
    assert native["arch"] == "tiny" and native["num_keypoints"] == 133
    assert native["source"].endswith("mmpose.pth")
    model = build_pose_model(native["arch"], native["num_keypoints"])
    model.load_state_dict(native["state_dict"], strict=True)
    torch.testing.assert_close(_outputs(model), _outputs(source), rtol=0, atol=0)
    # An --arch that contradicts the weights is an error, not a silent conversion.
    assert main([str(tmp_path / "mmpose.pth"), str(tmp_path / "x.pth"), "--arch", "w32"]) == 1
    assert "weights are HRNet-tiny" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_numpy1_pickled_meta_loads(tmp_path: Path) -> None:
    """Files from numpy 1.x name ``numpy.core.multiarray``; rewrite the pickle to check that alias is allowed."""
    import zipfile

    from wbpose.checkpoints import read_checkpoint

    torch.save({"meta": {"best": np.float64(0.5), "sigmas": np.arange(3)}, "state_dict": {}}, tmp_path / "np2.pth")
    with zipfile.ZipFile(tmp_path / "np2.pth") as zin, zipfile.ZipFile(tmp_path / "np1.pth", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)
    meta = read_checkpoint(tmp_path / "np1.pth")["meta"]
    assert meta["best"] == 0.5 and meta["sigmas"].tolist() == [0, 1, 2]

"""HRNet + heatmap head: MMPose parameter counts and state_dict layout, tiny variant shape/gradients, init."""

import pytest
import torch
from torch import nn

from helpers.paths import FIXTURE_DIR
from wbpose.models import ARCHS, HeatmapHead, HRNet, TopdownPoseModel, build_pose_model
from wbpose.models.hrnet import HRModule, HRNetArch, _transition


def _meta_model(arch: str) -> TopdownPoseModel:
    with torch.device("meta"):
        return build_pose_model(arch)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _mmpose_keys(arch: str) -> list[tuple[str, list[int]]]:
    rows = []
    for line in (FIXTURE_DIR / f"mmpose_state_dict_keys_{arch}.txt").read_text().splitlines():
        key, shape = line.split("\t")
        shape_list = [int(s) for s in shape.strip("[]").split(",") if s.strip()]
        rows.append((key.replace("keypoint_head.", "head.", 1), shape_list))
    return rows


@pytest.mark.parametrize(
    ("arch", "backbone_params", "total_params"),
    [("w32", 28_535_552, 28_539_941), ("w48", 63_594_912, 63_601_429)],
)
def test_parameter_counts_match_mmpose(arch: str, backbone_params: int, total_params: int) -> None:
    model = _meta_model(arch)
    assert _n_params(model.backbone) == backbone_params
    assert _n_params(model) == total_params
    assert model.backbone.out_channels == ARCHS[arch].width


@pytest.mark.parametrize("arch", ["w32", "w48"])
def test_state_dict_names_and_shapes_match_mmpose(arch: str) -> None:
    ours = [(k, list(v.shape)) for k, v in _meta_model(arch).state_dict().items()]
    reference = _mmpose_keys(arch)
    assert len(reference) == 1754
    missing = sorted({k for k, _ in reference} - {k for k, _ in ours})
    unexpected = sorted({k for k, _ in ours} - {k for k, _ in reference})
    assert not missing and not unexpected, (missing[:5], unexpected[:5])
    # Same shapes and even the same order as MMPose's state_dict.
    assert ours == reference
    assert sum(k.endswith("num_batches_tracked") for k, _ in ours) == 292


def test_last_stage4_module_is_single_scale() -> None:
    backbone = _meta_model("w32").backbone
    assert len(backbone.stage4[-1].fuse_layers) == 1
    assert all(len(m.fuse_layers) == 4 for m in backbone.stage4[:-1])
    assert len(backbone.stage4[-1].branches) == 4  # all branches still feed fuse_layers.0


def test_fuse_paths_structure() -> None:
    module = _meta_model("w32").backbone.stage4[0]
    up = module.fuse_layers[0][3]
    assert isinstance(up[2], nn.Upsample) and up[2].scale_factor == 8 and up[2].mode == "nearest"
    down = module.fuse_layers[3][0]  # 32 -> 32 -> 32 -> 256, three stride-2 convs
    assert [type(step[-1]) for step in down] == [nn.ReLU, nn.ReLU, nn.BatchNorm2d]
    assert [step[0].stride for step in down] == [(2, 2)] * 3
    assert [step[0].out_channels for step in down] == [32, 32, 256]
    assert module.fuse_layers[2][2] is None


@pytest.mark.parametrize("hw", [(128, 96), (256, 192)])
def test_tiny_output_shape_and_stride(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_pose_model("tiny").eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(2, 3, *hw))
        heatmaps = model(torch.randn(2, 3, *hw))
    assert features.shape == (2, 16, hw[0] // 4, hw[1] // 4)
    assert heatmaps.shape == (2, 133, hw[0] // 4, hw[1] // 4)


def test_tiny_is_small() -> None:
    model = build_pose_model("tiny")
    assert _n_params(model) < 1_000_000


def test_tiny_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = build_pose_model("tiny").train()
    # MMPose's 0.001-std init makes gradients tiny but non-zero; a larger init avoids underflow to exact 0.
    for p in model.parameters():
        if p.ndim > 1:
            nn.init.normal_(p, std=0.1)
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not no_grad


def test_eval_output_does_not_depend_on_the_rest_of_the_batch() -> None:
    torch.manual_seed(0)
    model = build_pose_model("tiny").eval()
    images = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images)[1:2], model(images[1:2]), rtol=1e-4, atol=1e-7)


def test_init_statistics_follow_mmpose() -> None:
    torch.manual_seed(0)
    model = build_pose_model("tiny")
    conv_weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    assert conv_weights.mean().abs() < 1e-4
    assert conv_weights.std().item() == pytest.approx(0.001, rel=0.02)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        if isinstance(m, nn.Conv2d) and m is not model.head.final_layer:
            assert m.bias is None  # every backbone conv is bias-free
    assert torch.all(model.head.final_layer.bias == 0)
    assert model.head.final_layer.weight.std().item() == pytest.approx(0.001, rel=0.1)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (torch.zeros(3, 64, 64), ValueError, r"\(B, 3, H, W\)"),
        (torch.zeros(1, 1, 64, 64), ValueError, r"\(B, 3, H, W\)"),
        (torch.zeros(1, 3, 64, 48), ValueError, "divisible by 32"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "floating-point"),
        ([[0.0]], TypeError, r"as a torch.Tensor of shape \(B, 3, H, W\), got list$"),
    ],
)
def test_bad_input_raises_clear_error(images, error, match) -> None:
    model = build_pose_model("tiny")
    with pytest.raises(error, match=match):
        model(images)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown HRNet arch 'w18'"):
        HRNet("w18")
    with pytest.raises(ValueError, match="in_channels"):
        HeatmapHead(0)
    with pytest.raises(ValueError, match=r"features of shape \(B, 16, h, w\)"):
        HeatmapHead(16)(torch.zeros(1, 8, 4, 4))
    with pytest.raises(TypeError, match="^arch must be a str or HRNetArch, got int$"):
        HRNet(3)


def test_arch_is_kept_and_w32_is_the_default() -> None:
    with torch.device("meta"):
        default, tiny, w32 = HRNet(), HRNet("tiny"), HRNet(ARCHS["w32"])
    assert default.arch == ARCHS["w32"] and tiny.arch == ARCHS["tiny"]
    assert [(k, v.shape) for k, v in default.state_dict().items()] == [
        (k, v.shape) for k, v in w32.state_dict().items()
    ]


def test_hrmodule_defaults_to_multiscale_and_one_branch_has_no_fusion() -> None:
    torch.manual_seed(0)
    xs = [torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4)]
    two = HRModule([4, 8], 1).eval()
    outs = two(xs)
    assert [tuple(o.shape) for o in outs] == [(1, 4, 8, 8), (1, 8, 4, 4)] and len(two.fuse_layers) == 2
    one = HRModule([4], 1).eval()
    assert one.fuse_layers is None
    (out,) = one([xs[0]])
    torch.testing.assert_close(out, one.branches[0](xs[0]), rtol=0, atol=0)


def test_layer1_with_two_bottlenecks_runs() -> None:
    """Only block 0 of layer1 changes the width (and has a downsample); the others add their input."""
    arch = HRNetArch(width=4, stem_channels=8, stage1_planes=4, stage1_blocks=2, stage_modules=(1, 1, 1),
                     stage_blocks=(1, 1, 1))  # fmt: skip
    model = HRNet(arch).eval()
    assert model.layer1[0].downsample is not None and model.layer1[1].downsample is None
    assert tuple(model(torch.randn(2, 3, 64, 32)).shape) == (2, 4, 16, 8)


def test_transition_adding_two_branches_steps_down_from_the_last_one() -> None:
    """A new branch two levels below the previous stage's last one: a stride-2 step at the last branch's width,
    then one to the new width (MMPose's transition; the standard archs add one branch per stage)."""
    layers = _transition([8, 16, 32], [8, 16, 32, 64, 128])
    assert layers[0] is None and layers[3] is not None
    widths = [tuple(step[0].weight.shape[:2]) for step in layers[4]]
    assert widths == [(32, 32), (128, 32)]
    assert layers[4](torch.zeros(1, 32, 8, 8)).shape == (1, 128, 2, 2)

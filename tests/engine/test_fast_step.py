"""The fast training steps give the eager step's numbers: the ``cuda_graph`` logic through its CPU stand-in
(``RerunCapture``), ``compile`` through torch.compile's ``aot_eager`` backend (inductor: the slow test), and the real
CUDA graph where a GPU is present."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from wbpose.engine.fast_step import (
    CudaGraphCapture,
    OptimizerStep,
    RerunCapture,
    TrainStep,
    autocast_dtype,
    step_difference,
)
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model

H, W = 64, 32  # smallest HRNet input


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_pose_model("tiny")


def batches(
    sizes, seed: int = 1, device: str = "cpu", hw=(H, W)
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Fresh random batches (no zeros): images, target heatmaps, 0/1 keypoint weights."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    out = []
    for b in sizes:
        images = torch.randn(b, 3, h, w, generator=g)
        heatmaps = torch.rand(b, 133, h // 4, w // 4, generator=g)
        weights = (torch.rand(b, 133, generator=g) > 0.3).float()
        out.append((images.to(device), heatmaps.to(device), weights.to(device)))
    return out


def eager_reference(model, data, lrs, autocast=None):
    """The eager step written out here (not through TrainStep): losses, last gradients, the model after."""
    opt = torch.optim.Adam(model.parameters(), lr=lrs[0])
    losses, grads = [], []
    for (images, heatmaps, weights), lr in zip(data, lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast(images.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            pred = model(images)
        loss = KeypointMSELoss()(pred, heatmaps, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        losses.append(float(loss))
    return losses, grads


def run_fast(step: TrainStep, data, lrs):
    """OptimizerStep over ``data``: losses and the last step's gradients (read just before its update)."""
    params = list(step.model.parameters())
    opt = torch.optim.Adam(params, lr=lrs[0])
    run = OptimizerStep(step, opt)
    losses, grads = [], []
    opt.register_step_pre_hook(lambda *_: grads.__setitem__(slice(None), [p.grad.clone() for p in params]))
    for batch, lr in zip(data, lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        losses.append(float(run(*batch)))
    return losses, grads


def assert_same_model(fast: torch.nn.Module, ref: torch.nn.Module, atol: float = 0.0) -> None:
    for (name, a), b in zip(fast.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0.0 if atol == 0 else 1e-5, msg=name)


def test_cuda_graph_logic_equals_eager_on_cpu() -> None:
    """Two same-shaped batches (one capture, two replays), a partial batch (eager fallback), LR changes."""
    ref_model = tiny()
    model = copy.deepcopy(ref_model)
    running_means = {k: v.clone() for k, v in ref_model.state_dict().items() if k.endswith("running_mean")}
    data = batches([2, 2, 1])
    lrs = [1e-3, 5e-4, 2e-3]
    ref_losses, ref_grads = eager_reference(ref_model, data, lrs)
    capture = RerunCapture(warmup=2)
    step = TrainStep(model, KeypointMSELoss(), "cuda_graph", capture=capture)
    losses, grads = run_fast(step, data, lrs)
    assert step.computes_grads and capture.replays == 2 and step.fallbacks == 1
    # same ops in the same order on the CPU: bit-equal, the running statistics too (updated once per step, not by
    # the two warm-up runs)
    assert losses == ref_losses
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.equal(a, b)
    assert_same_model(model, ref_model)
    # ... and the steps did move them
    assert all(not torch.equal(model.state_dict()[k], v) for k, v in running_means.items())


def test_cuda_graph_keeps_its_gradient_tensors() -> None:
    """The parameters' .grad are the static tensors the graph writes; set to None, they are put back."""
    model = tiny()
    step = TrainStep(model, KeypointMSELoss(), "cuda_graph", capture=RerunCapture(warmup=1))
    data = batches([2, 2])
    step(*data[0])
    static = [p.grad for p in model.parameters()]
    assert all(g is not None for g in static)
    model.zero_grad(set_to_none=True)
    step(*data[1])
    assert all(p.grad is g for p, g in zip(model.parameters(), static, strict=True))
    # the gradients are overwritten, not accumulated: the second batch alone
    ref = copy.deepcopy(model)
    ref.zero_grad(set_to_none=True)
    # ref's BN statistics already saw batch 1: the gradient does not depend on them in training mode
    KeypointMSELoss()(ref(data[1][0]), data[1][1], data[1][2]).backward()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-8)


def test_rerun_capture_names_a_moved_tensor() -> None:
    model = tiny()
    step = TrainStep(model, KeypointMSELoss(), "cuda_graph", capture=RerunCapture(warmup=1))
    data = batches([2, 2])
    step(*data[0])
    first = next(model.parameters())
    first.data = first.data.clone()  # what a .to(device) after the capture would do
    with pytest.raises(RuntimeError, match="changed storage since the capture"):
        step(*data[1])


def test_cuda_graph_with_bf16_autocast_equals_eager() -> None:
    ref_model = tiny()
    model = copy.deepcopy(ref_model)
    data = batches([2, 2])
    ref_losses, _ = eager_reference(ref_model, data, [1e-3, 1e-3], autocast=torch.bfloat16)
    step = TrainStep(model, KeypointMSELoss(), "cuda_graph", autocast=torch.bfloat16, capture=RerunCapture(1))
    losses, _ = run_fast(step, data, [1e-3, 1e-3])
    assert losses == ref_losses
    assert_same_model(model, ref_model)


def counting_backend(graphs: list, name: str = "aot_eager"):
    """A torch.compile backend that records each graph dynamo hands it, then compiles it with ``name``."""
    backend = torch._dynamo.lookup_backend(name)

    def compile_graph(gm, example_inputs):
        graphs.append(gm)
        return backend(gm, example_inputs)

    return compile_graph


def test_compile_equals_eager() -> None:
    """torch.compile's tracing, functionalisation of BatchNorm's statistics and AOT backward (the ``aot_eager``
    backend: no code generation), over three steps with LR changes and a last, smaller batch."""
    torch._dynamo.reset()
    ref_model = tiny()
    model = copy.deepcopy(ref_model)
    data = batches([3, 3, 2])
    lrs = [1e-3, 5e-4, 2e-3]
    ref_losses, ref_grads = eager_reference(ref_model, data, lrs)
    graphs: list = []
    step = TrainStep(model, KeypointMSELoss(), "compile", compile_options={"backend": counting_backend(graphs)})
    losses, grads = run_fast(step, data, lrs)
    assert len(graphs) == 1 and step.fallbacks == 1  # forward + loss as one graph, compiled once
    torch.testing.assert_close(losses, ref_losses, rtol=1e-6, atol=0)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    assert_same_model(model, ref_model, atol=1e-6)


def test_compile_nhwc_one_step_within_rounding() -> None:
    """NHWC (the CPU default): the compiled backward rounds differently. One Adam step, compared by the size of
    the update (``update``): Adam divides near-zero gradients by their own magnitude. (Over several steps this
    64x32 toy net amplifies rounding through BatchNorm over a few pixels: eager NCHW against eager NHWC alone differs
    by 10% in the second step's gradients.)"""
    torch._dynamo.reset()
    diff = step_difference(
        lambda: tiny().to(memory_format=torch.channels_last),
        KeypointMSELoss(),
        partial(torch.optim.Adam, lr=1e-3),
        batches([3]),
        "compile",
        channels_last=True,
        compile_options={"backend": "aot_eager"},
    )
    assert diff.loss < 1e-6 and diff.grad < 1e-5 and diff.update < 1e-3 and diff.buffers < 1e-6, diff


class SkipsReplays:
    """A broken capture: runs the body for its warm-up only, and its replay does nothing."""

    def __call__(self, body):
        body()
        return lambda: None


def test_step_difference_is_zero_for_the_same_computation_and_sees_a_broken_one() -> None:
    sgd = partial(torch.optim.SGD, lr=0.1)
    same = step_difference(tiny, KeypointMSELoss(), sgd, batches([2, 2]), "cuda_graph", capture=RerunCapture(1))
    assert (same.loss, same.grad, same.weights, same.update, same.buffers) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert same.text().startswith("loss 0.0e+00, grads 0.0e+00")
    broken = step_difference(tiny, KeypointMSELoss(), sgd, batches([2, 2]), "cuda_graph", capture=SkipsReplays())
    # step 2 reuses step 1's loss and gradients; the running statistics never move
    assert broken.loss > 1e-3 and broken.grad > 1e-2 and broken.update > 1e-2 and broken.buffers > 1e-3, broken


def test_compile_falls_back_for_other_shapes_without_recompiling() -> None:
    torch._dynamo.reset()
    model = tiny()
    graphs: list = []
    step = TrainStep(
        model, KeypointMSELoss(), "compile", compile_options={"backend": counting_backend(graphs, "eager")}
    )
    a, b = batches([2, 1])
    loss_a = step(*a)
    loss_b = step(*b)
    step(*a)
    assert len(graphs) == 1 and step.fallbacks == 1 and loss_a.requires_grad and loss_b.requires_grad
    torch.testing.assert_close(loss_b, KeypointMSELoss()(model(b[0]), b[1], b[2]))


def test_bad_modes_and_options_are_named() -> None:
    model = tiny()
    with pytest.raises(ValueError, match="step_mode must be one of eager, compile, cuda_graph; got 'graph'"):
        TrainStep(model, KeypointMSELoss(), "graph")
    with pytest.raises(ValueError, match="compile_options apply to step_mode=compile only"):
        TrainStep(model, KeypointMSELoss(), "eager", compile_options={"mode": "default"})
    assert autocast_dtype("bf16-mixed") is torch.bfloat16 and autocast_dtype("32-true") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_cuda_graph_without_cuda_says_so() -> None:
    with pytest.raises(RuntimeError, match="step_mode=cuda_graph needs a CUDA GPU"):
        CudaGraphCapture()
    step = TrainStep(tiny(), KeypointMSELoss(), "cuda_graph")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        step(*batches([1])[0])


@pytest.mark.slow
def test_compile_inductor_equals_eager() -> None:
    """The real compiler (inductor, C++ on CPU): two to three minutes of compilation on two cores. One Adam step,
    as in the NHWC test: inductor fuses and reorders, so it rounds differently."""
    torch._dynamo.reset()
    diff = step_difference(tiny, KeypointMSELoss(), partial(torch.optim.Adam, lr=1e-3), batches([3]), "compile")
    assert diff.loss < 1e-6 and diff.grad < 1e-5 and diff.update < 1e-3 and diff.buffers < 1e-6, diff


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_cuda_graph_on_gpu_equals_eager(autocast, monkeypatch) -> None:
    """The real capture: fp32 (TF32 off) and bf16-mixed; one capture, two replays, a fallback, LR changes.

    The same kernels run in both (deterministic cuDNN), but the upsampling's backward adds with atomics, and the
    gradients of convolutions followed by BatchNorm cancel (on CPU, NCHW against NHWC alone differs by 1e-3 in
    them): the gradient bound is loose; the loss, the weights' update and the running statistics are the sharp
    checks (a stale replay misses them by orders of magnitude: ``SkipsReplays`` above)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    sgd = partial(torch.optim.SGD, lr=1e-3, momentum=0.9)
    diff = step_difference(lambda: tiny().cuda(), KeypointMSELoss(), sgd, batches([4, 4, 4, 3], device="cuda",
                           hw=(128, 96)), "cuda_graph", lrs=[1e-3, 5e-4, 1e-3, 1e-3], autocast=autocast)  # fmt: skip
    scale = 1.0 if autocast is None else 20.0
    assert diff.loss < 1e-5 * scale and diff.update < 2e-2 * scale and diff.buffers < 1e-5 * scale, diff
    assert diff.grad < (0.1 if autocast is None else 0.5), diff

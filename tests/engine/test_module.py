"""TopdownPoseModule on fake batches: LR schedule, NaN guard, evaluation step, checkpoint config round trip."""

from __future__ import annotations

from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from wbpose.build import build_module
from wbpose.checkpoints import CONFIG_KEY, RAW_CONFIG_KEY, load_checkpoint
from wbpose.codecs import MSRAHeatmap, flip_test_average
from wbpose.engine.lr_schedule import WarmupMultiStep, warmup_multistep_scheduler
from wbpose.engine.module import TopdownPoseModule
from wbpose.keypoints import FLIP_INDICES
from wbpose.losses import KeypointMSELoss
from wbpose.models import build_pose_model

H, W = 64, 32  # smallest HRNet input (multiples of 32)


class FakeSet(Dataset):
    """Random crops and targets with the dataset's sample keys; ``nan_at`` poisons one sample's target."""

    def __init__(self, n: int = 8, nan_at: int | None = None) -> None:
        self.n, self.nan_at = n, nan_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        heatmaps = torch.rand(133, H // 4, W // 4, generator=g)
        if i == self.nan_at:
            heatmaps[0, 0, 0] = float("nan")
        return {
            "image": torch.randn(3, H, W, generator=g),
            "heatmaps": heatmaps,
            "weights": torch.ones(133),
            "center_xy": torch.tensor([100.0 + i, 50.0]),
            "scale_wh": torch.tensor([40.0, 80.0]),
            "instance_id": torch.tensor(i),
            "image_id": torch.tensor(i // 2),
            "bbox_score": torch.tensor(0.9),
        }


class RecordingMetric:
    """Stands in for CocoWholeBodyMetric: records ``update`` calls, returns fixed numbers."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def update(self, *args: torch.Tensor) -> None:
        self.calls.append(args)

    def compute(self) -> dict[str, float]:
        return {"val/wholebody_ap": 0.5, "val/body_ap": 0.25}

    def reset(self) -> None:
        pass


def make_module(lr: float = 1e-3, scheduler=None, metric=None, flip_test: bool = True) -> TopdownPoseModule:
    torch.manual_seed(0)
    return TopdownPoseModule(
        model=build_pose_model("tiny"),
        codec=MSRAHeatmap(image_hw=(H, W), heatmap_hw=(H // 4, W // 4), sigma=1.0),
        loss=KeypointMSELoss(),
        optimizer=partial(torch.optim.Adam, lr=lr),
        scheduler=scheduler,
        val_metric=metric,
        flip_test=flip_test,
        num_vis_images=2,
    )


def tiny_trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_warmup_multistep_factors() -> None:
    f = WarmupMultiStep(steps_per_epoch=10, warmup_iters=500, warmup_ratio=0.001, milestones=[170, 200])
    assert f(0) == pytest.approx(0.001)
    assert f(250) == pytest.approx(0.001 + 0.999 * 0.5)
    assert f(500) == 1.0 and f(1699) == 1.0
    assert f(1700) == pytest.approx(0.1) and f(1999) == pytest.approx(0.1)
    assert f(2000) == pytest.approx(0.01)
    assert WarmupMultiStep(10, warmup_iters=0)(0) == 1.0  # 0.x W48 384x288: no warm-up


def test_scheduler_state_round_trip() -> None:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_multistep_scheduler(opt, steps_per_epoch=3, warmup_iters=4, milestones=[2])
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = warmup_multistep_scheduler(opt2, steps_per_epoch=99, warmup_iters=0, milestones=[])
    sched2.load_state_dict(state)
    assert sched2.lr_lambdas[0].steps_per_epoch == 3 and sched2.last_epoch == 5
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1)  # step 6 = epoch 2 >= milestone 2


def test_fit_steps_lr_per_iteration(tmp_path) -> None:
    sched = partial(warmup_multistep_scheduler, warmup_iters=4, warmup_ratio=0.25, milestones=[1], gamma=0.1)
    module = make_module(lr=1e-3, scheduler=sched)
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(module, DataLoader(FakeSet(8), batch_size=2))  # 4 steps per epoch
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(1e-3 * (0.25 + 0.75 * 3 / 4))  # step 3, still warming up, epoch 0
    assert trainer.lr_scheduler_configs[0].interval == "step"
    assert trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0].steps_per_epoch == 4


def test_nan_loss_names_the_step(tmp_path) -> None:
    module = make_module()
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    loader = DataLoader(FakeSet(8, nan_at=6), batch_size=2, shuffle=False)  # batch 3 is poisoned
    with pytest.raises(FloatingPointError, match="global step 3"):
        trainer.fit(module, loader)


def test_validation_feeds_metric_in_image_pixels(tmp_path) -> None:
    metric = RecordingMetric()
    module = make_module(metric=metric)
    trainer = tiny_trainer(tmp_path)
    out = trainer.validate(module, DataLoader(FakeSet(6), batch_size=4), verbose=False)
    assert out[0]["val/wholebody_ap"] == 0.5 and out[0]["val/body_ap"] == 0.25
    assert len(metric.calls) == 2
    ids, image_ids, kpts, scores, bbox_scores, areas = metric.calls[0]
    assert kpts.shape == (4, 133, 2) and scores.shape == (4, 133)
    assert torch.equal(ids, torch.arange(4)) and torch.equal(image_ids, torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(areas, torch.full((4,), 40.0 * 80.0))
    # the keypoints are the decoded flip-averaged heatmaps mapped to image pixels, written out here from the
    # network alone (not the module's flip/mapping code): the mirrored image's heatmaps flipped back, left/right
    # channels swapped, shifted one column right (MMPose's shift_heatmap; column 0 keeps its value), averaged
    batch = next(iter(DataLoader(FakeSet(6), batch_size=4)))
    with torch.no_grad():
        model = module.model.eval()
        plain = model(batch["image"])
        back = model(batch["image"].flip(-1)).flip(-1)[:, list(FLIP_INDICES)]
        back = torch.cat([back[..., :1], back[..., :-1]], -1)
    crop, _ = MSRAHeatmap(image_hw=(H, W), heatmap_hw=(H // 4, W // 4), sigma=1.0).decode((plain + back) / 2)
    scale = batch["scale_wh"][:, None]
    expected = crop / torch.tensor([W, H]) * scale + batch["center_xy"][:, None] - scale / 2
    assert torch.allclose(kpts, expected, atol=1e-5)
    assert (crop[..., 0].max() - crop[..., 0].min()) > 4  # keypoints spread over the crop: a real check


def test_flip_test_changes_heatmaps() -> None:
    module = make_module().eval()
    images = torch.randn(2, 3, H, W)
    with torch.no_grad():
        plain = module.model(images)
        flipped = module.predict_heatmaps(images)
    assert (plain - flipped).abs().max() > 1e-2 * plain.abs().max()
    module.flip_test = False
    with torch.no_grad():
        assert torch.equal(module.predict_heatmaps(images), plain)


def test_flip_test_is_one_batched_pass_equal_to_two() -> None:
    """In eval mode the crops and their mirrors go through the network as one batch (BatchNorm on its running
    statistics: batch-independent), giving the two-pass heatmaps; in training mode (batch statistics) two passes."""
    module = make_module()
    with torch.no_grad():  # running statistics away from their initial 0/1, so that eval-mode BatchNorm matters
        module.model.train()(torch.randn(8, 3, H, W) * 2 + 0.5)
    module.eval()
    calls = []
    module.model.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[0]))
    images = torch.randn(3, 3, H, W)
    with torch.no_grad():
        one_pass = module.predict_heatmaps(images)
        assert calls == [6]  # one pass over the three crops and their three mirrors
        plain, mirrored = module.model(images), module.model(images.flip(-1))
        two_pass = flip_test_average(plain, mirrored, module.flip_indices, shift=True)
    torch.testing.assert_close(one_pass, two_pass, atol=1e-6, rtol=0)
    assert (one_pass - plain).abs().max() > 1e-2 * plain.abs().max()  # the mirrors did change the heatmaps
    module.train()
    calls.clear()
    with torch.no_grad():
        trained = module.predict_heatmaps(images)
        assert calls == [3, 3]  # training mode: two passes, so BatchNorm's batch statistics do not mix them
        expected = flip_test_average(module.model(images), module.model(images.flip(-1)), module.flip_indices)
    torch.testing.assert_close(trained, expected, atol=1e-6, rtol=0)


def test_checkpoint_carries_config_and_rebuilds(make_cfg, tmp_path) -> None:
    cfg = make_cfg(["model=hrnet_tiny", "data=synthetic", "codec=dark"])
    module = build_module(cfg, with_metrics=False)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint[CONFIG_KEY]["model"]["net"]["arch"] == "tiny"
    assert checkpoint[CONFIG_KEY]["paths"]["output_dir"] == str(tmp_path / "run")  # resolved
    assert checkpoint[RAW_CONFIG_KEY]["data"]["data_root"] == "${paths.data_dir}/synthetic"  # unresolved
    path = tmp_path / "m.ckpt"
    torch.save(checkpoint, path)
    rebuilt = TopdownPoseModule.from_checkpoint(path).eval()
    images = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        assert torch.allclose(rebuilt(images), module.eval()(images))
    assert type(rebuilt.codec).__name__ == "DarkHeatmap"

    with pytest.raises(ValueError, match="arch='w32' was requested, but the weights are HRNet-tiny"):
        load_checkpoint(path, arch="w32")


def test_foreign_state_dict_names_mismatch(make_cfg, tmp_path) -> None:
    cfg = make_cfg(["model=hrnet_tiny", "data=synthetic"])
    module = build_module(cfg, with_metrics=False)
    path = tmp_path / "bad.ckpt"
    wrong = {f"model.{k}": v for k, v in build_pose_model("tiny", num_keypoints=17).state_dict().items()}
    torch.save({"state_dict": wrong, CONFIG_KEY: module.wbpose_config}, path)
    with pytest.raises(ValueError, match="shape mismatches"):
        TopdownPoseModule.from_checkpoint(path)


def test_init_weights_imagenet_and_pose_backbone(make_cfg, tmp_path) -> None:
    donor = build_pose_model("tiny")
    for p in donor.parameters():
        torch.nn.init.normal_(p)
    # an ImageNet-style file: unprefixed backbone keys plus classifier extras (ignored)
    imagenet = {k: v for k, v in donor.backbone.state_dict().items()}
    imagenet["classifier.weight"] = torch.zeros(1000, 8)
    torch.save(imagenet, tmp_path / "imagenet.pth")
    cfg = make_cfg(["model=hrnet_tiny", "data=synthetic", f"model.pretrained={tmp_path / 'imagenet.pth'}"])
    module = build_module(cfg, with_metrics=False)
    for k, v in donor.backbone.state_dict().items():
        torch.testing.assert_close(module.model.backbone.state_dict()[k], v)

    # a pose checkpoint of ours (model.-prefixed): only the backbone is taken, the head keeps its init
    torch.save({"state_dict": {f"model.{k}": v for k, v in donor.state_dict().items()}}, tmp_path / "pose.ckpt")
    cfg = make_cfg(["model=hrnet_tiny", "data=synthetic", f"model.init.pretrained={tmp_path / 'pose.ckpt'}"])
    module = build_module(cfg, with_metrics=False)
    torch.testing.assert_close(module.model.backbone.conv1.weight, donor.backbone.conv1.weight)
    assert not torch.allclose(module.model.head.final_layer.weight, donor.head.final_layer.weight)

    cfg = make_cfg(["model=hrnet_tiny", "data=synthetic", f"model.pretrained={tmp_path / 'nope.pth'}"])
    with pytest.raises(FileNotFoundError, match="model.pretrained="):
        build_module(cfg, with_metrics=False)
    w32_file = tmp_path / "w32.ckpt"
    w32 = build_pose_model("w32")
    torch.save({"state_dict": {f"model.{k}": v for k, v in w32.state_dict().items()}}, w32_file)
    cfg = make_cfg(["model=hrnet_tiny", "data=synthetic", f"model.init.pretrained={w32_file}"])
    with pytest.raises(ValueError, match="w32"):
        build_module(cfg, with_metrics=False)


def test_channels_last_gives_the_same_heatmaps() -> None:
    """The NHWC option changes the memory layout only: same heatmaps (to float tolerance) as the default."""
    import torch

    from wbpose.engine.module import TopdownPoseModule
    from wbpose.losses import KeypointMSELoss
    from wbpose.models import build_pose_model

    torch.manual_seed(0)
    model = build_pose_model("tiny").eval()
    ref = TopdownPoseModule(model, codec=None, loss=KeypointMSELoss(), optimizer=torch.optim.Adam, flip_test=False)
    images = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        expected = ref(images)
        nhwc = TopdownPoseModule(model, None, KeypointMSELoss(), torch.optim.Adam, channels_last=True)
        got = nhwc(images)
    assert nhwc.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("setting", ["auto", False])
def test_channels_last_auto_resolves_on_the_trainer_device(tmp_path, setting) -> None:
    """'auto' (the default) turns NHWC on for a CPU trainer before the optimiser exists; False keeps NCHW."""
    module = make_module()
    module.channels_last = setting
    weight = module.model.backbone.conv1.weight
    assert weight.is_contiguous()  # built NCHW; nothing happens before the trainer says where it runs
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, DataLoader(FakeSet(4), batch_size=2))
    nhwc = setting == "auto"
    assert module.channels_last is nhwc
    assert module.model.backbone.conv1.weight is weight  # same Parameter: the optimiser updated the live weights
    assert weight.is_contiguous(memory_format=torch.channels_last) is nhwc
    state = trainer.optimizers[0].state[weight]["exp_avg"]
    assert state.is_contiguous(memory_format=torch.channels_last) is nhwc


def test_channels_last_rejects_other_values() -> None:
    with pytest.raises(ValueError, match="channels_last"):
        TopdownPoseModule(build_pose_model("tiny"), None, KeypointMSELoss(), torch.optim.Adam, channels_last="yes")


class BadRowSet(FakeSet):
    """FakeSet whose samples carry ``bad_index`` (as a dataset with ``on_bad_image`` set): ``bad`` are the indices
    whose image "failed"."""

    def __init__(self, n: int, bad: set[int]) -> None:
        super().__init__(n)
        self.bad = bad

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**super().__getitem__(i), "bad_index": torch.tensor(i if i in self.bad else -1)}


def test_bad_images_are_counted_without_a_datamodule(tmp_path, caplog) -> None:
    """Plain loaders (no datamodule, no file names): training counts distinct bad indices, names them by index and
    has no budget to enforce (a fraction of an unknown set); evaluation drops their rows from the metric."""
    module = make_module()
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    with caplog.at_level("WARNING", logger="wbpose.engine.bad_images"):
        trainer.fit(module, DataLoader(BadRowSet(8, {1, 6}), batch_size=4))
    assert float(trainer.callback_metrics["train/bad_images"]) == 2  # two epochs, the same two images
    assert caplog.text.count("instance index 1 (no dataset to name its file)") == 1
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    restored = make_module()
    restored.on_load_checkpoint(checkpoint)
    assert restored.bad_image_ledger.train == {1: 1, 6: 6}  # a resumed run keeps counting towards the same budget

    metric = RecordingMetric()
    module = make_module(metric=metric)
    out = tiny_trainer(tmp_path).validate(module, DataLoader(BadRowSet(6, {2, 4, 5}), batch_size=4), verbose=False)
    assert out[0]["val/bad_images"] == 3 and out[0]["val/wholebody_ap"] == 0.5
    assert [c[0].tolist() for c in metric.calls] == [[0, 1, 3]]  # batch 2 (rows 4, 5) is all bad: no update


class GradNormRecorder(pl.Callback):
    """The total gradient norm each optimiser step sees before Lightning clips it."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def fit_weights(tmp_path, step_mode: str, precision: str = "32-true", clip: float | None = None, **module_attrs):
    """Train the tiny module for one epoch of 5 samples in batches of 2 (2, 2, then a partial 1) with a warm-up
    schedule (the LR changes every step), NCHW; return the module, its state after and the gradient norms."""
    sched = partial(warmup_multistep_scheduler, warmup_iters=3, warmup_ratio=0.25, milestones=[1], gamma=0.1)
    module = make_module(lr=1e-3, scheduler=sched, flip_test=False)
    module.channels_last = False
    module.step_mode = step_mode
    for name, value in module_attrs.items():
        setattr(module, name, value)
    norms = GradNormRecorder()
    trainer = tiny_trainer(tmp_path / step_mode, max_epochs=1, limit_val_batches=0, precision=precision,
                           gradient_clip_val=clip, callbacks=[norms])  # fmt: skip
    trainer.fit(module, DataLoader(FakeSet(5), batch_size=2))
    assert trainer.global_step == 3
    return module, {k: v.clone() for k, v in module.model.state_dict().items()}, norms.norms


@pytest.mark.parametrize(("step_mode", "precision", "clip"), [("cuda_graph", "bf16-mixed", 0.05),
                                                              ("compile", "32-true", None)])  # fmt: skip
def test_fast_step_modes_train_like_eager(tmp_path, step_mode, precision, clip) -> None:
    """Through Lightning (automatic optimisation, LR schedule, gradient clipping, the last partial batch): the same
    gradients, weights and BatchNorm statistics as the eager step. ``cuda_graph`` runs its logic through the CPU
    stand-in, ``compile`` through torch.compile's graph capture with the eager backend (one graph, compiled once)."""
    from wbpose.engine.fast_step import RerunCapture

    _, expected, expected_norms = fit_weights(tmp_path, "eager", precision, clip)
    if step_mode == "cuda_graph":
        capture = RerunCapture(warmup=1)
        module, got, norms = fit_weights(tmp_path, step_mode, precision, clip, graph_capture=capture)
        assert capture.replays == 2
    else:
        torch._dynamo.reset()
        graphs: list = []
        backend = torch._dynamo.lookup_backend("eager")
        options = {"backend": lambda gm, inputs: graphs.append(gm) or backend(gm, inputs)}
        module, got, norms = fit_weights(tmp_path, step_mode, precision, clip, compile_options=options)
        assert len(graphs) == 1
    assert module._train_step.fallbacks == 1
    assert norms == pytest.approx(expected_norms, rel=1e-6)
    if clip is not None:
        assert min(norms) > 2 * clip  # every step was clipped
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-7, msg=name)


def test_cuda_graph_mode_names_what_it_cannot_serve(tmp_path) -> None:
    from wbpose.engine.fast_step import RerunCapture

    module = make_module()
    module.step_mode = "cuda_graph"
    with pytest.raises(ValueError, match="the trainer runs on cpu, CUDA graphs need a CUDA GPU"):
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(module, DataLoader(FakeSet(2), batch_size=2))
    module.graph_capture = RerunCapture()
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0, accumulate_grad_batches=2)
    with pytest.raises(ValueError, match="accumulate_grad_batches=2: every replay overwrites"):
        trainer.fit(module, DataLoader(FakeSet(2), batch_size=2))
    with pytest.raises(ValueError, match="step_mode must be one of eager, compile, cuda_graph"):
        TopdownPoseModule(build_pose_model("tiny"), None, KeypointMSELoss(), step_mode="graphs")
    with pytest.raises(ValueError, match="compile_options apply to step_mode=compile only"):
        TopdownPoseModule(build_pose_model("tiny"), None, KeypointMSELoss(), compile_options={"mode": "default"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("step_mode", ["cuda_graph", "compile"])
def test_fast_step_modes_train_like_eager_on_gpu(tmp_path, step_mode, monkeypatch) -> None:
    """The real capture and compiler under Lightning on a GPU: two steps of SGD (fp32, TF32 off, deterministic
    cuDNN; the upsampling's backward still adds with atomics) end at the eager weights; ``compile`` (inductor) to
    rounding."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    sgd = partial(torch.optim.SGD, lr=0.05, momentum=0.9)
    states = {}
    for mode in ("eager", step_mode):
        torch._dynamo.reset()
        torch.manual_seed(0)
        module = TopdownPoseModule(build_pose_model("tiny"), None, KeypointMSELoss(), sgd, step_mode=mode)
        trainer = pl.Trainer(accelerator="gpu", devices=1, max_steps=2, limit_val_batches=0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             default_root_dir=tmp_path / mode)  # fmt: skip
        trainer.fit(module, DataLoader(FakeSet(4), batch_size=2))
        states[mode] = {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}
    atol = 1e-5 if step_mode == "cuda_graph" else 1e-4
    for name, value in states["eager"].items():
        torch.testing.assert_close(states[step_mode][name], value, rtol=1e-3, atol=atol, msg=name)

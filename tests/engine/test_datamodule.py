"""WholeBodyDataModule: loaders and batch shapes, DDP samplers (train sharded, val unpadded), setup errors."""

from __future__ import annotations

import types
from pathlib import Path

import cv2
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from helpers.annotations import write_root
from wbpose.codecs import MSRAHeatmap
from wbpose.data.augment import RandomHalfBody
from wbpose.data.sampling import EpochBatchSampler, ResumableDataLoader
from wbpose.data.workers import thread_settings
from wbpose.engine.datamodule import UnpaddedDistributedSampler, WholeBodyDataModule, WorkerInit

CODEC = MSRAHeatmap((64, 48), (16, 12), 1.0)


def make_dm(root: Path, **kw) -> WholeBodyDataModule:
    kw = {"image_hw": (64, 48), "codec": CODEC, "batch_size": 3, "val_batch_size": 2, "num_workers": 0, **kw}
    return WholeBodyDataModule(root, pin_memory=False, **kw)


def test_loaders_yield_batches(tmp_path: Path) -> None:
    write_root(tmp_path)
    dm = make_dm(tmp_path)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 3, 64, 48) and batch["image"].dtype == torch.float32
    assert batch["heatmaps"].shape == (3, 133, 16, 12)
    assert batch["weights"].shape == batch["visible"].shape == (3, 133)
    assert batch["keypoints_xy"].shape == (3, 133, 2)
    assert batch["instance_id"].dtype == torch.int64 and batch["instance_id"].shape == (3,)
    val = list(dm.val_dataloader())
    assert [b["image"].shape[0] for b in val] == [2, 1]  # 3 person detections, batch 2
    assert torch.cat([b["instance_id"] for b in val]).tolist() == [0, 2, 3]
    assert set(val[0]) == {"image", "center_xy", "scale_wh", "instance_id", "image_id", "bbox_score", "bad_index"}
    assert val[0]["bad_index"].tolist() == [-1, -1]  # no bad image (data.bad_images)
    assert dm.val_ann_file == str(tmp_path / "annotations/coco_wholebody_val_v1.0.json")
    train = dm.train_dataloader()  # one process: a shuffled shard of one, from a loader that saves its place
    assert isinstance(train, ResumableDataLoader) and isinstance(train.batch_sampler, EpochBatchSampler)
    assert train.batch_sampler.sampler.shuffle and train.batch_sampler.sampler.num_replicas == 1
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
    assert len(list(dm.test_dataloader())) == 2


def test_val_with_gt_boxes_and_score_threshold(tmp_path: Path) -> None:
    write_root(tmp_path)
    gt = make_dm(tmp_path, val_bbox_source="gt")
    gt.setup("validate")
    assert sorted(gt.val_dataset.instances.instance_ids.tolist()) == [1, 2, 3, 8]
    thr = make_dm(tmp_path, det_score_thr=0.3)
    thr.setup("validate")
    assert len(thr.val_dataset) == 2 and thr.train_dataset is None


@pytest.mark.parametrize("n", [0, 1, 5, 7, 10])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_unpadded_sampler_covers_each_index_once(n: int, world: int) -> None:
    data = list(range(n))
    parts = [list(UnpaddedDistributedSampler(data, world, r)) for r in range(world)]
    assert sorted(i for p in parts for i in p) == data
    assert [len(UnpaddedDistributedSampler(data, world, r)) for r in range(world)] == [len(p) for p in parts]
    assert all(p == data[r::world] for r, p in enumerate(parts))


def test_ddp_samplers(tmp_path: Path) -> None:
    """Under a 2-process trainer the val loader shards without padding and the train loader shuffles per rank."""
    write_root(tmp_path)
    dm = make_dm(tmp_path)
    dm.trainer = types.SimpleNamespace(
        world_size=2, global_rank=1, distributed_sampler_kwargs={"num_replicas": 2, "rank": 1}
    )
    val = dm.val_dataloader()
    assert isinstance(val.sampler, UnpaddedDistributedSampler)  # a DistributedSampler: Lightning keeps it
    assert list(val.sampler) == [1] and val.sampler.rank == 1
    train = dm.train_dataloader().batch_sampler
    assert isinstance(train, EpochBatchSampler)
    assert isinstance(train.sampler, DistributedSampler) and train.sampler.shuffle
    assert train.sampler.num_replicas == 2 and train.sampler.rank == 1 and len(train.sampler) == 2


def test_synthetic_root_is_generated_when_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_generate(root: str, num_train: int, num_val: int, seed: int) -> None:
        calls.append((root, num_train, num_val, seed))
        write_root(Path(root))

    monkeypatch.setattr("wbpose.engine.datamodule.generate_dataset", fake_generate)
    dm = make_dm(tmp_path / "syn", synthetic={"num_train": 4, "num_val": 2, "seed": 5})
    dm.prepare_data()
    dm.prepare_data()  # files exist now: not generated again
    assert calls == [(str(tmp_path / "syn"), 4, 2, 5)]
    dm.setup("fit")
    assert len(dm.train_dataset) == 4


def test_with_the_synthetic_generator(synthetic_root: Path) -> None:
    codec = MSRAHeatmap((128, 96), (32, 24), 1.0)
    dm = WholeBodyDataModule(synthetic_root, (128, 96), codec, batch_size=4, num_workers=0, pin_memory=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["heatmaps"].shape == (4, 133, 32, 24)
    assert next(iter(dm.val_dataloader()))["image"].shape[1:] == (3, 128, 96)


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.data_root=/path/to/coco.*data=synthetic"):
        WholeBodyDataModule(None)
    dm = make_dm(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"coco_wholebody_train_v1\.0\.json.*data\.data_root="):
        dm.setup("fit")
    write_root(tmp_path / "root")
    with pytest.raises(ValueError, match="codec"):
        make_dm(tmp_path / "root", codec=None).setup("fit")
    with pytest.raises(ValueError, match="image_hw"):
        make_dm(tmp_path / "root", image_hw=(256, 192))
    with pytest.raises(ValueError, match="val_bbox_source"):
        make_dm(tmp_path / "root", val_bbox_source="boxes")


def test_photometric_option(tmp_path: Path) -> None:
    write_root(tmp_path)
    photometric = [{"type": "ColorJitter", "brightness": 0.4, "p": 1.0}]
    dm = make_dm(tmp_path, photometric=photometric, geometric={"half_body_mode": "0.x"})
    dm.setup("fit")
    assert dm.train_dataset.transforms.transforms[1].mode == "0.x"  # the one key given; the rest are defaults
    assert dm.geometric.rotate_factor == 80.0
    assert dm.train_dataset.photometric is not None
    assert next(iter(dm.train_dataloader()))["image"].shape == (3, 3, 64, 48)
    # the half-body rule asked for reaches the training pipeline (and the default stays 1.x)
    half_body = [t for t in dm.train_dataset.transforms.transforms if isinstance(t, RandomHalfBody)]
    assert [t.mode for t in half_body] == ["0.x"]
    default = make_dm(tmp_path)
    default.setup("fit")
    assert [t.mode for t in default.train_dataset.transforms.transforms if isinstance(t, RandomHalfBody)] == ["1.x"]


def test_evaluation_prepares_the_val_files_only(tmp_path: Path) -> None:
    from wbpose.data import cache

    write_root(tmp_path)
    folder = tmp_path / "cache"
    dm = make_dm(tmp_path, cache_dir=folder)
    dm.prepare_train = False  # as wbpose.app.evaluate sets it
    try:
        dm.prepare_data()
        entries = sorted(p.name.split(".")[0] for p in folder.iterdir() if p.is_dir())
        assert entries == ["COCO_val2017_detections_AP_H_56_person", "coco_wholebody_val_v1"]
        make_dm(tmp_path, cache_dir=folder).prepare_data()  # training caches the train file as well
        assert len([p for p in folder.iterdir() if p.is_dir()]) == 3
    finally:
        cache.set_cache_dir(None)


def test_synthetic_evaluation_needs_only_the_val_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation (``prepare_train=False``) reads the val files of a synthetic root without generating anything
    when the train json is absent; training would generate (into an empty or marked root only)."""
    calls = []
    monkeypatch.setattr("wbpose.engine.datamodule.generate_dataset", lambda root, **kw: calls.append(root))
    write_root(tmp_path)
    dm = make_dm(tmp_path, synthetic={"num_train": 4, "num_val": 2, "seed": 5})
    Path(dm.train_ann_file).unlink()
    dm.prepare_train = False
    dm.prepare_data()
    assert calls == []
    dm.prepare_train = True
    dm.prepare_data()
    assert calls == [str(tmp_path)]


class ThreadProbe(torch.utils.data.Dataset):
    """One item: the thread settings of the process that builds it (a loader worker)."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> dict:
        return thread_settings()


def test_loader_workers_run_with_one_thread(tmp_path: Path) -> None:
    """The loaders' worker_init_fn takes OpenCV's pool (one thread per core, inherited by a forked worker) and
    torch down to one thread inside the worker; without it the worker keeps the parent's OpenCV threads."""
    write_root(tmp_path)
    dm = make_dm(tmp_path, num_workers=1, prefetch_factor=3)
    dm.setup("fit")
    val, train = dm.val_dataloader(), dm.train_dataloader()
    assert isinstance(val.worker_init_fn, WorkerInit) and isinstance(train.worker_init_fn, WorkerInit)
    assert val.prefetch_factor == train.prefetch_factor == 3 and val.persistent_workers
    assert make_dm(tmp_path).val_dataloader().worker_init_fn is None  # no workers, nothing to set up
    before = cv2.getNumThreads()
    cv2.setNumThreads(4)
    try:
        inside = next(
            iter(DataLoader(ThreadProbe(), batch_size=None, num_workers=1, worker_init_fn=val.worker_init_fn))
        )
        plain = next(iter(DataLoader(ThreadProbe(), batch_size=None, num_workers=1)))
    finally:
        cv2.setNumThreads(before)
    assert inside["cv2"] == 1 and inside["torch"] == 1 and inside["OMP_NUM_THREADS"] == "1"
    assert plain["cv2"] == 4  # what a worker runs with otherwise
    with pytest.raises(ValueError, match="prefetch_factor"):
        make_dm(tmp_path, prefetch_factor=0)


def test_decode_on_gpu_gives_the_cpu_pipelines_batches(tmp_path: Path) -> None:
    """decode_on=gpu (here on CPU tensors: the main process makes the crops in transfer_batch_to_device) gives the
    batch of decode_on=cpu: the same keys, heatmaps and weights bit for bit, crops within one grey level."""
    write_root(tmp_path)
    cpu, gpu = make_dm(tmp_path), make_dm(tmp_path, decode_on="gpu", num_workers=1, prefetch_factor=1)
    assert gpu.device_pixels is not None and cpu.device_pixels is None
    for loader in ("train_dataloader", "val_dataloader"):
        expected = next(iter(getattr(cpu, loader)()))
        encoded = next(iter(getattr(gpu, loader)()))
        assert "image" not in encoded and encoded["jpeg_data"].dtype == torch.uint8
        got = gpu.transfer_batch_to_device(gpu.on_before_batch_transfer(encoded, 0), torch.device("cpu"), 0)
        assert set(got) == set(expected) | {"bad_rows"}
        assert got["image"].is_contiguous(memory_format=torch.channels_last)
        grey = (got["image"] - expected["image"]).abs() * torch.tensor([58.395, 57.12, 57.375])[:, None, None]
        assert float((grey <= 1 + 1e-3).float().mean()) >= 0.999
        for key in set(expected) - {"image"}:
            assert torch.equal(got[key], expected[key]), key
    assert cpu.transfer_batch_to_device({"x": torch.ones(1)}, torch.device("cpu"), 0)["x"].tolist() == [1.0]


def test_decode_on_gpu_trains_and_validates_through_the_trainer(tmp_path: Path) -> None:
    """The Lightning path: the batches reach the module as crops (the module never sees the encoded keys)."""
    from functools import partial

    import pytorch_lightning as pl

    from wbpose.engine.module import TopdownPoseModule
    from wbpose.losses import KeypointMSELoss
    from wbpose.models import build_pose_model

    write_root(tmp_path)
    codec = MSRAHeatmap((64, 32), (16, 8), 1.0)
    dm = WholeBodyDataModule(tmp_path, (64, 32), codec, batch_size=2, val_batch_size=2, num_workers=0,
                             pin_memory=False, decode_on="gpu", image_dtype="bfloat16")  # fmt: skip
    seen = []
    module = TopdownPoseModule(build_pose_model("tiny"), codec, KeypointMSELoss(), optimizer=partial(torch.optim.Adam),
                               num_vis_images=0, flip_test=True)  # fmt: skip
    step = module.training_step
    module.training_step = lambda batch, batch_idx: (seen.append(sorted(batch)), step(batch, batch_idx))[1]
    kw = dict(accelerator="cpu", devices=1, max_steps=1, limit_val_batches=1, logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              num_sanity_val_steps=0, default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="image_dtype=bfloat16 makes bfloat16 crops.*bf16-mixed"):
        pl.Trainer(**kw).fit(module, datamodule=dm)
    trainer = pl.Trainer(precision="bf16-mixed", **kw)
    trainer.fit(module, datamodule=dm)
    trainer.validate(module, datamodule=dm, verbose=False)
    assert seen and "image" in seen[0] and "heatmaps" in seen[0] and "jpeg_data" not in seen[0]


def test_decode_on_gpu_refuses_photometric_augmentation(tmp_path: Path) -> None:
    write_root(tmp_path)
    with pytest.raises(ValueError, match=r"decode_on=gpu cannot run data\.photometric"):
        make_dm(tmp_path, decode_on="gpu", photometric=[{"type": "ColorJitter", "p": 1.0}])
    with pytest.raises(ValueError, match="decode_on"):
        make_dm(tmp_path, decode_on="tpu")
    with pytest.raises(ValueError, match="dtype"):
        make_dm(tmp_path, decode_on="gpu", image_dtype="float16")


def test_workers_come_from_a_fork_server_in_a_gloo_run_only(tmp_path: Path) -> None:
    """Fork by default; a fork server under a gloo process group (a worker forked beside gloo's threads can hang in
    ``fork``), where one worker still serves the training batches (the dataset pickles)."""
    import torch.distributed as dist

    write_root(tmp_path / "root")
    plain = make_dm(tmp_path / "root", num_workers=1)
    assert plain.worker_start_method() is None and "multiprocessing_context" not in plain._loader_kwargs()
    assert make_dm(tmp_path / "root", num_workers=1, worker_start="spawn").worker_start_method() == "spawn"
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        dm = make_dm(tmp_path / "root", num_workers=1, persistent_workers=False)
        assert dm.worker_start_method() == "forkserver"
        assert make_dm(tmp_path / "root", num_workers=0).worker_start_method() is None  # no workers to start
        assert make_dm(tmp_path / "root", num_workers=1, worker_start="fork").worker_start_method() == "fork"
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert loader.multiprocessing_context.get_start_method() == "forkserver"
        assert next(iter(loader))["image"].shape == (3, 3, 64, 48)
    finally:
        dist.destroy_process_group()


def test_an_unknown_worker_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.worker_start must be 'auto' or one of .*'spawn'.*got 'thread'"):
        make_dm(tmp_path, worker_start="thread")

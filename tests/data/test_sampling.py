"""Training order and resume (wbpose.data.sampling): augmentation of (seed, epoch, index) whatever the workers, and a
loader whose saved place in the epoch skips exactly the batches it handed out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from wbpose.codecs import MSRAHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.data.layout import TRAIN_ANN
from wbpose.data.sampling import EpochBatchSampler, ResumableDataLoader


class _Keys(Dataset):
    """Sample = its ``(epoch, index)`` key as a tensor, so a batch shows which samples of which epoch it holds."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[torch.Tensor]:
        return [torch.tensor(key) for key in keys]


def _loader(dataset: Dataset, batch_size: int = 4, workers: int = 0, **sampler_kw) -> ResumableDataLoader:
    sampler = EpochBatchSampler(dataset, batch_size, seed=7, **sampler_kw)
    return ResumableDataLoader(dataset, sampler, num_workers=workers, persistent_workers=workers > 0)


def _epoch(loader: ResumableDataLoader, epoch: int) -> list[torch.Tensor]:
    loader.batch_sampler.sampler.set_epoch(epoch)  # what Lightning calls at every epoch start
    return list(loader)


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    data = _Keys(23)
    a, b = _loader(data), _loader(data)
    first, again = _epoch(a, 3), _epoch(b, 3)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert all((x[:, 0] == 3).all() for x in first)  # every index carries its epoch
    assert sorted(torch.cat(first)[:, 1].tolist()) == list(range(23))
    assert torch.cat(first)[:, 1].tolist() != torch.cat(_epoch(a, 4))[:, 1].tolist()
    shards = [torch.cat(_epoch(_loader(data, num_replicas=2, rank=r), 3))[:, 1].tolist() for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 12 and set(shards[0] + shards[1]) == set(range(23))  # padded by one


@pytest.mark.parametrize("workers", [0, 2])
def test_load_state_dict_skips_exactly_the_consumed_batches(workers: int) -> None:
    data = _Keys(23)
    full = _epoch(_loader(data), 1)  # 6 batches: 5 x 4 + 3
    killed = _loader(data)
    killed.batch_sampler.sampler.set_epoch(1)
    it = iter(killed)
    consumed = [next(it) for _ in range(3)]
    state = killed.state_dict()
    assert state["epoch"] == 1 and state["batches"] == 3 and state["num_batches"] == 6
    assert all(torch.equal(x, y) for x, y in zip(consumed, full))

    resumed = _loader(data, workers=workers)
    resumed.load_state_dict(state)
    it = iter(resumed)  # Lightning: iter() before set_epoch, the first batch after it
    resumed.batch_sampler.sampler.set_epoch(1)
    rest = [next(it)]
    assert resumed.state_dict()["batches"] == 4  # counting goes on: a second resume in this epoch lands right too
    rest += list(it)
    assert len(rest) == 3 and all(torch.equal(x, y) for x, y in zip(rest, full[3:], strict=True))
    assert resumed.state_dict()["batches"] == 6
    assert all(torch.equal(x, y) for x, y in zip(_epoch(resumed, 2), _epoch(_loader(data), 2), strict=True))

    # a state saved after the epoch's last batch: the next epoch starts at its first batch
    end = _loader(data, workers=workers)
    end.load_state_dict({**state, "batches": 6})
    assert all(torch.equal(x, y) for x, y in zip(_epoch(end, 2), _epoch(_loader(data), 2), strict=True))


def test_each_ddp_rank_resumes_its_own_shard_from_rank_0s_state() -> None:
    data = _Keys(23)
    rank0 = _loader(data, num_replicas=2, rank=0)
    rank0.batch_sampler.sampler.set_epoch(5)
    it = iter(rank0)
    next(it), next(it)
    state = rank0.state_dict()  # Lightning saves rank 0's state; every rank loads it
    for rank in (0, 1):
        resumed = _loader(data, num_replicas=2, rank=rank)
        resumed.load_state_dict(state)
        full = _epoch(_loader(data, num_replicas=2, rank=rank), 5)
        rest = _epoch(resumed, 5)
        assert all(torch.equal(x, y) for x, y in zip(rest, full[2:], strict=True))


def test_a_state_for_another_batch_layout_replays_the_epoch() -> None:
    data = _Keys(23)
    loader = _loader(data, batch_size=5)
    with pytest.warns(UserWarning, match="starts again from its first batch"):
        loader.load_state_dict({"epoch": 1, "batches": 2, "num_batches": 6, "batch_size": 4, "num_replicas": 1})
    assert len(_epoch(loader, 1)) == 5


def _train_dataset(root: Path, seed: int = 0) -> CocoWholeBodyDataset:
    codec = MSRAHeatmap((64, 48), (16, 12), 2.0)
    return CocoWholeBodyDataset(
        root / TRAIN_ANN, root / "train2017", (48, 64), codec=codec, transforms=build_train_augmentations(), seed=seed
    )


def test_augmentation_is_the_same_whatever_the_workers_and_new_each_epoch(synthetic_root: Path) -> None:
    """Sample i of epoch e: the same crop with 0 workers, 2 persistent workers or fetched alone; another crop in
    epoch e + 1 (the epoch reaches persistent workers through the indices)."""
    dataset = _train_dataset(synthetic_root, seed=3)
    runs = {}
    for workers in (0, 2):
        loader = _loader(dataset, workers=workers)
        runs[workers] = {epoch: _epoch(loader, epoch) for epoch in (0, 1)}  # the same workers serve both epochs
    for epoch in (0, 1):
        for a, b in zip(runs[0][epoch], runs[2][epoch], strict=True):
            assert a.keys() == b.keys()
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    by_id = [
        {int(i): s for batch in runs[2][epoch] for i, s in zip(batch["instance_id"], batch["scale_wh"], strict=True)}
        for epoch in (0, 1)
    ]
    assert by_id[0].keys() == by_id[1].keys() and len(by_id[0]) == len(dataset)
    changed = sum(not torch.equal(by_id[0][i], by_id[1][i]) for i in by_id[0])
    assert changed == len(dataset)  # the scale is drawn anew for every sample (continuous draw)

    index = 5  # the same sample, fetched on its own in the main process
    alone = dataset.__getitems__([(1, index)])[0]
    sampler = EpochBatchSampler(dataset, 4, seed=7)
    sampler.set_epoch(1)
    position = [i for batch in sampler for _, i in batch].index(index)
    batch = runs[0][1][position // 4]
    for key in alone:
        torch.testing.assert_close(alone[key], batch[key][position % 4], rtol=0, atol=0, msg=key)
    other_seed = _train_dataset(synthetic_root, seed=4).__getitems__([(1, index)])[0]
    assert not torch.equal(other_seed["scale_wh"], alone["scale_wh"])

"""A real two-process CPU DDP run (gloo): ranks update halves with padded duplicates, compute() agrees everywhere."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp_mp

from helpers.annotations import make_wholebody_gt, write_json
from helpers.predictions import detector_like_predictions
from wbpose.metrics import CocoWholeBodyMetric

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, ann_file: str, preds: dict[str, np.ndarray], out_dir: str) -> None:
    torch.set_num_threads(1)  # as DataLoader workers do after a fork
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        n = len(preds["instance_ids"])
        # DistributedSampler(shuffle=False) padding: the list is padded with its head, rank r takes r::world.
        padded = np.concatenate([np.arange(n), np.arange((-n) % WORLD_SIZE + WORLD_SIZE)])
        mine = padded[rank::WORLD_SIZE]
        metric = CocoWholeBodyMetric(ann_file, outfile=Path(out_dir) / "results.json")
        for batch in np.array_split(mine, 2):
            metric.update(**{k: torch.as_tensor(v[batch]) for k, v in preds.items()})
        metrics = {k: float(v) for k, v in metric.compute().items()}
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_matches_single_process(tmp_path):
    gt = make_wholebody_gt(num_images=4, people_per_image=4, seed=11)
    ann_file = write_json(tmp_path / "gt.json", gt)
    preds = detector_like_predictions(gt, seed=12)
    single = CocoWholeBodyMetric(ann_file, num_procs=1)
    single.update(**{k: torch.as_tensor(v) for k, v in preds.items()})
    expected = {k: float(v) for k, v in single.compute().items()}

    # fork: the ranks inherit the imported modules (spawn would re-import torch in each, ~3x slower).
    args = (_free_port(), str(ann_file), preds, str(tmp_path))
    tmp_mp.start_processes(_rank_main, args=args, nprocs=WORLD_SIZE, join=True, start_method="fork")
    for rank in range(WORLD_SIZE):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
    assert json.loads((tmp_path / "results.json").read_text())  # written atomically by both ranks

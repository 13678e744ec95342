"""The CPU scheduling helpers of the DARK decode (``wbpose.codecs.dark_refine``); its numbers are checked in
test_codecs.py."""

import os

import torch

from wbpose.codecs import dark_refine
from wbpose.codecs.dark_refine import _CPU_BLOCK, _thread_pool, cpu_workers


def test_cpu_workers_split_only_large_batches(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert [cpu_workers(n) for n in (0, 2 * _CPU_BLOCK - 1, 2 * _CPU_BLOCK, 10 * _CPU_BLOCK)] == [1, 1, 3, 3]
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown core count: one thread
    assert cpu_workers(10 * _CPU_BLOCK) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert cpu_workers(10 * _CPU_BLOCK) == 2


def test_thread_pools_per_size_and_process(monkeypatch):
    monkeypatch.setattr(dark_refine, "_POOLS", {})
    two, three = _thread_pool(2), _thread_pool(3)
    assert _thread_pool(2) is two and three is not two
    assert (two._max_workers, three._max_workers) == (2, 3)
    monkeypatch.setattr(os, "getpid", lambda: -1)  # a forked child gets its own pool
    assert _thread_pool(2) is not two
    for pool in dark_refine._POOLS.values():
        pool.shutdown()

"""Thread settings for tests of small networks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch (and so ONNX Runtime's matching) threads, restoring the count afterwards.

    One thread suits the tests' small networks: they gain nothing from two, and on a busy machine spinning OpenMP
    workers make them 10x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

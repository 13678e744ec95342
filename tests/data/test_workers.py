"""Loader worker thread limits: OpenCV and torch down to one thread, the thread variables of the native libraries."""

from __future__ import annotations

import os

import cv2
import pytest
import torch

from wbpose.data.workers import THREAD_ENV, limit_threads, thread_settings


def test_limit_threads_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    for name in THREAD_ENV:
        monkeypatch.setenv(name, "8")
    try:
        cv2.setNumThreads(4)
        torch.set_num_threads(2)
        assert thread_settings()["cv2"] == 4
        limit_threads()
        settings = thread_settings()
        assert settings["cv2"] == 1 and settings["torch"] == 1
        assert all(settings[name] == os.environ[name] == "1" for name in THREAD_ENV)
    finally:
        cv2.setNumThreads(cv2_threads)
        torch.set_num_threads(torch_threads)

"""``wbpose-training-crops`` end to end on a small synthetic dataset: the grid it writes and what it prints."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset root (6 train, 3 val images)."""
    from wbpose.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("training_crops_synthetic")
    generate_dataset(root, num_train=6, num_val=3, seed=0)
    return root


def test_training_crops_command_end_to_end(synthetic, tmp_path, capsys):
    from wbpose.app.training_crops import main

    out = tmp_path / "tmp" / "grid.png"
    argv = ["--data-root", str(synthetic), "--out", str(out), "--n", "4", "--input-hw", "128", "96"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "4 train crops" in printed
    grid = cv2.imread(str(out))
    assert grid is not None
    assert grid.shape == (2 * (128 + 4) + 4, 2 * (96 + 4) + 4, 3)  # 2 x 2 tiles of 128 x 96, 4 px padding
    assert np.all(grid[:4] == 40)  # the padding
    assert grid[4:-4, 4:-4].std() > 10  # the crops

"""Shared fixtures: a tiny synthetic COCO-WholeBody root generated once per session, and config composition.

``synthetic_root`` writes the real file layout with ``wbpose.synthetic.generate.generate_dataset``; ``make_cfg``
composes the real ``conf/`` tree (as the scripts do) pointed at that root with small, CPU-only settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from omegaconf import DictConfig

from wbpose.app.config import compose_config

#: Images in the session's synthetic dataset (about two people each).
NUM_TRAIN, NUM_VAL = 16, 6


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic COCO-WholeBody root (train/val annotations, images, detection results)."""
    from wbpose.synthetic.generate import generate_dataset

    root = tmp_path_factory.mktemp("synthetic_wholebody")
    generate_dataset(root, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)
    return root


def small_overrides(root: Path | str) -> list[str]:
    """Overrides for fast CPU runs of the tiny model on ``root``."""
    return [
        "model=hrnet_tiny",
        "data=synthetic",
        f"data.data_root={root}",
        "data.num_workers=0",
        "data.batch_size=8",
        "data.val_batch_size=16",
        "trainer=cpu",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.rich_progress_bar=null",
        "logger=csv",
        "module.num_vis_images=2",
    ]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(overrides, config_name="train", root=None)``: compose a config writing into ``tmp_path``.

    With ``root`` the small CPU settings of :func:`small_overrides` come first, so ``overrides`` win.
    """

    def _make(overrides: Sequence[str] = (), config_name: str = "train", root: Path | str | None = None) -> DictConfig:
        base = small_overrides(root) if root is not None else []
        return compose_config(config_name, [*base, *overrides], output_dir=tmp_path / "run")

    return _make

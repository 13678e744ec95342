"""Paths the tests read: the repository root (scripts, notebooks, configs), the committed fixture files, and the
real COCO-WholeBody sample (``$WBPOSE_SAMPLE_DATA``)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

#: The repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Committed fixture files: MMPose's metainfo and state_dict key lists (kept byte for byte as written).
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures"
#: The real sample's annotation and detector-results files (4 COCO val images beside them).
SAMPLE_ANN, SAMPLE_DET = "test_coco_wholebody.json", "test_coco_det_AP_H_56.json"


def sample_root() -> Path:
    """The real COCO-WholeBody sample folder (``$WBPOSE_SAMPLE_DATA``); skips the calling test, saying why, when the
    variable is unset or the folder lacks the sample's json files."""
    value = os.environ.get("WBPOSE_SAMPLE_DATA")
    if not value:
        pytest.skip("WBPOSE_SAMPLE_DATA is not set (a folder like the real COCO-WholeBody sample)")
    path = Path(value)
    if not (path / SAMPLE_ANN).is_file() or not (path / SAMPLE_DET).is_file():
        pytest.skip(f"WBPOSE_SAMPLE_DATA={path} lacks {SAMPLE_ANN} or {SAMPLE_DET}")
    return path


def load_script(name: str, folder: str = "scripts") -> ModuleType:
    """Import ``<folder>/<name>.py`` (``benchmarks``, or the ``scripts/check_layers.py`` dev tool: not packages) as a
    module. The commands are tested through their ``wbpose.app`` modules, not their ``scripts/`` shims."""
    spec = importlib.util.spec_from_file_location(f"{name}_{folder}", REPO_ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module

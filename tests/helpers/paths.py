"""Paths the tests read: the repository root (scripts, notebooks, configs) and the committed fixture files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

#: The repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Committed fixture files: MMPose's metainfo and state_dict key lists (kept byte for byte as written).
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures"


def load_script(name: str, folder: str = "scripts") -> ModuleType:
    """Import ``<folder>/<name>.py`` (``benchmarks``, or the ``scripts/check_layers.py`` dev tool: not packages) as a
    module. The commands are tested through their ``wbpose.app`` modules, not their ``scripts/`` shims."""
    spec = importlib.util.spec_from_file_location(f"{name}_{folder}", REPO_ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

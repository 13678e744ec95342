"""Paths the tests read: the repository root (scripts, notebooks, configs) and the committed fixture files."""

from __future__ import annotations

from pathlib import Path

#: The repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Committed fixture files: MMPose's metainfo and state_dict key lists (kept byte for byte as written).
FIXTURE_DIR = REPO_ROOT / "tests" / "data"

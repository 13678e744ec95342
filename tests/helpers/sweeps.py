"""Multirun folders as Hydra leaves them, written by hand (for ``wbpose-summarize`` without training)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from wbpose.metrics.tables import PART_COLUMNS, write_metrics_json

__all__ = ["part_metrics", "write_job"]


def part_metrics(ap: Mapping[str, float], ar_offset: float = 0.05, prefix: str = "val/") -> dict[str, float]:
    """``{"val/body_ap": ..., "val/body_ar": ap + ar_offset, ...}`` for the parts in ``ap`` (keys: body, foot,
    face, hand, wholebody)."""
    metrics = {}
    for _, part in PART_COLUMNS:
        if part in ap:
            metrics[f"{prefix}{part}_ap"] = ap[part]
            metrics[f"{prefix}{part}_ar"] = ap[part] + ar_offset
    return metrics


def write_job(folder: Path, overrides: Sequence[str], metrics: Mapping[str, float] | None) -> Path:
    """A job folder with ``.hydra/overrides.yaml`` and (unless ``metrics`` is None: failed) ``metrics.json``."""
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        write_metrics_json(folder / "metrics.json", metrics)
    return folder

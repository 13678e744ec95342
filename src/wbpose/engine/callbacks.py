"""Callbacks the configs name that Lightning does not ship as such."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(refresh_rate: int = 1) -> Any:
    """``RichProgressBar`` when ``rich`` is installed, else Lightning's ``TQDMProgressBar``."""
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

    try:
        import rich  # noqa: F401
    except ImportError:
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return RichProgressBar(refresh_rate=refresh_rate)

"""COCO-WholeBody evaluation: the torchmetrics metric, rescoring + OKS-NMS, both engines and the results json.

``CocoWholeBodyMetric`` is imported lazily, so scoring a results file (``wbpose-score``) does not
pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wbpose.metrics.evaluation import REPORTED_PARTS, STAT_NAMES, evaluate_results, evaluate_results_file
from wbpose.metrics.oks import oks_matrix, oks_nms, rescore
from wbpose.metrics.results_io import read_results_file, write_results
from wbpose.metrics.tables import format_table, metrics_table

if TYPE_CHECKING:
    from wbpose.metrics.coco_wholebody import CocoWholeBodyMetric

__all__ = [
    "REPORTED_PARTS",
    "STAT_NAMES",
    "CocoWholeBodyMetric",
    "evaluate_results",
    "evaluate_results_file",
    "format_table",
    "metrics_table",
    "oks_matrix",
    "oks_nms",
    "read_results_file",
    "rescore",
    "write_results",
]


def __getattr__(name: str) -> Any:
    if name == "CocoWholeBodyMetric":
        from wbpose.metrics.coco_wholebody import CocoWholeBodyMetric

        return CocoWholeBodyMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

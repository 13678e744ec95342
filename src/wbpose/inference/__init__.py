"""Inference: the :class:`Predictor` API (boxes in, whole-body poses out) (drawing lives in :mod:`wbpose.visualize`)."""

from wbpose.inference.predictor import (
    CODECS,
    PosePrediction,
    Predictor,
    make_codec,
    read_image,
    to_coco_results,
)

__all__ = [
    "CODECS",
    "PosePrediction",
    "Predictor",
    "make_codec",
    "read_image",
    "to_coco_results",
]

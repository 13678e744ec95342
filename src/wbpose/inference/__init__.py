"""Inference: the :class:`Predictor` API (boxes in, whole-body poses out) and the drawing helpers."""

from wbpose.inference.predictor import (
    CODECS,
    DEFAULT_IMAGE_HW,
    PosePrediction,
    Predictor,
    make_codec,
    read_image,
    to_coco_results,
)
from wbpose.inference.visualize import denormalize, draw_pose, heatmap_overlay, make_grid, save_png

__all__ = [
    "CODECS",
    "DEFAULT_IMAGE_HW",
    "PosePrediction",
    "Predictor",
    "denormalize",
    "draw_pose",
    "heatmap_overlay",
    "make_grid",
    "make_codec",
    "read_image",
    "save_png",
    "to_coco_results",
]

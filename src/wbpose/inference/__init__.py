"""Inference: the :class:`Predictor` (boxes in, whole-body poses out) and what runs around it on images and videos.

- :mod:`~wbpose.inference.predictor`: ``Predictor`` (checkpoints and ONNX files); its inputs are checked by
  :mod:`~wbpose.inference.inputs`, its output is :mod:`~wbpose.inference.prediction` (``PosePrediction``, results);
- :mod:`~wbpose.inference.sources`: images, folders, globs, videos, webcams (``open_source``), read ahead;
- :mod:`~wbpose.inference.boxes`: person boxes (``WholeImage``, ``DetectionFile``), IoU and NMS;
- :mod:`~wbpose.inference.detector`: ``OnnxPersonDetector`` (RTMDet/YOLOX ONNX files in ONNX Runtime);
- :mod:`~wbpose.inference.tracking`: ``PoseTracker`` (detector every N frames, boxes from poses, track ids);
- :mod:`~wbpose.inference.pipeline`: ``run`` (frames -> poses -> annotated video or PNGs + results json);
- :mod:`~wbpose.inference.writers`: video/PNG outputs, the background writer;
- :mod:`~wbpose.inference.export` / :mod:`~wbpose.inference.onnx_runtime`: ONNX export and its contract.

The synthetic video with known poses that tests and benchmarks run this on is :mod:`wbpose.synthetic.video`.

Drawing lives in :mod:`wbpose.visualize`. Names are imported on first use, so ``wbpose.inference.sources`` (or a
mistyped path checked by a script) does not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wbpose.inference.boxes import Boxes, BoxSource, DetectionFile, WholeImage
    from wbpose.inference.detector import OnnxPersonDetector
    from wbpose.inference.inputs import read_image
    from wbpose.inference.pipeline import predict_source
    from wbpose.inference.prediction import PosePrediction, to_coco_results
    from wbpose.inference.predictor import CODECS, Predictor, make_codec
    from wbpose.inference.sources import Frame, FrameSource, open_source
    from wbpose.inference.tracking import PoseTracker

_EXPORTS = {
    "CODECS": "predictor",
    "PosePrediction": "prediction",
    "Predictor": "predictor",
    "make_codec": "predictor",
    "read_image": "inputs",
    "to_coco_results": "prediction",
    "Boxes": "boxes",
    "BoxSource": "boxes",
    "DetectionFile": "boxes",
    "WholeImage": "boxes",
    "OnnxPersonDetector": "detector",
    "Frame": "sources",
    "FrameSource": "sources",
    "open_source": "sources",
    "PoseTracker": "tracking",
    "predict_source": "pipeline",
}

__all__ = [
    "CODECS",
    "BoxSource",
    "Boxes",
    "DetectionFile",
    "Frame",
    "FrameSource",
    "OnnxPersonDetector",
    "PosePrediction",
    "PoseTracker",
    "Predictor",
    "WholeImage",
    "make_codec",
    "open_source",
    "predict_source",
    "read_image",
    "to_coco_results",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"wbpose.inference.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wbpose.inference' has no attribute {name!r}")

"""An ONNX person detector run with ONNX Runtime: the RTMDet / YOLOX files MMDeploy and rtmlib publish.

Supported contract (MMDeploy's ``end2end.onnx`` of an MMDetection RTMDet or YOLOX model, as rtmlib's ``RTMDet`` and
``YOLOX`` classes run them, e.g. rtmlib's ``yolox_m_8xb8-300e_humanart`` or ``rtmdet_m_640-8xb32_coco-person``):

- **Input**: one float32 tensor ``(1, 3, H, W)``, NCHW. ``H, W`` are read from the file when fixed there (640x640
  for the m/l/x models, 320x320 or 416x416 for the nano/tiny ones), else given (``input_hw``, default 640x640).
- **Pre-processing** (letterbox, top-left): the **BGR** frame (MMDetection trains on OpenCV's BGR images with
  ``bgr_to_rgb=False``) is resized by ``r = min(H / h, W / w)`` (bilinear), placed at the top-left corner of an
  ``H x W`` canvas filled with 114, then normalised per channel ``(x - mean) / std``, in BGR order:

  ==========  ==============================  =============================
  family      mean (B, G, R)                  std (B, G, R)
  ==========  ==============================  =============================
  ``rtmdet``  103.53, 116.28, 123.675         57.375, 57.12, 58.395
  ``yolox``   0, 0, 0 (raw 0-255 pixels)      1, 1, 1
  ==========  ==============================  =============================

  The family is taken from the file name (``rtmdet``/``yolox`` in it) or given; ``mean``/``std`` may be given.
- **Outputs** (NMS inside the graph, MMDeploy's ``end2end`` layout): ``dets`` float32 ``(1, N, 5)`` =
  ``[x1, y1, x2, y2, score]`` in input-canvas pixels, and optionally ``labels`` int ``(1, N)``; with labels, only
  label 0 (COCO's person in MMDetection's 0-based classes) is kept. A raw head without NMS (e.g. YOLOX's
  ``(1, 8400, 85)``) is refused with a message saying so.
- **Post-processing**: rows with a NaN or infinite number dropped, ``score >= score_thr`` (0.3, as rtmlib's
  RTMDet), boxes divided by ``r`` (back to frame pixels), clipped to the frame, those under 1 px dropped, then
  greedy IoU-NMS at ``nms_thr`` (0.45, rtmlib's YOLOX default; a no-op after the graph's own NMS, it merges what a
  per-class NMS left), at most ``max_people`` boxes, in descending score order.

A file with another layout (a pose network, a raw head, more inputs) is refused with a ``ValueError`` naming
the file, what it has, and this contract.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wbpose.inference.boxes import Boxes, BoxSource, nms
from wbpose.inference.onnx_runtime import create_session
from wbpose.inference.sources import Frame

__all__ = ["DETECTOR_FAMILIES", "OnnxPersonDetector", "letterbox"]

#: Normalisation (mean, std) per detector family, BGR order on 0-255 pixels.
DETECTOR_FAMILIES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "rtmdet": ((103.53, 116.28, 123.675), (57.375, 57.12, 58.395)),
    "yolox": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
PAD_VALUE = 114
CONTRACT = (
    "expected an MMDeploy end2end RTMDet/YOLOX person detector: one float32 input (1, 3, H, W) and outputs "
    "dets (1, N, 5) [x1, y1, x2, y2, score] (+ labels (1, N)), NMS inside the graph"
)


def letterbox(image_bgr: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio to fit ``input_hw`` and pad bottom/right with 114 (rtmlib's pre-processing).

    Returns:
        The canvas (H, W, 3) uint8 and the scale ``r`` (canvas px per image px).
    """
    h, w = input_hw
    r = min(h / image_bgr.shape[0], w / image_bgr.shape[1])
    new_w, new_h = int(image_bgr.shape[1] * r), int(image_bgr.shape[0] * r)
    canvas = np.full((h, w, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, r


def _family_of(path: Path) -> str | None:
    name = path.name.lower()
    found = [f for f in DETECTOR_FAMILIES if f in name]
    return found[0] if len(found) == 1 else None


class OnnxPersonDetector(BoxSource):
    """Person boxes from an ONNX RTMDet/YOLOX detector (see the module docstring for the exact contract).

    Args:
        path: the ``.onnx`` file.
        family: ``"rtmdet"`` or ``"yolox"`` (default: from the file name; an error if the name says neither).
        input_hw: canvas (height, width) when the file's input size is dynamic (default 640x640).
        mean: per-channel mean (BGR, 0-255), overriding the family's.
        std: per-channel std (BGR), overriding the family's.
        score_thr: smallest score kept.
        nms_thr: IoU above which a lower-scored box is dropped.
        max_people: keep at most this many boxes.
        threads: ONNX Runtime intra-op threads.
    """

    name = "ONNX detector"

    def __init__(
        self,
        path: str | os.PathLike,
        family: str | None = None,
        input_hw: tuple[int, int] | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        score_thr: float = 0.3,
        nms_thr: float = 0.45,
        max_people: int = 100,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.session = create_session(self.path, threads)  # a missing or unreadable file is named first
        if family is None and (mean is None or std is None):
            family = _family_of(self.path)
            if family is None:
                raise ValueError(
                    f"{self.path}: cannot tell from the file name whether it is an RTMDet or a YOLOX export, which "
                    f"normalise differently; pass family='rtmdet' or 'yolox' (scripts/predict.py: --det-family)"
                )
        if family is not None and family not in DETECTOR_FAMILIES:
            raise ValueError(f"unknown detector family {family!r}; choose one of {sorted(DETECTOR_FAMILIES)}")
        fam_mean, fam_std = DETECTOR_FAMILIES[family] if family else ((0.0,) * 3, (1.0,) * 3)
        self.family = family
        self.mean = np.asarray(mean if mean is not None else fam_mean, dtype=np.float32)
        self.std = np.asarray(std if std is not None else fam_std, dtype=np.float32)
        self.score_thr, self.nms_thr, self.max_people = float(score_thr), float(nms_thr), int(max_people)
        self.input_name, self.input_hw, self._dets, self._labels = self._check_contract(input_hw)

    def __repr__(self) -> str:
        return (
            f"OnnxPersonDetector(path={self.path}, family={self.family}, input_hw={self.input_hw}, "
            f"score>={self.score_thr:g}, nms_thr={self.nms_thr:g})"
        )

    def _check_contract(self, input_hw: tuple[int, int] | None) -> tuple[str, tuple[int, int], str, str | None]:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()

        def describe() -> str:
            ins = ", ".join(f"{v.name} {list(v.shape)} {v.type}" for v in inputs)
            outs = ", ".join(f"{v.name} {list(v.shape)} {v.type}" for v in outputs)
            return f"{self.path}: {CONTRACT}; the file has inputs [{ins}] and outputs [{outs}]"

        if "wbpose" in self.session.get_modelmeta().custom_metadata_map:
            raise ValueError(describe() + " (a wbpose pose network: give it as the model, not as the detector)")
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4:
            raise ValueError(describe())
        shape = inputs[0].shape
        if isinstance(shape[1], int) and shape[1] != 3:
            raise ValueError(describe())
        fixed = [s if isinstance(s, int) and s > 0 else None for s in shape[2:]]
        if all(fixed):
            hw = (int(fixed[0]), int(fixed[1]))  # type: ignore[arg-type]
            if input_hw is not None and tuple(input_hw) != hw:
                raise ValueError(f"{self.path}: its input is fixed at {hw[0]}x{hw[1]}, not {input_hw[0]}x{input_hw[1]}")
        else:
            hw = tuple(int(v) for v in (input_hw or (640, 640)))  # type: ignore[assignment]
        dets = [o for o in outputs if len(o.shape) == 3 and o.shape[-1] == 5 and o.type == "tensor(float)"]
        labels = [o for o in outputs if len(o.shape) == 2 and "int" in o.type]
        if len(dets) != 1 or len(outputs) > 2 or (len(outputs) == 2 and len(labels) != 1):
            raw = any(len(o.shape) == 3 and isinstance(o.shape[-1], int) and o.shape[-1] > 5 for o in outputs)
            extra = " (a raw detection head without NMS: export it with MMDeploy's end2end NMS)" if raw else ""
            raise ValueError(describe() + extra)
        return inputs[0].name, hw, dets[0].name, labels[0].name if labels else None

    def detect(self, image_rgb: np.ndarray) -> Boxes:
        """Person boxes ``[x, y, w, h]`` in image pixels and scores, best first.

        Shape:
            image_rgb: (H, W, 3) uint8 -> Boxes (N, 4), (N,)
        """
        canvas, r = letterbox(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), self.input_hw)
        x = ((canvas.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)[None]
        names = [self._dets] + ([self._labels] if self._labels else [])
        out: list[Any] = self.session.run(names, {self.input_name: np.ascontiguousarray(x)})
        dets = np.asarray(out[0], dtype=np.float64).reshape(-1, 5)
        keep = np.isfinite(dets).all(1) & (dets[:, 4] >= self.score_thr)  # a NaN box never reaches the pose network
        if self._labels:
            keep &= np.asarray(out[1]).reshape(-1) == 0
        dets = dets[keep]
        h, w = image_rgb.shape[:2]
        xyxy = dets[:, :4] / r
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
        ok = (xywh[:, 2] >= 1) & (xywh[:, 3] >= 1)
        xywh, scores = xywh[ok], dets[ok, 4]
        kept = nms(xywh, scores, self.nms_thr)[: self.max_people]
        return Boxes(xywh[kept], scores[kept])

    def __call__(self, frame: Frame) -> Boxes:
        return self.detect(frame.image)

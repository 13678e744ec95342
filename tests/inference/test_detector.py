"""The ONNX person detector on tiny ONNX files written in the test with the exact MMDeploy end2end contract.

The file's scores are pixel values of its input canvas (``helpers.fakes.ProbeDetector``), so the scores it
returns check the pre-processing (BGR order, top-left letterbox with 114 padding, the family's mean/std), and its
boxes check the way back (divide by the letterbox scale, clip, xywh), the label filter, the threshold and NMS.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers.extras import require_extra

require_extra("onnxruntime", "onnx")

from helpers.fakes import probe_detector_onnx  # noqa: E402
from wbpose.inference.detector import OnnxPersonDetector, letterbox  # noqa: E402
from wbpose.inference.sources import Frame  # noqa: E402

# canvas 320x320, image 480x640 (h, w): r = 0.5, the image fills rows 0..239 and the rest is padding
BOXES_CANVAS = [[40, 20, 120, 200], [42, 22, 122, 198], [150, 30, 200, 120], [250, 10, 300, 100], [200, 200, 300, 300]]
PROBES_CANVAS = [[60, 80], [160, 40], [60, 80], [270, 20], [100, 280]]  # (x, y) in canvas pixels
LABELS = [0, 0, 1, 0, 0]


def _image() -> np.ndarray:
    """RGB 480x640 with known blue values at the probes' image positions (canvas / 0.5)."""
    image = np.full((480, 640, 3), 60, np.uint8)
    image[150:170, 110:130] = (10, 20, 200)  # probe 0 (and 2): blue 200 -> score 0.784
    image[70:90, 310:330] = (10, 20, 150)  # probe 1: blue 150 -> 0.588, but NMS with box 0
    image[30:50, 530:550] = (250, 250, 30)  # probe 3: blue 30 -> 0.118 < 0.3
    return image  # probe 4 reads the padding: 114 -> 0.447


@pytest.mark.parametrize("family", ["yolox", "rtmdet"])
def test_contract_scores_boxes_labels_nms(tmp_path: Path, family: str) -> None:
    path = probe_detector_onnx(tmp_path / f"tiny_{family}_person.onnx", BOXES_CANVAS, PROBES_CANVAS, LABELS, family)
    detector = OnnxPersonDetector(path)  # family from the file name
    assert detector.family == family and detector.input_hw == (320, 320)
    boxes = detector(Frame(0, _image(), "x"))
    np.testing.assert_allclose(boxes.scores, [200 / 255, 114 / 255], atol=2e-3)
    # canvas xyxy / 0.5 -> image, clipped to the 480 rows, as [x, y, w, h]
    np.testing.assert_allclose(boxes.xywh, [[80, 40, 160, 360], [400, 400, 200, 80]], atol=1e-4)
    # the wrong family reads other values: the normalisation is part of the contract
    other = "rtmdet" if family == "yolox" else "yolox"
    wrong = OnnxPersonDetector(path, family=other, score_thr=-1e9)(Frame(0, _image(), "x"))
    assert not np.allclose(np.sort(wrong.scores)[-1], 200 / 255, atol=0.05)
    assert len(OnnxPersonDetector(path, score_thr=0.5)(Frame(0, _image(), "x"))) == 1
    # NMS off: the lower-scored duplicate of box 0 comes back
    assert len(OnnxPersonDetector(path, nms_thr=1.0)(Frame(0, _image(), "x"))) == 3


def test_dynamic_input_size_and_letterbox(tmp_path: Path) -> None:
    path = probe_detector_onnx(tmp_path / "dyn.onnx", BOXES_CANVAS, PROBES_CANVAS, LABELS, "yolox", dynamic_hw=True)
    with pytest.raises(ValueError, match=r"dyn\.onnx: cannot tell .* RTMDet or a YOLOX .*--det-family"):
        OnnxPersonDetector(path)
    detector = OnnxPersonDetector(path, family="yolox", input_hw=(320, 320))
    assert detector.input_hw == (320, 320)
    np.testing.assert_allclose(detector(Frame(0, _image(), "x")).scores, [200 / 255, 114 / 255], atol=2e-3)
    canvas, r = letterbox(np.zeros((100, 50, 3), np.uint8), (64, 64))
    assert r == pytest.approx(0.64) and (canvas[:, 32:] == 114).all() and (canvas[:, :32] == 0).all()


def test_other_contracts_are_refused_with_the_file_named(tmp_path: Path) -> None:
    import torch

    class Raw(torch.nn.Module):  # YOLOX's raw head: (1, anchors, 85), no NMS
        def forward(self, x):
            return x.mean() + torch.zeros(1, 10, 85)

    raw = tmp_path / "raw_yolox.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(Raw(), (torch.zeros(1, 3, 64, 64),), str(raw), dynamo=False, input_names=["input"],
                          output_names=["output"])  # fmt: skip
    with pytest.raises(ValueError, match=r"raw_yolox\.onnx: expected an MMDeploy end2end .*dets \(1, N, 5\).*"
                       r"output \[1, 10, 85\].*without NMS"):  # fmt: skip
        OnnxPersonDetector(raw)
    with pytest.raises(FileNotFoundError, match="absent_yolox.onnx"):
        OnnxPersonDetector(tmp_path / "absent_yolox.onnx")
    junk = tmp_path / "junk_rtmdet.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match=r"cannot load ONNX file .*junk_rtmdet\.onnx"):
        OnnxPersonDetector(junk)
    with pytest.raises(ValueError, match="unknown detector family"):
        OnnxPersonDetector(raw, family="ssd")


def test_non_finite_detector_rows_are_dropped(tmp_path: Path) -> None:
    """A NaN or infinite box coordinate from the detector never becomes a person box (nor reaches the predictor)."""
    nan, inf = float("nan"), float("inf")
    boxes = [[40, 20, 120, 200], [nan, 22, 122, 198], [150, 30, inf, 120]]
    path = probe_detector_onnx(tmp_path / "nan_yolox.onnx", boxes, PROBES_CANVAS[:3], [0, 0, 0], "yolox")
    detector = OnnxPersonDetector(path, nms_thr=1.0)
    found = detector(Frame(0, _image(), "x"))
    np.testing.assert_allclose(found.xywh, [[80, 40, 160, 360]], atol=1e-4)
    assert np.isfinite(found.scores).all()
    assert repr(detector) == (
        f"OnnxPersonDetector(path={path}, family=yolox, input_hw=(320, 320), score>=0.3, nms_thr=1)"
    )

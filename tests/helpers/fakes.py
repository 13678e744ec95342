"""Small models for the inference tests: a tiny pose network with non-trivial weights, a W32 with calibrated BN,
MMPose-format files, and a tiny ONNX person detector written with the exact contract of
``wbpose.inference.detector`` (MMDeploy end2end: ``input`` (1, 3, H, W) -> ``dets`` (1, N, 5) + ``labels`` (1, N)).

Imported as ``helpers.fakes`` (``tests/`` is on the path) by the inference and integration tests and the benchmarks.
"""

from __future__ import annotations

import collections
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wbpose.models import build_pose_model


def random_model(arch: str = "tiny", seed: int = 0) -> nn.Module:
    """A tiny model with non-trivial weights and BN statistics, so equal outputs mean equal weights."""
    torch.manual_seed(seed)
    model = build_pose_model(arch)
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            tensor.fill_(3)
        elif name.endswith("running_var"):
            tensor.uniform_(0.5, 1.5)
        elif name.endswith("running_mean"):
            tensor.normal_(0, 0.1)
        else:
            tensor.normal_(0, 0.15)
    return model.eval()


def calibrated_model(arch: str = "w32", seed: int = 0, hw: tuple[int, int] = (128, 96)) -> nn.Module:
    """A model with He-initialised convolutions, BN statistics of a batch of synthetic crops, heatmaps of size ~1.

    Random weights with unit BN statistics blow activations up through HRNet's residual sums; measuring the BN
    statistics on a batch (one forward pass in training mode, on normalised crops of a synthetic scene) keeps every
    layer O(1), and the head is scaled so that the largest heatmap value on that batch is 1, like a trained model's.
    A 1e-4 comparison of heatmaps then means something.
    """
    import cv2

    from wbpose.data.transforms import normalize_image
    from wbpose.synthetic.scene import render_scene

    torch.manual_seed(seed)
    bgr, _ = render_scene(np.random.default_rng(seed), 240, 320)
    corners = ((0, 0), (40, 100), (80, 200), (20, 60))
    crops = [cv2.resize(bgr[y : y + 160, x : x + 120], (hw[1], hw[0])) for y, x in corners]
    batch = torch.from_numpy(np.stack([normalize_image(c) for c in crops]))
    model = build_pose_model(arch)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 4:
                nn.init.kaiming_normal_(p, nonlinearity="relu")
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # cumulative average: after one batch, exactly its statistics
                m.reset_running_stats()
        model.train()
        model(batch)
        model.eval()
        peak = float(model(batch).abs().max())
        model.head.final_layer.weight.div_(peak)
        model.head.final_layer.bias.div_(peak)
    return model


def mmpose_file(model: nn.Module, path: Path, version: str = "0.x") -> Path:
    """``model`` saved as MMPose 0.x (``keypoint_head.*``) or 1.x (``head.*`` + ``data_preprocessor.*``) saves it."""
    state = collections.OrderedDict()
    for key, value in model.state_dict().items():
        renamed = version == "0.x" and key.startswith("head.")
        state[key.replace("head.", "keypoint_head.", 1) if renamed else key] = value
    if version == "1.x":
        state["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
        state["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"epoch": 210}, "state_dict": state}, path)
    return path


class ProbeDetector(nn.Module):
    """Fixed boxes whose scores are pixel values of the input canvas: ``(x[0, 0, y, x] * scale + shift) / 255``.

    With the right pre-processing (BGR, letterbox, the family's mean/std) a score is the blue value of the image at
    the probe's place divided by 255, so the test checks the whole input contract through the scores.
    """

    def __init__(self, boxes_xyxy, probes_xy, labels, scale: float, shift: float) -> None:
        super().__init__()
        self.register_buffer("boxes", torch.as_tensor(boxes_xyxy, dtype=torch.float32))
        probes = torch.as_tensor(probes_xy, dtype=torch.long)
        self.register_buffer("px", probes[:, 0].clone())
        self.register_buffer("py", probes[:, 1].clone())
        self.register_buffer("labels", torch.as_tensor(labels, dtype=torch.long))
        self.scale, self.shift = float(scale), float(shift)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        blue = x[0, 0][self.py, self.px]
        scores = (blue * self.scale + self.shift) / 255.0
        dets = torch.cat([self.boxes, scores[:, None]], 1)[None]
        return dets, self.labels[None]


def probe_detector_onnx(
    path: Path,
    boxes_xyxy,
    probes_xy,
    labels,
    family: str = "yolox",
    input_hw: tuple[int, int] = (320, 320),
    dynamic_hw: bool = False,
) -> Path:
    """Write a :class:`ProbeDetector` with MMDeploy's end2end names: ``input`` -> ``dets``, ``labels``."""
    mean_b, std_b = {"yolox": (0.0, 1.0), "rtmdet": (103.53, 57.375)}[family]
    model = ProbeDetector(boxes_xyxy, probes_xy, labels, scale=std_b, shift=mean_b).eval()
    dynamic = {"input": {2: "height", 3: "width"}} if dynamic_hw else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, *input_hw),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["dets", "labels"], dynamic_axes=dynamic)  # fmt: skip
    return path


class OraclePose:
    """A perfect pose model on a synthetic video: for each box, the true pose of the person the box is on.

    The person is the one whose true keypoint extent overlaps the box (shrunk by the tracker's 1.25 padding) most
    (IoU); it gets its true keypoints plus Gaussian noise (``noise_px``), scored 0.9 where visible, 0.6 where
    labelled but covered, 0.05 where unlabelled. Returns the prediction and the person index of each box (for
    scoring a tracker).
    """

    def __init__(self, video, noise_px: float = 1.5, padding: float = 1.25, seed: int = 0):
        self.video, self.noise_px, self.padding = video, noise_px, padding
        self.rng = np.random.default_rng(seed)

    def __call__(self, frame_index: int, boxes_xywh: np.ndarray, box_scores: np.ndarray):
        from wbpose.inference.boxes import iou_matrix
        from wbpose.inference.predictor import PosePrediction

        true = self.video.true_keypoints[frame_index]  # (P, 133, 2)
        vis = self.video.keypoints[frame_index, :, :, 2]  # (P, 133)
        extent = np.concatenate([true.min(1), true.max(1) - true.min(1)], 1)
        boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
        centre, size = boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:] / self.padding
        shrunk = np.concatenate([centre - size / 2, size], 1)
        person = iou_matrix(shrunk, extent).argmax(1) if len(boxes) else np.zeros(0, int)
        kp = true[person] + self.rng.normal(0, self.noise_px, (len(person), true.shape[1], 2))
        sc = np.select([vis[person] == 2, vis[person] == 1], [0.9, 0.6], 0.05)
        pred = PosePrediction(kp.astype(np.float32), sc.astype(np.float32), np.asarray(box_scores, np.float32),
                              boxes.astype(np.float32), np.asarray(box_scores, np.float32))  # fmt: skip
        return pred, person

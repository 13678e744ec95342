"""Export a pose checkpoint to ONNX (dynamic batch), with its contract in the file, verified with ONNX Runtime.

:func:`export_onnx` rebuilds the network and codec of any checkpoint the Predictor reads (native ``.ckpt`` with
its config, MMPose 0.x/1.x ``.pth`` with its released recipe, converted files; others with ``image_hw`` and
``codec``), traces it with ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``: it needs no extra
package and handles HRNet's static graph), and stores :class:`~wbpose.inference.onnx_runtime.PoseOnnxMetadata` in
the file's ``metadata_props`` (input size, mean/std, codec, sigma, DARK kernel, flip indices, whether the flip test
is folded in). With ``flip_test=True`` the graph itself averages each crop's heatmaps with those of its mirror
(MMPose's flip test with the one-column shift, docs/conventions.md#flip-test), so a deployment runs one graph.

Verification (on by default): the same crops, cut by the Predictor from a synthetic scene (:mod:`wbpose.synthetic`,
real person boxes), go through torch and through ONNX Runtime (as one batch and one crop alone, which checks the
dynamic batch); the largest heatmap difference must be at most ``atol`` (1e-4).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from wbpose.codecs import DarkHeatmap, flip_test_average
from wbpose.data.transforms import MEAN_RGB, STD_RGB
from wbpose.inference.onnx_runtime import METADATA_KEY, OnnxPoseNetwork, PoseOnnxMetadata, require
from wbpose.inference.predictor import Predictor
from wbpose.keypoints import FLIP_INDICES

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_OPSET", "ExportReport", "FlipTestNetwork", "export_onnx", "synthetic_crops", "verify_onnx"]

#: ONNX opset of the exported graphs (ONNX Runtime >= 1.14 runs it; onnx 1.16+ checks it).
DEFAULT_OPSET = 18


class FlipTestNetwork(nn.Module):
    """A pose network with the flip test folded in: crops in, flip-averaged heatmaps out (one forward pass).

    Shape:
        images: (B, 3, H, W) -> (B, K, H/4, W/4)
    """

    def __init__(self, model: nn.Module, flip_indices: list[int] | tuple[int, ...], shift: bool = True) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("flip_index", torch.as_tensor(list(flip_indices), dtype=torch.long))
        self.shift = bool(shift)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        both = self.model(torch.cat([images, images.flip(-1)]))
        return flip_test_average(both[:n], both[n:], self.flip_index, shift=self.shift)


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how it compared with torch.

    Attributes:
        path: the ONNX file.
        metadata: the contract stored in it.
        max_abs_diff: largest |ONNX Runtime - torch| heatmap difference over the verification crops (None: not
            verified).
        heatmap_scale: largest |torch heatmap| on those crops (what the difference compares with).
        crops: number of verification crops.
        seconds: wall time of export + verification.
    """

    path: Path
    metadata: PoseOnnxMetadata
    max_abs_diff: float | None
    heatmap_scale: float | None
    crops: int
    seconds: float


def synthetic_crops(predictor: Predictor, count: int = 8, seed: int = 0) -> np.ndarray:
    """``count`` normalised crops of synthetic people, cut by ``predictor`` from their true boxes.

    Shape:
        output: (count, 3, H, W) float32
    """
    from wbpose.synthetic.scene import render_scene

    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    while sum(len(c) for c in crops) < count:
        bgr, labels = render_scene(rng, 480, 640)
        boxes = np.asarray([lab.bbox for lab in labels], dtype=np.float64).reshape(-1, 4)
        boxes = boxes[(boxes[:, 2] > 1) & (boxes[:, 3] > 1)]
        images, _, _ = predictor.crops(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), boxes)
        crops.append(images)
    return np.concatenate(crops)[:count]


def _network(predictor: Predictor, flip_test: bool) -> nn.Module:
    model = predictor.model.to(memory_format=torch.contiguous_format).eval()
    return FlipTestNetwork(model, FLIP_INDICES, predictor.shift_heatmap).eval() if flip_test else model


def _metadata(predictor: Predictor, flip_test: bool, source: str, opset: int) -> PoseOnnxMetadata:
    from wbpose.checkpoints.mmpose import infer_arch

    try:
        arch = infer_arch(predictor.model.state_dict())
    except ValueError:  # a custom network: the contract does not need the arch
        arch = None
    codec = predictor.codec
    w, h = predictor.input_wh
    return PoseOnnxMetadata(
        input_hw=(h, w),
        heatmap_hw=tuple(int(v) for v in codec.heatmap_hw),  # type: ignore[arg-type]
        codec="dark" if isinstance(codec, DarkHeatmap) else "msra",
        sigma=float(codec.sigma),
        mean=MEAN_RGB,
        std=STD_RGB,
        flip_test=flip_test,
        shift_heatmap=predictor.shift_heatmap,
        flip_indices=[int(i) for i in FLIP_INDICES],
        num_keypoints=len(FLIP_INDICES),
        blur_kernel=int(codec.blur_kernel) if isinstance(codec, DarkHeatmap) else None,
        box_padding=predictor.padding,
        arch=arch,
        source=source,
        opset=opset,
    )


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    flip_test: bool = False,
    opset: int = DEFAULT_OPSET,
    image_hw: tuple[int, int] | None = None,
    codec: str | None = None,
    arch: str | None = None,
    verify: bool = True,
    atol: float = 1e-4,
    verify_crops: int = 4,
) -> ExportReport:
    """Export a checkpoint's pose network to ONNX with its contract, and check it against torch.

    Args:
        checkpoint: any file :meth:`Predictor.from_checkpoint` reads.
        out: the ``.onnx`` file (default: the checkpoint's path with ``.onnx``, ``_flip.onnx`` with the flip test).
        flip_test: fold the flip test into the graph.
        opset: ONNX opset.
        image_hw: network input (height, width), overriding the checkpoint's (weights-only files without a
            recipe need it).
        codec: "msra" or "dark", overriding the checkpoint's.
        arch: expected HRNet arch, checked against the weights.
        verify: compare ONNX Runtime with torch on synthetic crops.
        atol: largest allowed heatmap difference.
        verify_crops: number of verification crops.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: a checkpoint the Predictor cannot read, or ONNX Runtime differing from torch by more than
            ``atol``.
        ImportError: ``onnx``/``onnxruntime`` missing (the ``wbpose[onnx]`` extra).
    """
    onnx = require("onnx")
    start = time.perf_counter()
    checkpoint = Path(checkpoint)
    if out is None:
        out = checkpoint.with_name(checkpoint.stem + ("_flip" if flip_test else "") + ".onnx")
    out = Path(out)
    predictor = Predictor.from_checkpoint(
        checkpoint, device="cpu", flip_test=flip_test, image_hw=image_hw, codec=codec, arch=arch
    )
    network = _network(predictor, flip_test)
    meta = _metadata(predictor, flip_test, checkpoint.name, opset)
    w, h = predictor.input_wh
    dummy = torch.zeros(2, 3, h, w)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing turns the shape checks in forward() into constants: expected, the batch axis stays dynamic.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (dummy,),
            str(out),
            dynamo=False,
            opset_version=opset,
            input_names=[meta.input_name],
            output_names=[meta.output_name],
            dynamic_axes={meta.input_name: {0: "batch"}, meta.output_name: {0: "batch"}},
        )
    model = onnx.load(str(out))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    model.doc_string = (
        f"wbpose {meta.arch or ''} whole-body pose network from {checkpoint.name}: input 'input' float32 "
        f"(batch, 3, {h}, {w}) RGB normalised with mean {list(MEAN_RGB)} std {list(STD_RGB)}; output 'heatmaps' "
        f"(batch, {meta.num_keypoints}, {meta.heatmap_hw[0]}, {meta.heatmap_hw[1]}); codec {meta.codec}, "
        f"flip test {'folded in' if flip_test else 'not folded in'}. Contract: metadata key {METADATA_KEY!r}."
    )
    model.producer_name = "wbpose"
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    report = ExportReport(out, meta, None, None, 0, 0.0)
    if verify:
        report.max_abs_diff, report.heatmap_scale = verify_onnx(out, predictor, verify_crops, atol)
        report.crops = verify_crops
    report.seconds = time.perf_counter() - start
    log.info("exported %s -> %s (%s)", checkpoint, out, meta.to_json()[:200])
    return report


def verify_onnx(
    path: str | os.PathLike, predictor: Predictor, count: int = 4, atol: float = 1e-4
) -> tuple[float, float]:
    """Compare an exported file with ``predictor``'s network on ``count`` synthetic crops.

    The torch side is ``predictor.heatmaps`` (flip-averaged when ``predictor.flip_test``, which must match the
    file); the ONNX side runs the whole batch and, separately, the first crop alone (the dynamic batch).

    Returns:
        ``(max |onnx - torch|, max |torch|)``.

    Raises:
        ValueError: a difference above ``atol``, naming the file.
    """
    network = OnnxPoseNetwork(path)
    if network.metadata.flip_test != predictor.flip_test:
        raise ValueError(f"{path}: flip_test={network.metadata.flip_test} but the predictor has {predictor.flip_test}")
    crops = torch.from_numpy(synthetic_crops(predictor, count))
    expected = predictor.heatmaps(crops).float()
    got = network(crops)
    single = network(crops[:1])
    diff = max(float((got - expected).abs().max()), float((single - expected[:1]).abs().max()))
    scale = float(expected.abs().max())
    if not diff <= atol:
        raise ValueError(
            f"{path}: ONNX Runtime heatmaps differ from torch by {diff:.3g} (> {atol:g}) on {count} crops "
            f"(heatmap scale {scale:.3g})"
        )
    return diff, scale

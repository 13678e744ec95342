"""ONNX Runtime for pose networks exported by ``scripts/export.py``: the file's contract, a session, a network.

A pose file written by :func:`wbpose.inference.export.export_onnx` carries everything needed to use it in its
ONNX ``metadata_props`` under the key :data:`METADATA_KEY` (one json object, :class:`PoseOnnxMetadata`):

==================  ==========================================================================================
``format``          :data:`POSE_FORMAT` (``"wbpose.pose/1"``)
``input_name``      ``"input"``: float32 ``(batch, 3, H, W)``, RGB crops normalised ``(x - mean) / std``
``output_name``     ``"heatmaps"``: float32 ``(batch, K, H/4, W/4)``
``input_hw``        ``[H, W]``, e.g. ``[256, 192]``; ``heatmap_hw`` ``[H/4, W/4]``
``mean``, ``std``   per RGB channel on 0-255 pixels (ImageNet: 123.675 116.28 103.53 / 58.395 57.12 57.375)
``codec``           ``"msra"`` or ``"dark"``; ``sigma`` (heatmap px), ``blur_kernel`` (DARK's modulation kernel)
``flip_test``       ``true`` when the flip test is folded into the graph (the file averages each crop with its
                    mirror itself), else ``false``; ``shift_heatmap`` and ``flip_indices`` say how to do it
``box_padding``     1.25: box -> crop padding the heatmaps were trained with
``num_keypoints``   133; ``arch``, ``source``, ``opset``: what was exported, from which file
==================  ==========================================================================================

The batch dimension is dynamic. :class:`OnnxPoseNetwork` wraps an ONNX Runtime session as a ``torch.nn.Module``
(crops in, heatmaps out), so :class:`~wbpose.inference.Predictor` runs it with the same crops, decoding and
outputs as a checkpoint (``Predictor.from_onnx``); nothing on this path imports Lightning or Hydra.

``onnx`` and ``onnxruntime`` are the optional extra ``wbpose[onnx]``; they are imported when first needed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "METADATA_KEY",
    "POSE_FORMAT",
    "OnnxPoseNetwork",
    "PoseOnnxMetadata",
    "create_session",
    "read_pose_metadata",
    "require",
]

#: ONNX ``metadata_props`` key holding the json contract of a wbpose pose file.
METADATA_KEY = "wbpose"
#: ``format`` value of the contract this code reads.
POSE_FORMAT = "wbpose.pose/1"


def require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or raise an ImportError that says how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{module} is not installed: install the optional extra with `pip install -e '.[onnx]'` "
            "(onnx>=1.16, onnxruntime>=1.18)"
        ) from None


@dataclass
class PoseOnnxMetadata:
    """The contract of a wbpose pose ONNX file (see the module docstring)."""

    input_hw: tuple[int, int]
    heatmap_hw: tuple[int, int]
    codec: str
    sigma: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip_test: bool
    shift_heatmap: bool
    flip_indices: list[int]
    num_keypoints: int = 133
    blur_kernel: int | None = None
    box_padding: float = 1.25
    arch: str | None = None
    source: str = ""
    opset: int | None = None
    input_name: str = "input"
    output_name: str = "heatmaps"
    format: str = POSE_FORMAT
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """The json stored under :data:`METADATA_KEY`."""
        data = asdict(self)
        data.update(data.pop("extra"))
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str) -> PoseOnnxMetadata:
        """Parse and check the stored json; errors name ``source`` and the expected keys."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: metadata {METADATA_KEY!r} is not valid json: {err}") from None
        if not isinstance(data, dict) or data.get("format") != POSE_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{source}: metadata {METADATA_KEY!r} has format {got!r}, expected {POSE_FORMAT!r}")
        required = ("input_hw", "heatmap_hw", "codec", "sigma", "mean", "std", "flip_test", "shift_heatmap",
                    "flip_indices")  # fmt: skip
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{source}: metadata {METADATA_KEY!r} lacks {missing} (expected keys {list(required)})")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        meta = cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})  # fmt: skip
        meta.input_hw = (int(meta.input_hw[0]), int(meta.input_hw[1]))
        meta.heatmap_hw = (int(meta.heatmap_hw[0]), int(meta.heatmap_hw[1]))
        meta.mean = tuple(float(v) for v in meta.mean)  # type: ignore[assignment]
        meta.std = tuple(float(v) for v in meta.std)  # type: ignore[assignment]
        if meta.codec not in ("msra", "dark"):
            raise ValueError(f"{source}: metadata codec {meta.codec!r}, expected 'msra' or 'dark'")
        if len(meta.flip_indices) != meta.num_keypoints:
            raise ValueError(
                f"{source}: metadata has {len(meta.flip_indices)} flip indices for {meta.num_keypoints} keypoints"
            )
        return meta


def create_session(
    path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None, spinning: bool = False
) -> Any:
    """An ONNX Runtime inference session, with a clear error for a missing or unreadable file.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: ``torch.get_num_threads()``, so torch and ONNX Runtime compare fairly).
        providers: execution providers (default: CPU).
        spinning: let idle worker threads spin (ONNX Runtime's default). Off here: the video path's reader and
            writer threads, and other jobs on a shared machine, need those cores; on this project's 2-core machine
            with one core taken by another job, a spinning session ran the tiny network at 14 ms a call instead of
            6.5 ms.
    """
    ort = require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no provider chatter on stderr
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load ONNX file {path}: {first}") from None


def _describe(values: list[Any]) -> str:
    return ", ".join(f"{v.name} {list(v.shape)} {v.type}" for v in values)


def read_pose_metadata(session: Any, path: str | os.PathLike) -> PoseOnnxMetadata:
    """The pose contract of a loaded session, checked against its graph's input and output.

    Raises:
        ValueError: the file is no wbpose pose export (no or bad metadata, another input/output layout), naming
            the file and what was expected.
    """
    props = session.get_modelmeta().custom_metadata_map
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if METADATA_KEY not in props:
        raise ValueError(
            f"{path}: not a wbpose pose network: no {METADATA_KEY!r} metadata (expected a file written by "
            f"scripts/export.py, input 'input' (batch, 3, H, W), output 'heatmaps' (batch, 133, H/4, W/4)); "
            f"the file has inputs [{_describe(inputs)}] and outputs [{_describe(outputs)}]"
            + ("; a person detector goes to --detector" if any(o.shape and o.shape[-1] == 5 for o in outputs) else "")
        )
    meta = PoseOnnxMetadata.from_json(props[METADATA_KEY], str(path))
    h, w = meta.input_hw
    expected_in = [None, 3, h, w]
    expected_out = [None, meta.num_keypoints, *meta.heatmap_hw]
    ok = (
        len(inputs) == 1
        and len(outputs) == 1
        and inputs[0].name == meta.input_name
        and outputs[0].name == meta.output_name
        and inputs[0].type == "tensor(float)"
        and _shape_fits(inputs[0].shape, expected_in)
        and _shape_fits(outputs[0].shape, expected_out)
    )
    if not ok:
        raise ValueError(
            f"{path}: graph does not match its {METADATA_KEY!r} metadata: expected input {meta.input_name!r} "
            f"float (batch, 3, {h}, {w}) and output {meta.output_name!r} (batch, {meta.num_keypoints}, "
            f"{meta.heatmap_hw[0]}, {meta.heatmap_hw[1]}); got inputs [{_describe(inputs)}], "
            f"outputs [{_describe(outputs)}]"
        )
    return meta


def _shape_fits(shape: list[Any], expected: list[int | None]) -> bool:
    """A graph shape (ints, or strings for dynamic axes) matches ``expected`` (None = any)."""
    if len(shape) != len(expected):
        return False
    return all(e is None or not isinstance(s, int) or s == e for s, e in zip(shape, expected))


class OnnxPoseNetwork(nn.Module):
    """A pose network run by ONNX Runtime, behind the ``nn.Module`` interface the Predictor calls.

    Args:
        path: a pose file written by ``scripts/export.py``.
        threads: ONNX Runtime intra-op threads (default ``torch.get_num_threads()``).
        providers: ONNX Runtime execution providers (default CPU).

    Shape:
        images: (B, 3, H, W) float32 normalised RGB crops -> heatmaps (B, K, H/4, W/4) float32 on the CPU
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = create_session(self.path, threads, providers)
        self.metadata = read_pose_metadata(self.session, self.path)

    def extra_repr(self) -> str:
        m = self.metadata
        return f"{self.path.name}, input_hw={list(m.input_hw)}, codec={m.codec}, flip_test={m.flip_test}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Heatmaps of a batch of crops (the flip-test average when the file has it folded in)."""
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (heatmaps,) = self.session.run([self.metadata.output_name], {self.metadata.input_name: x})
        return torch.from_numpy(heatmaps)

"""Checkpoint import and conversion (MMPose HRNet files -> ``wbpose.models`` state dicts)."""

from wbpose.checkpoints.mmpose import (
    KeyReport,
    convert_mmpose_checkpoint,
    infer_arch,
    load_imagenet_backbone,
    load_mmpose_checkpoint,
    read_checkpoint,
)

__all__ = [
    "KeyReport",
    "convert_mmpose_checkpoint",
    "infer_arch",
    "load_imagenet_backbone",
    "load_mmpose_checkpoint",
    "read_checkpoint",
]

"""Checkpoints: the one weights-only reader, the one loaded type, MMPose key maps, released recipes, init weights.

- :mod:`~wbpose.checkpoints.reader`: ``read_checkpoint`` (never runs code from a file) and the config keys;
- :mod:`~wbpose.checkpoints.stored_config`: a checkpoint's stored config read as data (the project's classes only);
- :mod:`~wbpose.checkpoints.io`: ``load_checkpoint(path) -> LoadedCheckpoint`` for every supported format;
- :mod:`~wbpose.checkpoints.mmpose`: MMPose key map, arch inference, conversion, ImageNet backbones;
- :mod:`~wbpose.checkpoints.recipes`: input size and codec of each released MMPose file;
- :mod:`~wbpose.checkpoints.init_weights`: training starts from ImageNet or another pose model's backbone.
"""

from wbpose.checkpoints.io import FORMATS, LoadedCheckpoint, check_same_arch, load_checkpoint, load_state_dict_checked
from wbpose.checkpoints.mmpose import (
    KeyReport,
    convert_mmpose_checkpoint,
    infer_arch,
    load_imagenet_backbone,
    load_mmpose_checkpoint,
)
from wbpose.checkpoints.reader import CONFIG_KEY, RAW_CONFIG_KEY, read_checkpoint
from wbpose.checkpoints.recipes import RECIPES, Recipe, recipe_for_file

__all__ = [
    "CONFIG_KEY",
    "FORMATS",
    "RAW_CONFIG_KEY",
    "RECIPES",
    "KeyReport",
    "LoadedCheckpoint",
    "Recipe",
    "check_same_arch",
    "convert_mmpose_checkpoint",
    "infer_arch",
    "load_checkpoint",
    "load_imagenet_backbone",
    "load_mmpose_checkpoint",
    "load_state_dict_checked",
    "read_checkpoint",
    "recipe_for_file",
]

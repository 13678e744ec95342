"""wbpose: top-down whole-body human pose estimation (COCO-WholeBody, 133 keypoints) with HRNet and DARK."""

__version__ = "0.2.0"

"""Synthetic COCO-WholeBody data: cartoon people whose every keypoint is drawn, in the real file formats.

``people`` samples articulated figures, ``draw`` paints them, ``scene`` places and labels them in an image, and
``generate`` writes a dataset root (annotations, JPEGs, detector boxes) exactly like a real COCO-WholeBody root,
and ``video`` writes a video of walking people with its ground truth and detector boxes.
"""

from wbpose.synthetic.generate import generate_dataset

__all__ = ["generate_dataset"]

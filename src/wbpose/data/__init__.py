"""COCO-WholeBody data (no Lightning): annotation parsing, the dataset, transforms and augmentation."""

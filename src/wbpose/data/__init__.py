"""COCO-WholeBody data: keypoint spec, datasets, transforms, synthetic data and the LightningDataModule."""

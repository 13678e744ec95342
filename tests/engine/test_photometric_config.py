"""augment=photometric (albumentations): pixels change, geometry, keypoints and targets do not."""

from __future__ import annotations

from pathlib import Path

import torch

from helpers.annotations import write_root


def test_augment_photometric_config_changes_pixels_only(tmp_path: Path) -> None:
    """augment=photometric: the same samples with other pixels, and the same geometry, keypoints and targets."""
    from wbpose.app.config import compose_config
    from wbpose.build import build_codec, build_datamodule

    write_root(tmp_path / "root")
    batches = {}
    for augment in ("none", "photometric"):
        cfg = compose_config(
            "train",
            ["data=synthetic", f"data.data_root={tmp_path / 'root'}", "data.num_workers=0"]
            + ([f"augment={augment}"] if augment != "none" else []),
            output_dir=tmp_path / augment,
        )
        dm = build_datamodule(cfg, build_codec(cfg))
        dm.setup("fit")
        if augment == "photometric":
            assert [t["type"] for t in cfg.data.photometric][0] == "RandomBrightnessContrast"
            assert dm.train_dataset.photometric is not None
        batches[augment] = dm.train_dataset.__getitems__(list(range(len(dm.train_dataset))))
    plain, photo = batches["none"], batches["photometric"]
    changed = 0
    for a, b in zip(plain, photo, strict=True):
        for key in ("keypoints_xy", "visible", "heatmaps", "weights", "center_xy", "scale_wh"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        changed += int(not torch.equal(a["image"], b["image"]))
    assert changed >= len(plain) // 3  # p=0.5 brightness/contrast alone changes about half the crops

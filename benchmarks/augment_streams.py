"""Diagnose the demo's foot-AP drop since augmentation became per-sample (README "The demo", "Not verified yet").

Two modes:

- ``stats``: augmentation and target statistics over three epochs of the synthetic train set (``data/synthetic``,
  made by the demo), drawn from the per-sample generators ``default_rng([seed, epoch, index])`` (what training
  uses) and from one continuing generator (the scheme before exact resume): flip rate, scale-change quantiles,
  foot and body target weights, share of crops with a labelled foot.
- ``demo-continuing``: the demo (``scripts/demo.py``, extra arguments are its overrides) with each sample's
  generator replaced by one continuing generator per process, seeded by torch's seed as before (the epoch order
  of exact resume is kept). Writes ``outputs/demo`` like the demo.

Usage: ``python benchmarks/augment_streams.py stats`` / ``python benchmarks/augment_streams.py demo-continuing``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import torch

from wbpose.codecs import DarkHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.coco_wholebody import CocoWholeBodyDataset

ROOT = Path(__file__).resolve().parents[1]


def stats(root: Path = ROOT / "data" / "synthetic", epochs: int = 3) -> None:
    codec = DarkHeatmap((128, 96), (32, 24), 2.0)
    ds = CocoWholeBodyDataset(root / "annotations/coco_wholebody_train_v1.0.json", root / "train2017", (96, 128),
                              codec=codec, transforms=build_train_augmentations())  # fmt: skip
    ds.seed = 42
    for mode in ("per-sample", "continuing"):
        continuing = np.random.default_rng(7)
        rows = []
        for epoch in range(epochs):
            for i in range(len(ds)):
                rng = ds.sample_rng(i, epoch) if mode == "per-sample" else continuing
                sample = ds.load_sample(i, read_image=False)
                scale0 = sample.scale_wh[1]
                sample = ds.prepare(sample, rng)
                w = sample.weights
                rows.append((w[17:23].sum(), w[:17].sum(), sample.scale_wh[1] / scale0, sample.flipped))
        a = np.asarray(rows, dtype=float)
        q = np.round(np.quantile(a[:, 2], [0.1, 0.5, 0.9]), 3).tolist()
        foot, body, with_foot = a[:, 0].mean(), a[:, 1].mean(), (a[:, 0] > 0).mean()
        print(f"{mode:11s} samples {len(a)}: flip {a[:, 3].mean():.3f}, scale q10/50/90 {q}, "
              f"foot weight {foot:.3f}, body weight {body:.3f}, crops with a foot {with_foot:.3f}")  # fmt: skip


def demo_continuing(argv: list[str]) -> None:
    def continuing_rng(self, index, epoch=None):  # the scheme before exact resume
        seed = torch.initial_seed()
        if getattr(self, "_continuing", None) is None or seed != self._continuing_seed:
            self._continuing, self._continuing_seed = np.random.default_rng(seed), seed
        return self._continuing

    CocoWholeBodyDataset.sample_rng = continuing_rng
    sys.argv = ["demo.py", *argv]
    runpy.run_path(str(ROOT / "scripts" / "demo.py"), run_name="__main__")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("stats", "demo-continuing"):
        sys.exit(__doc__)
    stats() if sys.argv[1] == "stats" else demo_continuing(sys.argv[2:])

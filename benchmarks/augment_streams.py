"""The demo's foot AP across augmentation streams and seeds (docs/benchmarks.md, "The demo's foot AP over seeds").

Modes:

- ``stats``: augmentation and target statistics over three epochs of the synthetic train set (``data/synthetic``,
  made by the demo), drawn from the per-sample generators ``default_rng([seed, epoch, index])`` (what training
  uses) and from one continuing generator (the scheme before exact resume): flip rate, scale-change quantiles,
  foot and body target weights, share of crops with a labelled foot.
- ``demo-continuing``: the demo (``wbpose-demo``, extra arguments are its overrides) with each sample's
  generator replaced by one continuing generator per process, seeded by torch's seed as before (the epoch order
  of exact resume is kept). Writes ``outputs/demo`` like the demo.
- ``run SCHEME SEED OUT [overrides]``: one ``experiment=demo`` training run (``wbpose-train``) with the
  augmentation stream ``SCHEME`` into the folder ``OUT``.
- ``feet RESULTS.json [...]``: where a model puts the feet, from results json files written by
  ``wbpose-eval ckpt_path=... data=synthetic data.val_bbox_source=gt`` (``results_keypoints.json``) on the synthetic
  val set: each result is matched to the ground-truth person of its image with the nearest body keypoints, and
  every foot with a labelled heel, big toe and ankle is put in its own frame (true heel at 0, true big toe at 1
  along the first axis); prints the median predicted big toe, heel and ankle in that frame, and the share of feet
  whose predicted big toe is nearer the true heel than the true big toe.
- ``study``: several ``run``s (``--schemes``, ``--seeds``, ``--jobs`` at a time, Hydra overrides after ``--``)
  and a table of each run's final validation AP per part (GT-box-free: the training's own val, detector boxes),
  with the share of runs whose foot AP is above ``--high``.

Schemes: ``per-sample`` (the training code: ``default_rng([seed, epoch, index])``), ``salted`` (per-sample,
``default_rng([seed, epoch, index, 12345])``: another family of the same kind), ``continuing`` (one generator per
loader process, seeded by torch's seed: the scheme before exact resume; not resumable).

Usage::

    python benchmarks/augment_streams.py stats
    python benchmarks/augment_streams.py study --schemes per-sample continuing --seeds 42 43 44 --jobs 2 \\
        -- trainer.max_epochs=15
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wbpose.codecs import DarkHeatmap
from wbpose.data.augment import build_train_augmentations
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.keypoints import PART_FIELDS

ROOT = Path(__file__).resolve().parents[1]
SCHEMES = ("per-sample", "salted", "continuing")
PARTS = ("body", "foot", "face", "hand", "wholebody")


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


def use_scheme(scheme: str) -> None:
    """Swap :meth:`CocoWholeBodyDataset.sample_rng` for ``scheme`` in this process (and its forked workers)."""
    if scheme == "per-sample":
        return

    def continuing_rng(self, index, epoch=None):  # the scheme before exact resume
        seed = torch.initial_seed()
        if getattr(self, "_continuing", None) is None or seed != self._continuing_seed:
            self._continuing, self._continuing_seed = np.random.default_rng(seed), seed
        return self._continuing

    def salted_rng(self, index, epoch=None):
        return np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(index), 12345])

    if scheme not in SCHEMES:
        raise SystemExit(f"unknown scheme {scheme!r}; one of {SCHEMES}")
    CocoWholeBodyDataset.sample_rng = continuing_rng if scheme == "continuing" else salted_rng


def demo_continuing(argv: list[str]) -> None:
    use_scheme("continuing")
    from wbpose.app.demo import main

    main(argv)


def run(scheme: str, seed: int, out: str, overrides: list[str]) -> None:
    use_scheme(scheme)
    from wbpose.app.train import main as train_main

    sys.argv = ["train.py", "experiment=demo", f"seed={seed}", "logger=csv", "callbacks=tqdm",
                f"hydra.run.dir={out}", *overrides]  # fmt: skip
    train_main()


def _crop_height(bbox: list[float], aspect_wh: float = 96 / 128, padding: float = 1.25) -> float:
    """Height of the crop of a ``[x, y, w, h]`` box (aspect fixed to the input's, padded as the val pipeline)."""
    return max(bbox[3], bbox[2] / aspect_wh) * padding


def _read_json(path: str | Path) -> object:
    """The content of a json file; exits with a message naming the file when it is missing or not json."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        sys.exit(f"error: cannot read {path} as json: {err}")


def _people(record: dict) -> np.ndarray:
    """The (133, 3) keypoints of a COCO-WholeBody annotation or result record."""
    if not isinstance(record, dict) or any(k not in record for k in PART_FIELDS.values()):
        sys.exit(f"error: not a COCO-WholeBody record (needs {list(PART_FIELDS.values())}): {str(record)[:200]}")
    return np.concatenate([np.asarray(record[k], dtype=np.float64) for k in PART_FIELDS.values()]).reshape(-1, 3)


VAL_ANN = ROOT / "data/synthetic/annotations/coco_wholebody_val_v1.0.json"


def feet(results_files: list[str], ann_file: Path = VAL_ANN) -> None:
    gt: dict[int, list[np.ndarray]] = {}
    spans = []  # heel-big toe and heel-ankle distances in heatmap pixels (128x96 input, 32x24 maps)
    annotations = _read_json(ann_file)
    if not isinstance(annotations, dict) or "annotations" not in annotations:
        sys.exit(f"error: {ann_file} is not a COCO annotation file (no 'annotations')")
    for a in annotations["annotations"]:
        gt.setdefault(a["image_id"], []).append(_people(a))
        kp, per_px = gt[a["image_id"]][-1], 32 / _crop_height(a["bbox"])
        for toe, heel, ankle in ((17, 19, 15), (20, 22, 16)):
            if kp[toe, 2] and kp[heel, 2] and kp[ankle, 2]:
                spans.append([np.linalg.norm(kp[p, :2] - kp[heel, :2]) * per_px for p in (toe, ankle)])
    q = np.round(np.quantile(np.asarray(spans), [0.1, 0.5, 0.9], axis=0), 1)
    print(
        f"true feet of {ann_file} in 32x24 heatmap pixels (q10/50/90): heel to big toe {q[:, 0].tolist()}, "
        f"heel to ankle {q[:, 1].tolist()}"
    )
    print("| results | feet | predicted big toe | predicted heel | predicted ankle | true ankle | "
          "big toe nearer the true heel |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for path in results_files:
        rows = []
        results = _read_json(path)
        if not isinstance(results, list):
            sys.exit(f"error: {path} is not a results json (a list of records)")
        for r in results:
            kp = _people(r)
            candidates = gt.get(r["image_id"], [])
            if not candidates:
                continue
            body = [np.nanmean(np.where(g[:17, 2:] > 0, np.abs(g[:17, :2] - kp[:17, :2]), np.nan)) for g in candidates]
            g = candidates[int(np.nanargmin(body))]
            for toe, heel, ankle in ((17, 19, 15), (20, 22, 16)):  # left, right: big toe, heel, ankle
                if not (g[toe, 2] and g[heel, 2] and g[ankle, 2]):
                    continue
                axis = g[toe, :2] - g[heel, :2]
                length = float(np.linalg.norm(axis))
                u = axis / length
                frame = np.stack([u, [-u[1], u[0]]]) / length  # rows: along the foot, across it
                at = [frame @ (p - g[heel, :2]) for p in (kp[toe, :2], kp[heel, :2], kp[ankle, :2], g[ankle, :2])]
                near_heel = np.linalg.norm(kp[toe, :2] - g[heel, :2]) < np.linalg.norm(kp[toe, :2] - g[toe, :2])
                rows.append([*np.concatenate(at), near_heel])
        if not rows:
            print(f"| {path} | 0 (no result matched a labelled foot) | | | | | |")
            continue
        a = np.asarray(rows)
        med = np.round(np.median(a[:, :8], axis=0), 2)
        print(f"| {path} | {len(a)} | ({med[0]}, {med[1]}) | ({med[2]}, {med[3]}) | ({med[4]}, {med[5]}) | "
              f"({med[6]}, {med[7]}) | {a[:, 8].mean():.2f} |")  # fmt: skip


def study(argv: list[str]) -> None:
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="augment_streams.py study")
    p.add_argument("--schemes", nargs="+", default=["per-sample", "continuing"], choices=SCHEMES)
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--out", default=str(ROOT / "outputs" / "augment_streams"))
    p.add_argument("--high", type=float, default=0.45, help="foot AP counted as the high mode")
    args = p.parse_args(argv)
    tag = "_".join(o.replace("=", "").replace(".", "-") for o in overrides) or "default"
    todo = [(s, seed, Path(args.out) / tag / f"{s}_{seed}") for s in args.schemes for seed in args.seeds]
    running: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for scheme, seed, out in todo:
        if (out / "metrics.json").exists():
            continue
        while len(running) >= args.jobs:
            running = [r for r in running if r.poll() is None]
            time.sleep(2)
        out.mkdir(parents=True, exist_ok=True)
        log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 (closed with the process)
        cmd = [sys.executable, __file__, "run", scheme, str(seed), str(out), *overrides]
        running.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    for r in running:
        r.wait()
    print(f"overrides: {' '.join(overrides) or '(none)'}")
    print("| scheme | seed | " + " | ".join(f"{p} AP" for p in PARTS) + " |")
    print("|---|---|" + "---|" * len(PARTS))
    highs: dict[str, list[bool]] = {}
    for scheme, seed, out in todo:
        path = out / "metrics.json"
        if not path.exists():
            print(f"| {scheme} | {seed} | failed: see {out.with_suffix('.log')} |")
            continue
        m = json.loads(path.read_text())["metrics"]
        print(f"| {scheme} | {seed} | " + " | ".join(f"{m[f'val/{p}_ap']:.3f}" for p in PARTS) + " |")
        highs.setdefault(scheme, []).append(m["val/foot_ap"] > args.high)
    for scheme, h in highs.items():
        print(f"{scheme}: foot AP > {args.high} in {sum(h)} of {len(h)} runs")
    if len(highs) >= 2:
        from scipy.stats import fisher_exact

        (first, a), *others = highs.items()
        for scheme, b in others:
            table = [[sum(a), len(a) - sum(a)], [sum(b), len(b) - sum(b)]]
            p = fisher_exact(table).pvalue
            print(f"{first} vs {scheme}: two-sided Fisher exact p = {p:.3f} (same chance of the high mode: p large)")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "stats":
        stats()
    elif mode == "demo-continuing":
        demo_continuing(sys.argv[2:])
    elif mode == "run" and len(sys.argv) >= 5:
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
    elif mode == "feet" and len(sys.argv) > 2:
        feet(sys.argv[2:])
    elif mode == "study":
        study(sys.argv[2:])
    else:
        sys.exit(__doc__)

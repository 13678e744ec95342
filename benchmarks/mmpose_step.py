"""MMPose 1.3.2's own W32 256x192 whole-body training step and training pipeline, timed on this machine.

The reference the GPU check (``benchmarks/gpu.py``) puts beside wbpose's figures, run in the same session on the
same device: MMPose's model, loss and optimiser exactly as its recipe
``td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192.py`` builds them (the config file shipped in the mmpose
wheel; no pretrained weights: speed does not depend on them), and its training pipeline
(``LoadImage, GetBBoxCenterScale, RandomFlip, RandomHalfBody, RandomBBoxTransform, TopdownAffine,
GenerateTarget(MSRAHeatmap), PackPoseInputs``) on the same fixture images as wbpose's loader.

Rows:

- ``step``: ``model.train_step(batch, optim_wrapper)`` (data preprocessor: stack + BGR->RGB + normalise on the
  device; forward; ``KeypointMSELoss``; the head's accuracy, which copies the heatmaps to the host every step as
  MMPose does by default; backward; Adam) at each ``--batches`` size, fp32 (``OptimWrapper``, the recipe) and bf16
  (``AmpOptimWrapper(dtype="bfloat16")``, MMPose's mixed precision: autocast plus a dynamic loss scaler; CUDA
  only), and the largest batch once more without the accuracy (``compute_acc=False``). In-memory batches: packed
  samples of its own pipeline, on the device before the clock starts.
- ``train pipeline, 1 process``: ms per sample of MMPose's pipeline and of wbpose's (``CocoWholeBodyDataset``
  with the same augmentation and MSRA targets, in batches of 32 as its loader calls it) in this process with
  OpenCV on one thread, next to the floor (``cv2.imread`` + one ``cv2.warpAffine`` to 192x256), on the same
  people, alternated round by round.
- ``loader``: images/s and per worker of wbpose's training loader (``WholeBodyDataModule``) and of a
  ``DataLoader`` with as many workers running MMPose's pipeline (``pseudo_collate``, batch 64), set up as MMPose's
  runner sets up its processes (``set_multi_processing``: OpenCV threads 0, ``OMP_NUM_THREADS=1``), after every
  worker has delivered (start-up excluded).

Timing: ``benchmarks/timing.py`` (median step after warm-up, with the range; CUDA synchronised every step).

Where it runs: with MMPose and the pure-python packages it needs on ``sys.path`` (``bash
benchmarks/fetch_mmpose_wheels.sh`` downloads the wheels; ``benchmarks/gpu.sh`` installs them with
``pip install --no-index --no-deps --target /tmp/mmpose_site`` and puts that folder on ``PYTHONPATH`` for this
script alone). mmcv-lite has no compiled ops and the machines have no mmdet, so :func:`install_shims` puts
stand-ins in ``sys.modules`` for what MMPose imports at import time without using it here: ``mmdet.utils``
(``ConfigType``, ``reduce_mean``: RTMO's head), ``mmcv.ops`` (``MultiScaleDeformableAttention``: ED-Pose's head;
using it raises) and, where missing, ``xtcocotools`` (its datasets and metrics; this script builds the samples
itself, MMPose's ``parse_data_info`` way) and, on a machine without torchvision (the CPU machines),
``torchvision.transforms.ToPILImage`` (SimCC's visualiser; removed again once MMPose has registered its modules,
so that Lightning and torchmetrics, imported first, keep seeing no torchvision), and, where setuptools no longer
ships it (81 and later), ``pkg_resources`` (mmengine's ``get_installed_path``: its stand-in finds no distribution,
and mmengine falls back to ``importlib.util.find_spec``, as for a package on ``PYTHONPATH``). Each shim in place
is printed.

Samples: ``--root`` is a COCO-WholeBody root (the full-size fixture of the GPU check); its training annotation is
read with wbpose's parser (MMPose's filtering rules, ``--cache-dir`` for the parsed arrays) and the first
``--instances`` people with keypoints become MMPose data infos (``parse_data_info`` fields, serialised as MMPose's
datasets keep them and deserialised per sample).

Usage::

    PYTHONPATH=/tmp/mmpose_site:src python benchmarks/mmpose_step.py --root /tmp/wbpose_full --device cuda \\
        [--batches 64 512] [--precisions fp32 bf16] [--workers 16] [--json PATH]
    PYTHONPATH=/tmp/mmpose_site:src python benchmarks/mmpose_step.py --smoke   # CPU, batch 2, 2 steps
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import Timing, add_json_argument, measure, write_json  # noqa: E402

CONFIG = (
    "configs/wholebody_2d_keypoint/topdown_heatmap/coco-wholebody/td-hm_hrnet-w32_8xb64-210e_coco-wholebody-256x192.py"
)
METAINFO = "configs/_base_/datasets/coco_wholebody.py"
INPUT_WH = (192, 256)


def install_shims(force: bool = False) -> list[str]:
    """Stand-ins for modules MMPose imports at import time but these rows never use (module docstring).

    ``force`` installs the ``xtcocotools`` stand-in even where the package exists (the CPU check of this path).
    Returns the names of the shims installed.
    """
    import importlib.util

    done = []
    if importlib.util.find_spec("mmdet") is None:
        mmdet, utils = types.ModuleType("mmdet"), types.ModuleType("mmdet.utils")
        utils.ConfigType = dict  # only type annotations in RTMO's head
        utils.OptConfigType = dict | None
        utils.reduce_mean = lambda tensor: tensor
        mmdet.utils = utils
        sys.modules.update({"mmdet": mmdet, "mmdet.utils": utils})
        done.append("mmdet.utils")
    if importlib.util.find_spec("mmcv._ext") is None:
        ops = types.ModuleType("mmcv.ops")

        class MultiScaleDeformableAttention:  # ED-Pose's head: never built here
            def __init__(self, *args, **kwargs) -> None:
                raise RuntimeError("mmcv-lite has no compiled ops (MultiScaleDeformableAttention)")

        ops.MultiScaleDeformableAttention = MultiScaleDeformableAttention
        sys.modules["mmcv.ops"] = ops
        done.append("mmcv.ops")
    if importlib.util.find_spec("torchvision") is None:  # the CPU machines: MMPose's visualiser imports it
        tv, transforms = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")

        class ToPILImage:  # SimCC's visualiser: never used here
            def __init__(self, *args, **kwargs) -> None:
                raise RuntimeError("torchvision is not installed (a stand-in for MMPose's imports)")

        transforms.ToPILImage = ToPILImage
        tv.transforms = transforms
        sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms})
        done.append("torchvision.transforms")
    try:
        import pkg_resources  # noqa: F401 (setuptools >= 81 no longer ships it)
    except ImportError:  # mmengine's get_installed_path: fall back to find_spec, as for a package on PYTHONPATH
        resources = types.ModuleType("pkg_resources")

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name: str):
            raise DistributionNotFound(name)

        resources.DistributionNotFound, resources.get_distribution = DistributionNotFound, get_distribution
        sys.modules["pkg_resources"] = resources
        done.append("pkg_resources")
    if force or importlib.util.find_spec("xtcocotools") is None:
        names = ("xtcocotools", "xtcocotools.coco", "xtcocotools.mask", "xtcocotools.cocoeval")
        root, coco, mask, cocoeval = (types.ModuleType(n) for n in names)

        class _Missing:  # MMPose's datasets and metrics: not used by these rows
            def __init__(self, *args, **kwargs) -> None:
                raise RuntimeError("xtcocotools is not installed (a stand-in for MMPose's imports)")

        coco.COCO, cocoeval.COCOeval = _Missing, _Missing
        root.coco, root.mask, root.cocoeval = coco, mask, cocoeval
        sys.modules.update({"xtcocotools": root, "xtcocotools.coco": coco, "xtcocotools.mask": mask,
                            "xtcocotools.cocoeval": cocoeval})  # fmt: skip
        done.append("xtcocotools")
    return done


def mmpose_file(relative: str) -> str:
    import mmpose

    path = Path(mmpose.__file__).parent / ".mim" / relative
    if not path.is_file():
        raise SystemExit(f"{path} is missing: the mmpose wheel ships its configs under mmpose/.mim")
    return str(path)


def data_infos(root: Path, cache_dir: Path | None, count: int) -> list[dict]:
    """MMPose data infos (``CocoWholeBodyDataset.parse_data_info`` + ``get_data_info``'s metainfo) for the first
    ``count`` training people with keypoints of ``root``, one per image; and their instance indices in wbpose's
    table (the same order as its dataset's)."""
    from mmpose.datasets.datasets.utils import parse_pose_metainfo

    from wbpose.data.annotations import load_instances
    from wbpose.data.layout import TRAIN_ANN

    table = load_instances(root / TRAIN_ANN, bbox_source="gt", cache_dir=cache_dir)
    meta = parse_pose_metainfo({"from_file": mmpose_file(METAINFO)})
    keys = ["dataset_name", "upper_body_ids", "lower_body_ids", "flip_pairs", "dataset_keypoint_weights",
            "flip_indices", "skeleton_links"]  # fmt: skip
    infos, seen = [], set()
    for i in range(len(table.instance_ids)):
        row = int(table.image_index[i])
        if row in seen:  # one person per image, as in a shuffled training batch (no decode shared)
            continue
        seen.add(row)
        if len(infos) == count:
            break
        x1, y1, x2, y2 = table.bbox_xyxy[i].tolist()
        info = {
            "img_id": int(table.image_ids[i]),
            "img_path": str(root / "train2017" / str(table.file_names[row])),
            "bbox": np.array([[x1, y1, x2, y2]], dtype=np.float32),
            "bbox_score": np.ones(1, dtype=np.float32),
            "num_keypoints": int((table.visible[i] > 0).sum()),
            "keypoints": np.asarray(table.keypoints_xy[i], dtype=np.float64)[None],
            "keypoints_3d": None,
            "keypoints_visible": np.minimum(1, np.asarray(table.visible[i])[None] > 0),
            "iscrowd": 0,
            "segmentation": [],
            "area": np.array((x2 - x1) * (y2 - y1) * 0.53, dtype=np.float32),
            "id": int(table.instance_ids[i]),
            "category_id": 1,
            "wbpose_index": i,
        }
        info.update({k: meta[k] for k in keys})
        infos.append(info)
    return infos


class PipelineSet(torch.utils.data.Dataset):
    """MMPose's training samples: a data info deserialised (as mmengine's ``BaseDataset(serialize_data=True)``)
    and run through the pipeline."""

    def __init__(self, infos: list[dict], pipeline, length: int) -> None:
        self.blobs = [pickle.dumps(info) for info in infos]
        self.pipeline, self.length = pipeline, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return self.pipeline(pickle.loads(self.blobs[i % len(self.blobs)]))


def build(cfg_path: str, device: torch.device):
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmpose.registry import MODELS
    from mmpose.utils import register_all_modules

    register_all_modules()
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        if getattr(sys.modules[name], "__file__", None) is None and sys.modules[name].__spec__ is None:
            del sys.modules[name]  # the stand-in served MMPose's imports; others must not take it for torchvision
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.init_cfg = None  # no download; speed does not depend on the weights
    model = MODELS.build(cfg.model).to(device)
    model.train()
    return cfg, model, Compose(cfg.train_pipeline)


def time_steps(model, samples: list[dict], device: torch.device, precision: str, batch: int, warmup: int,
               steps: int) -> list[str]:  # fmt: skip
    """``[img/s, detail]`` of ``model.train_step`` on ``batch`` packed samples already on the device."""
    from mmengine.optim import build_optim_wrapper

    optim = {"type": "Adam", "lr": 5e-4}
    wrapper_cfg = ({"type": "AmpOptimWrapper", "dtype": "bfloat16", "optimizer": optim}
                   if precision == "bf16" else {"type": "OptimWrapper", "optimizer": optim})  # fmt: skip
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    chosen = [samples[i % len(samples)] for i in range(batch)]
    data = {"inputs": [s["inputs"].to(device) for s in chosen],
            "data_samples": [s["data_samples"].to(device) for s in chosen]}  # fmt: skip
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    timing = measure(lambda: model.train_step(data, wrapper), warmup=warmup, repeats=steps, sync=sync)
    rate = timing.rate(batch)
    return [f"{rate.median:.4g}", f"img/s ({rate.min:.4g}-{rate.max:.4g}), {timing.statistic}"]


def step_rows(model, samples: list[dict], device: torch.device, batches, precisions, warmup, steps) -> list:
    """MMPose's training step per precision and batch size (a batch that does not fit says so), then the largest
    batch of the last precision once more without the head's accuracy (``train_cfg.compute_acc=False``: no copy of
    the heatmaps to the host per step)."""
    rows = []
    if "bf16" in precisions and device.type != "cuda":
        rows.append(["step bf16 (AmpOptimWrapper)", "-", "skipped: MMPose's AmpOptimWrapper needs CUDA"])
        precisions = [p for p in precisions if p != "bf16"]
    runs = [(p, b, True) for p in precisions for b in batches]
    if runs:
        runs.append((precisions[-1], max(batches), False))
    for precision, batch, accuracy in runs:
        label = f"step {precision} batch {batch}" + ("" if accuracy else " without the host accuracy")
        model.train_cfg = {} if accuracy else {"compute_acc": False}
        try:
            rows.append([label, *time_steps(model, samples, device, precision, batch, warmup, steps)])
        except torch.OutOfMemoryError as error:  # batch 512 in fp32 may not fit: say so, go on
            rows.append([label, "-", f"out of memory ({str(error).splitlines()[0][:80]})"])
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(" | ".join(rows[-1]), flush=True)
    return rows


def wbpose_train_set(root: Path, cache_dir: Path | None):
    """wbpose's training dataset on the same root (MSRA targets at 256x192, MMPose's augmentation), decode_on=cpu."""
    from wbpose.codecs import make_codec
    from wbpose.data.augment import build_train_augmentations
    from wbpose.data.coco_wholebody import CocoWholeBodyDataset
    from wbpose.data.layout import TRAIN_ANN

    if cache_dir is not None:
        from wbpose.data import cache

        cache.set_cache_dir(cache_dir)
    codec = make_codec("msra", (INPUT_WH[1], INPUT_WH[0]), sigma=2.0, heatmap_hw=(64, 48))
    return CocoWholeBodyDataset(root / TRAIN_ANN, root / "train2017", INPUT_WH, codec=codec,
                                transforms=build_train_augmentations())  # fmt: skip


def pipeline_rows(dataset: PipelineSet, ours, infos: list[dict], rounds: int, per_round: int) -> list:
    """One process, OpenCV and torch on one thread: MMPose's pipeline, wbpose's (batches of 32, as its loader
    calls it) and the floor on the same people, alternated round by round; ms/sample and x the floor."""
    from mmpose.structures.bbox import get_warp_matrix

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    n = len(infos)
    paths = [info["img_path"] for info in infos]
    matrices = []
    for info in infos:
        x1, y1, x2, y2 = info["bbox"][0]
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
        scale = np.array([x2 - x1, y2 - y1]) * 1.25
        scale = np.where(scale[0] > scale[1] * 0.75, [scale[0], scale[0] / 0.75], [scale[1] * 0.75, scale[1]])
        matrices.append(get_warp_matrix(centre, scale, 0.0, output_size=INPUT_WH))
    order = [k % n for k in range(per_round)]
    ours_order = [infos[k]["wbpose_index"] for k in order]  # the same people in wbpose's dataset
    batches = [ours_order[k : k + 32] for k in range(0, per_round, 32)]
    passes = {
        "mmpose": lambda: [dataset[k] for k in order],
        "wbpose": lambda: [ours.__getitems__(b) for b in batches],
        "floor": lambda: [
            cv2.warpAffine(cv2.imread(paths[k]), matrices[k], INPUT_WH, flags=cv2.INTER_LINEAR) for k in order
        ],  # fmt: skip
    }
    times: dict[str, list[float]] = {k: [] for k in passes}
    for r in range(rounds + 1):  # round 0 warms up
        for name, run in passes.items():
            start = time.perf_counter()
            run()
            if r:
                times[name].append((time.perf_counter() - start) / per_round)
    out = []
    labels = {"mmpose": "MMPose train pipeline, 1 process", "wbpose": "wbpose train pipeline, 1 process",
              "floor": "floor (imread + warpAffine), 1 process"}  # fmt: skip
    for name, label in labels.items():
        ms = Timing.of(times[name], 1).scaled(1e3)
        ratio = Timing.of([a / b for a, b in zip(times[name], times["floor"])], 1)
        detail = f"ms/sample ({ms.min:.2f}-{ms.max:.2f}), {1e3 / ms.median:.0f}/s"
        if name != "floor":
            detail += f", {ratio.median:.2f}x the floor"
        out.append([label, f"{ms.median:.2f}", detail + f"; median of {rounds} rounds of {per_round} samples"])
    return out


def drain_rate(loader, workers: int, timed: int, batch: int) -> float:
    """Images/s of a loader after every worker has started and delivered and its prefetched batches are drained."""

    def forever():
        while True:  # a small set ends its epoch: start the next pass (the workers stay)
            yield from loader

    it = forever()
    for k in range(3 * max(1, workers) + timed):
        if k == 3 * max(1, workers):
            start = time.perf_counter()
        next(it)
    return timed * batch / (time.perf_counter() - start)


def loader_rows(dataset: PipelineSet, root: Path, cache_dir: Path | None, workers: int, batch: int, timed: int) -> list:
    """Images/s per loader worker, start-up excluded: wbpose's training loader (``WholeBodyDataModule``) and a
    ``DataLoader`` over MMPose's pipeline set up as MMPose's runner sets up its processes."""
    from mmengine.dataset import pseudo_collate
    from mmengine.utils.dl_utils import set_multi_processing

    from wbpose.codecs import make_codec
    from wbpose.engine.datamodule import WholeBodyDataModule

    codec = make_codec("msra", (INPUT_WH[1], INPUT_WH[0]), sigma=2.0, heatmap_hw=(64, 48))
    dm = WholeBodyDataModule(root, (INPUT_WH[1], INPUT_WH[0]), codec, batch_size=batch, num_workers=workers,
                             pin_memory=False, cache_dir=cache_dir, drop_last=True)  # fmt: skip
    dm.setup("fit")
    ours = drain_rate(dm.train_dataloader(), workers, timed, batch)
    set_multi_processing(distributed=False)  # what MMPose's runner does before it builds its loaders
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=pseudo_collate,
                                         persistent_workers=workers > 0, shuffle=False)  # fmt: skip
    theirs = drain_rate(loader, workers, timed, batch)
    rows = []
    for name, rate in (("wbpose", ours), ("MMPose", theirs)):
        detail = f"img/s, {rate / max(1, workers):.0f} per worker ({timed} batches after {3 * max(1, workers)})"
        rows.append([f"{name} loader, {workers} workers, batch {batch}", f"{rate:.0f}", detail])
    return rows


def synthetic_root(tmp: Path, count: int) -> Path:
    """A root of ``count`` photo-like 640x480 JPEGs (quality 95) with 2 people each: ``benchmarks/data_pipeline.py``'s
    synthetic images, in the COCO-WholeBody layout."""
    from data_pipeline import write_annotations, write_textured_jpegs  # beside this script
    from wbpose.data.layout import DET_FILE, TRAIN_ANN, VAL_ANN

    root = tmp / "synthetic"
    (root / "train2017").mkdir(parents=True)
    images = write_textured_jpegs(root / "train2017", count)
    for name in (TRAIN_ANN, VAL_ANN, DET_FILE):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
    write_annotations(images, root / TRAIN_ANN)
    (root / VAL_ANN).write_bytes((root / TRAIN_ANN).read_bytes())  # the data module wants a val split too
    (root / "val2017").symlink_to("train2017")
    people = json.loads((root / TRAIN_ANN).read_text())["annotations"]
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0} for a in people]
    (root / DET_FILE).write_text(json.dumps(dets))
    return root


def smoke_root(tmp: Path) -> Path:
    from wbpose.synthetic.full_size import generate_full_size

    generate_full_size(tmp / "root", scale=0.0004, seed=0)
    return tmp / "root"


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="COCO-WholeBody root (the GPU check's full-size fixture)")
    parser.add_argument("--cache-dir", type=Path, help="wbpose's parsed-annotation cache for --root")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 512])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--instances", type=int, default=256, help="distinct samples built by the pipeline")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synthetic", type=int, metavar="N", help="instead of --root: N synthetic 640x480 JPEGs")
    parser.add_argument("--skip-steps", action="store_true", help="the pipeline and loader rows only")
    parser.add_argument("--smoke", action="store_true", help="CPU, batch 2, 2 steps, a tiny synthetic root")
    parser.add_argument("--force-shims", action="store_true", help="install every stand-in (the CPU check)")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    # wbpose's data module imports Lightning and torchmetrics, which probe for torchvision: before any stand-in
    import wbpose.engine.datamodule  # noqa: F401

    shims = install_shims(force=args.force_shims or args.smoke)
    print(f"shims: {', '.join(shims) or 'none'}", flush=True)
    import mmcv
    import mmengine
    import mmpose

    tmp = Path(tempfile.mkdtemp(prefix="mmpose_step_"))
    if args.smoke:
        args.device, args.batches, args.precisions, args.warmup, args.steps = "cpu", [2], ["fp32", "bf16"], 1, 2
        args.instances, args.workers, args.rounds, args.root = 8, 1, 1, smoke_root(tmp)
    if args.synthetic:
        args.root = synthetic_root(tmp, args.synthetic)
    if args.root is None:
        parser.error("--root or --synthetic is required (or --smoke)")
    device = torch.device(args.device)
    versions = f"mmpose {mmpose.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}"
    rows: list[list[str]] = [["versions", versions, f"shims: {', '.join(shims) or 'none'}; device {device}"]]
    print(" | ".join(rows[-1]), flush=True)
    cfg, model, pipeline = build(mmpose_file(CONFIG), device)
    infos = data_infos(args.root, args.cache_dir, args.instances)
    dataset = PipelineSet(infos, pipeline, length=10**9)
    samples = [dataset[k] for k in range(len(infos))]
    if not args.skip_steps:
        rows += step_rows(model, samples, device, args.batches, args.precisions, args.warmup, args.steps)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    ours = wbpose_train_set(args.root, args.cache_dir)
    rows += pipeline_rows(dataset, ours, infos, args.rounds, per_round=min(128, 4 * len(infos)))
    for row in rows[-3:]:
        print(" | ".join(row), flush=True)
    batch = 64 if not args.smoke else 2
    rows += loader_rows(dataset, args.root, args.cache_dir, args.workers, batch, timed=max(8, 2 * args.workers))
    for row in rows[-2:]:
        print(" | ".join(row), flush=True)
    columns = ["row", "value", "detail"]
    print("| " + " | ".join(columns) + " |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    notes = [f"MMPose's recipe {Path(CONFIG).name}, no pretrained weights; {len(infos)} samples of its pipeline."]
    write_json(args.json, "mmpose_step", columns, rows, notes)
    return rows


if __name__ == "__main__":
    main()

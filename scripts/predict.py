"""Predict whole-body poses on images and draw them.

Usage:
    python scripts/predict.py CHECKPOINT IMAGES [--boxes det.json] [--out DIR] [--score-thr 0.3]
        [--box-thr 0.3] [--no-flip] [--device cpu] [--image-hw 256 192] [--codec msra|dark] [--batch-size 32]

CHECKPOINT is a Lightning ``.ckpt`` from ``scripts/train.py`` or an MMPose 0.x/1.x ``.pth`` (loaded
``weights_only``; for MMPose files give the input size and codec of the model, default 256x192 MSRA). IMAGES is an
image file or a folder of images (jpg, jpeg, png, bmp, webp; not recursive).

Boxes come from a COCO detection results json (``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``,
optionally with a ``file_name``): person boxes (category 1) with ``score >= --box-thr`` are matched to an image by
``file_name`` when the entries have one, else by the image id read from a COCO file name (``000000000785.jpg`` ->
785). An image without matching boxes gets no poses. Without ``--boxes`` the whole image is one box.

Writes into ``--out``: ``<image stem>.png``, the image with the 133-point skeletons (keypoints with score above
``--score-thr``), and ``results.json`` with every prediction in the official COCO-WholeBody results format. The image
id of a result is the number of a COCO-style file name, else the ``image_id`` of its detections, else the image's
position in the sorted listing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
log = logging.getLogger("predict")


def list_images(images: Path) -> list[Path]:
    """The image file, or the images of a folder in sorted order."""
    if images.is_file():
        return [images]
    if not images.is_dir():
        raise FileNotFoundError(f"image file or folder not found: {images}")
    files = sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {images}")
    return files


def coco_image_id(path: Path) -> int | None:
    """The image id of a COCO file name (``000000000785.jpg`` -> 785), or None."""
    stem = path.stem.rsplit("_", 1)[-1]  # also COCO_val2014_000000000785.jpg
    return int(stem) if stem.isdigit() else None


def read_detections(path: Path, box_thr: float) -> tuple[dict[object, list[dict]], int]:
    """Person detections grouped by ``file_name`` (when present) or ``image_id``; returns them and the kept count.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a list of ``{image_id, category_id, bbox, score}`` records.
    """
    if not path.is_file():
        raise FileNotFoundError(f"detection file not found: {path}")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"detection file {path} is not valid json: {err}") from None
    if not isinstance(records, list):
        raise ValueError(f"detection file {path}: expected a json list of detections, got {type(records).__name__}")
    groups: dict[object, list[dict]] = defaultdict(list)
    kept = 0
    for i, det in enumerate(records):
        if not isinstance(det, dict) or "bbox" not in det or ("image_id" not in det and "file_name" not in det):
            raise ValueError(f"detection file {path}: record #{i} lacks 'bbox' and 'image_id' (or 'file_name')")
        if int(det.get("category_id", 1)) != 1 or float(det.get("score", 1.0)) < box_thr:
            continue
        if len(det["bbox"]) != 4:
            raise ValueError(f"detection file {path}: record #{i} has bbox {det['bbox']}, expected [x, y, w, h]")
        key = Path(det["file_name"]).name if "file_name" in det else int(det["image_id"])
        groups[key].append(det)
        kept += 1
    return groups, kept


def boxes_for(image: Path, detections: dict[object, list[dict]] | None) -> tuple[np.ndarray | None, np.ndarray, int]:
    """``(boxes (N, 4) xywh or None for the whole image, scores (N,), image id or -1)`` of one image."""
    image_id = coco_image_id(image)
    if detections is None:
        return None, np.ones(1), -1 if image_id is None else image_id
    dets = detections.get(image.name)
    if dets is None and image_id is not None:
        dets = detections.get(image_id)
    dets = dets or []
    if image_id is None and dets and "image_id" in dets[0]:
        image_id = int(dets[0]["image_id"])
    boxes = np.asarray([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)
    # Degenerate boxes (w or h <= 0) cannot be cropped; the dataset drops them the same way.
    ok = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    scores = np.asarray([float(d.get("score", 1.0)) for d in dets], dtype=np.float64)
    return boxes[ok], scores[ok], -1 if image_id is None else image_id


def run(args: argparse.Namespace) -> dict:
    """Predict on every image and write the overlays and ``results.json``; returns a summary."""
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    images = list_images(Path(args.images))
    detections = None
    if args.boxes is not None:
        detections, kept = read_detections(Path(args.boxes), args.box_thr)
        log.info("%d person boxes with score >= %g in %s", kept, args.box_thr, args.boxes)
    # Imported after the input checks, so that a mistyped path fails without waiting for torch.
    from wbpose.inference import Predictor, read_image, to_coco_results
    from wbpose.metrics.evaluation import write_results
    from wbpose.visualize import draw_pose, save_png

    predictor = Predictor.from_checkpoint(
        checkpoint,
        device=args.device,
        flip_test=not args.no_flip,
        image_hw=args.image_hw,
        codec=args.codec,
        batch_size=args.batch_size,
    )
    log.info("%r", predictor)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    people, without_boxes, start = 0, 0, time.perf_counter()
    for index, path in enumerate(images):
        rgb = read_image(path)
        boxes, box_scores, image_id = boxes_for(path, detections)
        prediction = predictor.predict(rgb, boxes, box_scores)
        image_id = index if image_id < 0 else image_id
        results += to_coco_results(prediction, image_id)
        people += len(prediction)
        without_boxes += int(len(prediction) == 0)
        drawn = draw_pose(rgb, prediction.keypoints, prediction.keypoint_scores, args.score_thr,
                          boxes_xywh=prediction.boxes)  # fmt: skip
        save_png(out / f"{path.stem}.png", drawn)
    write_results(out / "results.json", results)
    seconds = time.perf_counter() - start
    if without_boxes and detections is not None:
        log.warning("%d of %d images had no person box with score >= %g", without_boxes, len(images), args.box_thr)
    print(f"{len(images)} images, {people} people in {seconds:.1f} s -> {out}/*.png, {out / 'results.json'}")
    return {"images": len(images), "people": people, "seconds": seconds, "out": str(out)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="Lightning .ckpt or MMPose .pth")
    parser.add_argument("images", help="an image file or a folder of images")
    parser.add_argument("--boxes", default=None, help="COCO detection results json (default: whole image)")
    parser.add_argument("--out", default="outputs/predict", help="output folder (default: outputs/predict)")
    parser.add_argument("--score-thr", type=float, default=0.3, help="draw keypoints with a score above this")
    parser.add_argument("--box-thr", type=float, default=0.3, help="use detections with a score >= this")
    parser.add_argument("--no-flip", action="store_true", help="disable the flip test")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    parser.add_argument("--image-hw", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="network input size (default: the checkpoint's config or released recipe)")  # fmt: skip
    parser.add_argument("--codec", choices=("msra", "dark"), default=None,
                        help="heatmap decoding (default: the checkpoint's config or released recipe)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32, help="crops per forward pass")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 with a message on a bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        run(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

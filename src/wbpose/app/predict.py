"""Predict whole-body poses on images, videos or a webcam, draw them and write COCO-WholeBody results.

Usage:
    wbpose-predict MODEL --source SOURCE [--boxes det.json | --detector det.onnx] [--track]
        [--out DIR] [--out-video PATH] [--fourcc XXXX] [--max-frames N] [--score-thr 0.3] [--box-thr 0.3]
        [--no-flip] [--device cpu] [--image-hw 256 192] [--codec msra|dark] [--batch-size 32] [--threads N]

(``python scripts/predict.py ...`` is the same command.) MODEL is a Lightning ``.ckpt`` from ``wbpose-train``, an
MMPose 0.x/1.x ``.pth`` (loaded ``weights_only``; a released file name gives its input size and codec, else pass
``--image-hw`` and ``--codec``), or an ``.onnx`` file from ``wbpose-export`` (run with ONNX Runtime; its metadata
gives input size, codec and flip test).

SOURCE is an image, a folder of images (jpg, jpeg, png, bmp, webp; not recursive), a quoted glob
(``'shots/*.jpg'``), a video file (mp4, avi, mov, mkv, webm, ...), or a webcam index (``0``).

Person boxes (one of):

- ``--boxes det.json``: a COCO detection results json (``[{"image_id", "category_id", "bbox": [x, y, w, h],
  "score"}]``, optionally with ``file_name``): person boxes (category 1) with ``score >= --box-thr``. Images are
  matched by ``file_name`` when the entries have one, else by the image id of a COCO file name
  (``000000000785.jpg`` -> 785); a video's frames by ``image_id`` = frame index (0-based). An image without
  matching boxes gets no poses.
- ``--detector det.onnx``: an RTMDet/YOLOX person detector exported by MMDeploy (end2end, NMS inside), run with
  ONNX Runtime (contract: ``wbpose/inference/detector.py``); ``--det-family rtmdet|yolox`` when the file name
  does not say, ``--det-score-thr``, ``--det-nms-thr``.
- neither: the whole image is one person (single-person crops); a warning says so, since several people in one
  image then become one skeleton.

Boxes of a ``--boxes`` file with a NaN or infinite number, a width or height <= 0, or a NaN, infinite or negative
score are dropped on loading, with a warning naming the file, the count and the records.

``--track`` (videos, webcams): pose tracking: the box source every ``--det-every`` frames (default 5), in between
each person's box from its last keypoints, ``--track-match iou|oks``; each result gets a ``track_id``.

Writes into ``--out`` (default ``outputs/predict``): for images ``<image stem>.png`` (the image with the 133-point
skeletons, keypoints with score above ``--score-thr``); for a video or webcam ``<input stem>.mp4`` (or
``--out-video``; ``.avi`` gives Motion-JPEG) at the input's fps and size; and ``results.json`` (or ``--out-json``;
with ``--out-video`` and no ``--out``, beside the video: same stem, ``.json``) with every prediction in the
official COCO-WholeBody results format (strict json: a pose with a NaN or infinite value is left out and counted).
The image id of a result is the frame index for a video, else the number of a COCO-style file name, else the
``image_id`` of its detections, else the image's position in the sorted listing. Every output location is checked
before the model loads: a file in the way or a folder without write permission is named.

An unreadable image of a folder or glob (missing, truncated, corrupt) or an undecodable frame inside a video is
skipped with a warning naming it, and counted and listed in the summary; ``--strict`` stops at the first one with
an error instead. A single image given alone that does not read is always an error.

The script sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment has a value: torch's idle OpenMP workers then
sleep instead of spinning, so the frame reader and writer threads (and other jobs) get the cores. The price is a
wake-up per parallel region: a small network on two threads runs several times slower than with spinning threads
on an idle machine, so on a 2-core machine small models are fastest with ``--threads 1`` (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from wbpose.inference.boxes import DetectionFile, read_detections  # noqa: F401  (re-exported for callers)
from wbpose.inference.sources import open_source
from wbpose.inference.writers import DEFAULT_OUT, check_outputs, output_paths

log = logging.getLogger("predict")


def make_box_source(args: argparse.Namespace, source_kind: str):
    """The person-box source the arguments ask for (a tracker around it with ``--track``)."""
    from wbpose.inference.boxes import WholeImage

    if args.boxes is not None and args.detector is not None:
        raise ValueError("give either --boxes (a detections file) or --detector (an ONNX detector), not both")
    if args.boxes is not None:
        boxes = DetectionFile(Path(args.boxes), args.box_thr)
    elif args.detector is not None:
        from wbpose.inference.detector import OnnxPersonDetector

        boxes = OnnxPersonDetector(Path(args.detector), family=args.det_family, score_thr=args.det_score_thr,
                                   nms_thr=args.det_nms_thr, threads=args.threads)  # fmt: skip
    else:
        boxes = WholeImage()
    if args.track:
        if source_kind == "images":
            raise ValueError("--track follows people through a video or webcam; the source is images")
        from wbpose.inference.tracking import PoseTracker

        boxes = PoseTracker(boxes, det_every=args.det_every, match=args.track_match)
    return boxes


def run(args: argparse.Namespace) -> dict:
    """Predict on every frame and write the drawn frames and ``results.json``; returns a summary."""
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    source = open_source(args.source, max_frames=args.max_frames, strict=args.strict)
    try:
        outputs = output_paths(source.kind, source.name, args.out, video_path=args.out_video,
                               results_path=args.out_json)  # fmt: skip
        check_outputs(outputs)  # a read-only or mistyped output location: named before any work
        boxes = make_box_source(args, source.kind)
        boxes.check_source(source)  # e.g. detections of another video: fail before loading the model
        # Imported after the input checks, so that a mistyped path fails without waiting for torch.
        import torch

        from wbpose.inference import Predictor
        from wbpose.inference.pipeline import run as run_pipeline

        if args.threads:
            torch.set_num_threads(args.threads)
        predictor = Predictor.from_checkpoint(
            checkpoint,
            device=args.device,
            flip_test=not args.no_flip,
            image_hw=args.image_hw,
            codec=args.codec,
            batch_size=args.batch_size,
        )
        log.info("%r; source: %r; boxes: %r", predictor, source, boxes)
        result = run_pipeline(predictor, source, boxes, args.out, video_path=args.out_video,
                              results_path=args.out_json, fourcc=args.fourcc, score_thr=args.score_thr,
                              progress=not args.no_progress)  # fmt: skip
    finally:
        source.close()
    if result.frames_without_people and args.boxes is not None and source.kind == "images":
        log.warning("%d of %d images had no person box with score >= %g", result.frames_without_people,
                    result.frames, args.box_thr)  # fmt: skip
    drawn = result.video_path if result.video_path is not None else f"{result.image_folder}/*.png"
    unit = "images" if source.kind == "images" else "frames"
    tracks = f", {result.track_ids} track ids" if args.track else ""
    skipped = f" ({len(result.skipped)} unreadable, skipped)" if result.skipped else ""
    print(f"{result.frames} {unit}{skipped}, {result.people} people{tracks} in {result.seconds:.1f} s "
          f"({result.fps:.1f} frames/s) -> {drawn}, {result.results_path}")  # fmt: skip
    if result.nonfinite_poses:
        print(f"left out {result.nonfinite_poses} poses with a NaN or infinite keypoint or score (see the log)")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable {unit} (--strict stops at the first):")
        print("\n".join(f"  {line}" for line in result.skipped))
    return {"images": result.frames, "frames": result.frames, "people": result.people, "seconds": result.seconds,
            "out": str(args.out or DEFAULT_OUT), "video": str(result.video_path) if result.video_path else None,
            "results": str(result.results_path), "track_ids": result.track_ids,
            "skipped": list(result.skipped)}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="Lightning .ckpt, MMPose .pth, or .onnx from wbpose-export")
    parser.add_argument("--source", required=True, help="image, folder, quoted glob, video file or webcam index")
    parser.add_argument("--boxes", default=None, help="COCO detection results json (default: whole image)")
    parser.add_argument("--detector", default=None, help="ONNX RTMDet/YOLOX person detector (MMDeploy end2end)")
    parser.add_argument("--det-family", choices=("rtmdet", "yolox"), default=None,
                        help="detector normalisation (default: from the detector's file name)")  # fmt: skip
    parser.add_argument("--det-score-thr", type=float, default=0.3, help="detector boxes with a score >= this")
    parser.add_argument("--det-nms-thr", type=float, default=0.45, help="IoU of the detector's box NMS")
    parser.add_argument("--track", action="store_true", help="pose tracking (videos): track ids, fewer detections")
    parser.add_argument("--det-every", type=int, default=5, help="with --track: boxes from the source every N frames")
    parser.add_argument("--track-match", choices=("iou", "oks"), default="iou", help="with --track: matching")
    parser.add_argument("--out", default=None, help="output folder (default: outputs/predict)")
    parser.add_argument("--out-video", default=None, help="annotated video path (default: OUT/<input stem>.mp4)")
    parser.add_argument("--out-json", default=None,
                        help="results json (default: OUT/results.json; with --out-video and no --out: beside the "
                        "video, same stem, .json)")  # fmt: skip
    parser.add_argument("--fourcc", default=None, help="video codec FourCC (default: mp4v for .mp4, MJPG for .avi)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop a video or webcam after N frames")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--strict", action="store_true",
                        help="stop at an unreadable image or video frame (default: skip it, warn)")  # fmt: skip
    parser.add_argument("--score-thr", type=float, default=0.3, help="draw keypoints with a score above this")
    parser.add_argument("--box-thr", type=float, default=0.3, help="use detections with a score >= this")
    parser.add_argument("--no-flip", action="store_true", help="disable the flip test")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    parser.add_argument("--image-hw", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="network input size (default: the checkpoint's config or released recipe)")  # fmt: skip
    parser.add_argument("--codec", choices=("msra", "dark"), default=None,
                        help="heatmap decoding (default: the checkpoint's config or released recipe)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32, help="crops per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch / ONNX Runtime")
    return parser.parse_intermixed_args(argv)  # MODEL may follow the options


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 with a message on a bad input)."""
    if "torch" not in sys.modules:
        # torch's OpenMP workers spin while idle by default; on a few cores the frame reader and writer threads (and
        # any other job) then wait for them: on this project's 2-core machine with one core busy elsewhere, the tiny
        # network took 200-800 ms a frame spinning and 21 ms passive. It must be set before torch loads (torch is
        # imported after the input checks); a value in the environment wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        run(args)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Frames in, poses, an annotated video (or PNGs) and one results json out: the loop behind ``scripts/predict.py``.

:func:`run` reads the frames of a :class:`~wbpose.inference.sources.FrameSource` in a background thread
(:func:`~wbpose.inference.sources.prefetch`), asks a :class:`~wbpose.inference.boxes.BoxSource` (or a
:class:`~wbpose.inference.tracking.PoseTracker`) for person boxes, predicts the poses with a
:class:`~wbpose.inference.Predictor`, and hands drawing and encoding to another background thread
(:class:`~wbpose.inference.writers.BackgroundWorker`), so the network never waits on I/O. A progress bar shows
frames/s.

Outputs, in ``out`` (default ``outputs/predict``; :func:`wbpose.inference.writers.output_paths`):

- a video or webcam: ``<input stem>.mp4`` (or ``video_path``), same fps and size as the input, every frame with its
  skeletons, boxes and (tracking) track ids; images: ``<image stem>.png`` per image;
- ``results.json`` (or ``results_path``; a video given ``video_path`` and no ``out``: beside that video, same stem,
  ``.json``): every pose in the official COCO-WholeBody results format (MMPose's), ``image_id`` = frame index for
  a video (one file for the whole video), for images the number of a COCO file name, else the ``image_id`` of its
  detections, else its position; with tracking each entry also has ``track_id``.

Every output location is checked before the first frame is read (a file in the way or a folder without write
permission is named). The results json is strict json: a pose with a non-finite keypoint or score (a broken or
overflowing network) is left out of it and of the drawing, counted in ``RunResult.nonfinite_poses`` and logged.
Without person boxes (:class:`~wbpose.inference.boxes.WholeImage`) a warning says that each whole image is one
person box.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from wbpose.inference.boxes import BoxSource, DetectionFile, WholeImage
from wbpose.inference.prediction import PosePrediction, to_coco_results
from wbpose.inference.predictor import WHOLE_IMAGE_WARNING, Predictor
from wbpose.inference.sources import Frame, FrameSource, coco_image_id, open_source, prefetch
from wbpose.inference.tracking import PoseTracker
from wbpose.inference.writers import (
    BackgroundWorker,
    ImageSink,
    VideoSink,
    check_outputs,
    output_paths,
    write_results_json,
)

log = logging.getLogger(__name__)

__all__ = ["RunResult", "draw_frame", "make_boxes", "predict_source", "run"]


@dataclass
class RunResult:
    """What :func:`run` did.

    Attributes:
        frames: frames (images) processed.
        people: poses written.
        seconds: wall time of the loop (reading to the last frame written).
        results_path: the results json.
        video_path: the annotated video (videos, webcams), else ``None``.
        image_folder: the folder of PNGs (images), else ``None``.
        frames_without_people: frames where no pose was predicted.
        track_ids: distinct track ids (tracking), else 0.
        skipped: ``"<file or frame>: <why>"`` of each image or video frame skipped as unreadable (not in
            ``frames``; ``FrameSource.skipped``).
        nonfinite_poses: poses left out because a keypoint or score was NaN or infinite (logged).
        timings: seconds spent in each main-thread step (``boxes``, ``pose``, ``track``, ``wait_read``,
            ``wait_write``) and the writer thread's busy time (``draw_write``).
    """

    frames: int
    people: int
    seconds: float
    results_path: Path
    video_path: Path | None = None
    image_folder: Path | None = None
    frames_without_people: int = 0
    track_ids: int = 0
    nonfinite_poses: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def draw_frame(
    image_rgb: np.ndarray,
    prediction: PosePrediction,
    track_ids: np.ndarray | None,
    score_thr: float,
    *,
    bgr: bool = False,
    in_place: bool = False,
) -> np.ndarray:
    """The frame with its skeletons, boxes (white) and track ids.

    ``bgr``: the image is BGR (colours given in that order); ``in_place``: draw on it instead of a copy
    (:func:`wbpose.visualize.draw_pose`).
    """
    from wbpose.visualize import draw_caption, draw_pose

    drawn = draw_pose(image_rgb, prediction.keypoints, prediction.keypoint_scores, score_thr,
                      boxes_xywh=prediction.boxes, bgr=bgr, in_place=in_place)  # fmt: skip
    if track_ids is not None:
        scale = max(0.35, max(image_rgb.shape[:2]) / 1200)
        for (x, y, _, _), tid in zip(prediction.boxes.tolist(), np.asarray(track_ids).tolist()):
            draw_caption(drawn, f"id {tid}", (int(x) + 3, max(int(y) + int(22 * scale), 12)), font_scale=scale)
    return drawn


def _uses_whole_images(boxes: BoxSource) -> bool:
    """The box source is the whole image (alone or inside a tracker)."""
    if isinstance(boxes, PoseTracker):
        boxes = boxes.detector
    return isinstance(boxes, WholeImage)


def _drop_nonfinite(prediction: PosePrediction, name: str, warn: bool) -> tuple[PosePrediction, int]:
    """The poses whose keypoints and scores are all finite, and how many were left out (``warn``: log it, naming
    the frame; later frames are only counted)."""
    finite = (
        np.isfinite(prediction.keypoints).all((1, 2))
        & np.isfinite(prediction.keypoint_scores).all(1)
        & np.isfinite(prediction.scores)
    )
    if finite.all():
        return prediction, 0
    bad = int((~finite).sum())
    if warn:
        log.warning("%s: left out %d of %d poses with a NaN or infinite keypoint or score (the network's output; "
                    "later frames are counted in the summary)", name, bad, len(prediction))  # fmt: skip
    return prediction.take(finite), bad


def _progress(enabled: bool, total: int | None, label: str):
    """A rich progress bar on stderr with frames/s, or ``None``."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} frames/s"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    )
    progress.add_task(label, total=total, fps=0.0)
    return progress


class StageClock:
    """Wall time of a loop per named stage: :meth:`lap` adds the time since the previous lap (or :meth:`start`)
    to the stage it names; ``totals`` holds the sums (seconds), in the order the stages were named."""

    def __init__(self, stages: tuple[str, ...]) -> None:
        self.totals: dict[str, float] = dict.fromkeys(stages, 0.0)
        self._last = time.perf_counter()

    def start(self) -> float:
        """Start timing (the next lap counts from now); returns the time."""
        self._last = time.perf_counter()
        return self._last

    def lap(self, stage: str) -> float:
        """Add the time since the previous lap to ``stage`` and start the next; returns the time."""
        now = time.perf_counter()
        self.totals[stage] += now - self._last
        self._last = now
        return now


def run(
    predictor: Predictor,
    source: FrameSource,
    boxes: BoxSource,
    out: str | os.PathLike | None = None,
    *,
    video_path: str | os.PathLike | None = None,
    results_path: str | os.PathLike | None = None,
    fourcc: str | None = None,
    score_thr: float = 0.3,
    draw: bool = True,
    progress: bool = True,
    results_name: str = "results.json",
    prefetch_depth: int = 4,
) -> RunResult:
    """Predict on every frame of ``source`` and write the drawn frames and the results json into ``out``.

    Args:
        predictor: the pose model.
        source: frames (images, a video or a webcam).
        boxes: person boxes per frame; a :class:`PoseTracker` also gives each pose a ``track_id``.
        out: output folder (default ``outputs/predict``).
        video_path: the annotated video (videos and webcams; default ``out/<input stem>.mp4``).
        results_path: the results json (default: ``out/<results_name>``, or beside ``video_path`` (same stem,
            ``.json``) for a video given ``video_path`` and no ``out``).
        fourcc: video codec (default: the container's, see :mod:`wbpose.inference.writers`).
        score_thr: keypoints with a score above this are drawn.
        draw: write the annotated video / PNGs (else only the results json).
        progress: show a progress bar with frames/s on stderr.
        results_name: file name of the results json in ``out``.
        prefetch_depth: frames read ahead.

    Raises:
        ValueError: boxes that cannot belong to the source (e.g. detections of another video), an output path
            that cannot be written (named, before any frame is read), a video container/codec the writer cannot
            open; read errors of the source, naming the file.
    """
    paths = output_paths(source.kind, source.name, out, video_path=video_path, results_path=results_path,
                         draw=draw, results_name=results_name)  # fmt: skip
    check_outputs(paths)
    boxes.check_source(source)
    if _uses_whole_images(boxes):
        log.warning(WHOLE_IMAGE_WARNING)
    tracker = boxes if isinstance(boxes, PoseTracker) else None
    is_video = source.kind in ("video", "webcam")
    sink: VideoSink | ImageSink | None = None
    if paths.video is not None:
        sink = VideoSink(paths.video, source.fps or 30.0, source.frame_wh, fourcc)
    elif paths.images is not None:
        sink = ImageSink(paths.images)
    writer = BackgroundWorker(depth=prefetch_depth) if sink is not None else None
    results: list[dict] = []
    clock = StageClock(("wait_read", "boxes", "pose", "track", "wait_write"))
    frames = people = empty = nonfinite = 0
    seen_ids: set[int] = set()
    start = last = time.perf_counter()
    bar = _progress(progress, source.num_frames, Path(source.name).name or source.kind)
    frame_iter = prefetch(source, depth=prefetch_depth)
    try:
        with bar if bar is not None else nullcontext():
            while True:
                clock.start()
                try:
                    frame: Frame = next(frame_iter)
                except StopIteration:
                    break
                clock.lap("wait_read")
                person_boxes = boxes(frame)
                clock.lap("boxes")
                try:  # frames are RGB (sources.Frame)
                    prediction = predictor.predict(frame.image, person_boxes.xywh, person_boxes.scores,
                                                   channel_order="rgb")  # fmt: skip
                except ValueError as err:  # e.g. boxes or heatmaps the predictor refuses: name the frame
                    raise ValueError(f"{frame.name}: {err}") from err
                prediction, bad = _drop_nonfinite(prediction, frame.name, warn=nonfinite == 0)
                nonfinite += bad
                clock.lap("pose")
                track_ids = None
                if tracker is not None:
                    keep, track_ids = tracker.update(frame, prediction)
                    prediction = prediction.take(keep)
                    seen_ids.update(track_ids.tolist())
                clock.lap("track")
                results += to_coco_results(prediction, _image_id(frame, person_boxes.image_id, is_video), track_ids)
                people += len(prediction)
                empty += int(len(prediction) == 0)
                frames += 1
                if writer is not None:
                    writer.put(_draw_task(sink, frame, prediction, track_ids, score_thr, is_video))
                now = clock.lap("wait_write")
                if bar is not None and (now - last > 0.25 or frames == source.num_frames):
                    bar.update(bar.task_ids[0], completed=frames, fps=frames / max(now - start, 1e-9))
                    last = now
    except KeyboardInterrupt:
        if source.kind != "webcam":
            raise
        log.info("stopped after %d webcam frames", frames)
    finally:
        frame_iter.close()
        source.close()
        if writer is not None:
            clock.start()
            try:
                writer.close()
            finally:
                sink.close()  # type: ignore[union-attr]
            clock.lap("wait_write")
            clock.totals["draw_write"] = writer.busy_s
    seconds = time.perf_counter() - start
    if nonfinite:
        log.warning("left out %d poses with a NaN or infinite keypoint or score (%d frames of %s read)", nonfinite,
                    frames, source.name)  # fmt: skip
    written = write_results_json(paths.results, results)
    return RunResult(
        frames=frames,
        people=people,
        seconds=seconds,
        results_path=written,
        video_path=paths.video,
        image_folder=paths.images,
        frames_without_people=empty,
        track_ids=len(seen_ids),
        nonfinite_poses=nonfinite,
        timings=clock.totals,
        skipped=list(getattr(source, "skipped", None) or []),
    )


def _image_id(frame: Frame, box_image_id: int | None, is_video: bool) -> int:
    """The results' ``image_id`` of a frame: its index in a video; for an image, the detection file's id, else
    the COCO id in its file name, else its index."""
    if is_video:
        return frame.index
    if box_image_id is None and frame.path is not None:
        box_image_id = coco_image_id(frame.path)
    return frame.index if box_image_id is None else box_image_id


def _draw_task(sink, frame: Frame, prediction: PosePrediction, track_ids, score_thr: float, is_video: bool):
    """Drawing and encoding of one frame, for the writer thread.

    It draws in OpenCV's BGR order on the one BGR copy of the frame that the writer needs anyway, so the frame is
    converted once and not copied again (the pixels are those of an RGB drawing converted to BGR).
    """

    def task() -> None:
        canvas = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        draw_frame(canvas, prediction, track_ids, score_thr, bgr=True, in_place=True)
        if is_video:
            sink.write_bgr(canvas)
        else:
            sink.write_bgr(canvas, frame.name)

    return task


def make_boxes(boxes: BoxSource | str | os.PathLike | None, box_thr: float = 0.3, **detector_options) -> BoxSource:
    """A box source from what a caller has: ``None`` (the whole image), a detections ``.json``, a detector ``.onnx``
    (``detector_options`` go to :class:`~wbpose.inference.detector.OnnxPersonDetector`), or a box source."""
    if boxes is None:
        return WholeImage()
    if isinstance(boxes, BoxSource):
        return boxes
    path = Path(boxes)
    if path.suffix.lower() == ".onnx":
        from wbpose.inference.detector import OnnxPersonDetector

        return OnnxPersonDetector(path, **detector_options)
    return DetectionFile(path, box_thr)


def predict_source(
    predictor: Predictor,
    source: FrameSource | str | int | os.PathLike,
    boxes: BoxSource | str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    track: bool = False,
    det_every: int = 5,
    max_frames: int | None = None,
    box_thr: float = 0.3,
    strict: bool = False,
    **options,
) -> RunResult:
    """The Python form of ``scripts/predict.py``: any source, any box source, optional tracking.

    Example::

        predictor = Predictor.from_checkpoint("model.onnx")      # or a .ckpt / MMPose .pth
        result = predict_source(predictor, "dance.mp4", "yolox_m_person.onnx", "out", track=True)
        result.video_path, result.results_path

    Args:
        predictor: the pose model.
        source: an image, folder, glob, video file or webcam index (:func:`~wbpose.inference.sources.open_source`),
            or a frame source.
        boxes: ``None`` (whole image), a detections json, an ONNX person detector, or a box source.
        out: output folder (default ``outputs/predict``; see :func:`run` for where the results json goes).
        track: pose tracking (videos, webcams): ``boxes`` every ``det_every`` frames, track ids in the results.
        det_every: detection interval with ``track``.
        max_frames: stop a video or webcam after this many frames.
        box_thr: smallest score of a detections-file box.
        strict: raise on an unreadable image of a folder or an undecodable video frame instead of skipping it
            (:func:`~wbpose.inference.sources.open_source`).
        options: further :func:`run` arguments (``video_path``, ``results_path``, ``fourcc``, ``score_thr``,
            ``draw``, ``progress``).
    """
    frames = source if isinstance(source, FrameSource) else open_source(source, max_frames, strict=strict)
    box_source = make_boxes(boxes, box_thr)
    if track:
        if frames.kind == "images":
            frames.close()
            raise ValueError("tracking follows people through a video or webcam; the source is images")
        box_source = PoseTracker(box_source, det_every=det_every)
    return run(predictor, frames, box_source, out, **options)

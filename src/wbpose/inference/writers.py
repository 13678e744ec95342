"""Where drawn frames go: an annotated video (OpenCV's writer) or a PNG per image, drawn in a background thread.

:class:`VideoSink` writes frames at the input's fps and size with the codec OpenCV's writer offers for the
container (:data:`FOURCC_BY_SUFFIX`: ``.mp4`` MPEG-4 Part 2 ``mp4v``, ``.avi`` Motion-JPEG, ``.mkv`` ``XVID``,
``.webm`` VP8), or a given FourCC; when the writer cannot open that container/codec a ``ValueError`` names the
file, the codec and containers to try. :class:`ImageSink` writes ``<stem>.png`` per image.

:class:`BackgroundWorker` runs drawing and encoding off the main thread (OpenCV releases the GIL), with a bounded
queue, so the network does not wait for them; errors there reach the caller on the next ``put`` or on ``close``.

Where outputs go (:func:`output_paths`) and whether they can go there (:func:`check_outputs`) are decided before any
frame is read, so a read-only or mistyped output location is named at start-up (not blamed on a codec later).
:func:`write_results_json` writes the results json as strict json (atomically, mode 0666 less the umask): a NaN
or infinity is an error there, and the pipeline drops non-finite poses (counted, logged) before they reach it.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wbpose.metrics.files import write_atomic

__all__ = [
    "DEFAULT_OUT",
    "FOURCC_BY_SUFFIX",
    "BackgroundWorker",
    "ImageSink",
    "OutputPaths",
    "VideoSink",
    "check_outputs",
    "check_writable",
    "output_paths",
    "write_results_json",
]

#: Default FourCC of each container (what OpenCV's FFmpeg writer supports out of the box).
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID", ".webm": "VP80"}
#: Output folder when none is given.
DEFAULT_OUT = Path("outputs/predict")


@dataclass(frozen=True)
class OutputPaths:
    """Where one run writes.

    Attributes:
        results: the results json.
        video: the annotated video (videos and webcams, when drawing), else ``None``.
        images: the folder of the drawn PNGs (images, when drawing), else ``None``.
    """

    results: Path
    video: Path | None = None
    images: Path | None = None


def output_paths(
    source_kind: str,
    source_name: str,
    out: str | os.PathLike | None = None,
    *,
    video_path: str | os.PathLike | None = None,
    results_path: str | os.PathLike | None = None,
    draw: bool = True,
    results_name: str = "results.json",
) -> OutputPaths:
    """The output files of a run on a source of ``source_kind`` (``"images"``, ``"video"``, ``"webcam"``).

    - a video or webcam, when drawing: ``video_path``, else ``<out>/<input stem><suffix>`` (``.mp4`` unless the
      input's container is one the writer knows);
    - images, when drawing: a PNG per image in ``out``;
    - the results json: ``results_path``; else, for a video given ``video_path`` and no ``out``, beside that video
      (same stem, ``.json``); else ``<out>/<results_name>``.

    ``out`` ``None`` is :data:`DEFAULT_OUT`.
    """
    is_video = source_kind in ("video", "webcam")
    folder = Path(out) if out is not None else DEFAULT_OUT
    video: Path | None = None
    if draw and is_video:
        if video_path is not None:
            video = Path(video_path)
        else:
            stem, suffix = Path(source_name).stem, Path(source_name).suffix.lower()
            video = folder / f"{stem}{suffix if suffix in FOURCC_BY_SUFFIX else '.mp4'}"
    if results_path is not None:
        results = Path(results_path)
    elif video is not None and video_path is not None and out is None:
        results = video.with_suffix(".json")
    else:
        results = folder / results_name
    return OutputPaths(results=results, video=video, images=folder if draw and not is_video else None)


def check_writable(path: str | os.PathLike, what: str, folder: bool = False) -> None:
    """Refuse, naming it, an output ``path`` that cannot be created: a file where a folder is needed (or the other
    way round), or a nearest existing folder that is not writable. Nothing is created.

    Args:
        path: the output file (or folder with ``folder=True``).
        what: what it is, for the message ("results json", "annotated video", "output folder").
        folder: ``path`` is a folder to create or reuse.

    Raises:
        ValueError: it cannot be written, naming ``path`` and the blocking file or folder.
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise ValueError(f"cannot write the {what} {path}: it is a file, not a folder")
        if not folder and path.is_dir():
            raise ValueError(f"cannot write the {what} {path}: it is a folder, not a file")
        if not os.access(path if folder else path.parent, os.W_OK | os.X_OK) or not os.access(path, os.W_OK):
            raise ValueError(f"cannot write the {what} {path}: no write permission")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(
            f"cannot write the {what} {path}: {parent} is a file, not a folder; choose an output path in a folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the {what} {path}: the folder {parent} is not writable")


def check_outputs(paths: OutputPaths) -> None:
    """:func:`check_writable` on every output of a run (before any work starts)."""
    if paths.images is not None:
        check_writable(paths.images, "output folder", folder=True)
    if paths.video is not None:
        check_writable(paths.video, "annotated video")
    check_writable(paths.results, "results json")


def write_results_json(path: str | os.PathLike, results: list[dict]) -> Path:
    """Write results as strict json, atomically and readable like any file the user writes
    (:func:`wbpose.metrics.files.write_atomic`).

    Raises:
        ValueError: a NaN or infinite number in ``results`` (strict json has none), naming the file; nothing is
            written then.
    """
    path = Path(path)
    try:
        text = json.dumps(results, separators=(",", ":"), allow_nan=False)
    except ValueError as err:
        raise ValueError(f"refusing to write {path}: the results hold a non-finite number ({err})") from None
    return write_atomic(path, text.encode())


class VideoSink:
    """An annotated video: RGB frames in, encoded with OpenCV's ``VideoWriter``.

    Args:
        path: the output file; its suffix picks the container (and the default codec).
        fps: frames per second (the input's).
        frame_wh: (width, height) of every frame (the input's).
        fourcc: four-character codec code (default: :data:`FOURCC_BY_SUFFIX` of the suffix).

    Raises:
        ValueError: an unknown container without ``fourcc``, or a container/codec the writer cannot open.
    """

    def __init__(self, path: str | os.PathLike, fps: float, frame_wh: tuple[int, int], fourcc: str | None = None):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if fourcc is None:
            if suffix not in FOURCC_BY_SUFFIX:
                raise ValueError(
                    f"cannot write video {self.path}: unknown container {suffix or '(no suffix)'!r}; expected one of "
                    f"{', '.join(FOURCC_BY_SUFFIX)} (or give a FourCC codec)"
                )
            fourcc = FOURCC_BY_SUFFIX[suffix]
        if len(fourcc) != 4:
            raise ValueError(f"a FourCC codec has four characters, got {fourcc!r}")
        self.fourcc, self.fps, self.frame_wh = fourcc, float(fps), (int(frame_wh[0]), int(frame_wh[1]))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.frame_wh)
        if not self._writer.isOpened():
            self._writer.release()
            raise ValueError(
                f"cannot write video {self.path} with codec {fourcc!r}: OpenCV's video writer (FFmpeg backend) cannot "
                f"open this container/codec here; try an .mp4 (mp4v) or .avi (MJPG) output, or another FourCC"
            )

    def write(self, image_rgb: np.ndarray) -> None:
        """Append an RGB frame."""
        self._check_size(image_rgb)
        self.write_bgr(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))

    def write_bgr(self, image_bgr: np.ndarray) -> None:
        """Append a BGR frame (OpenCV's order: no conversion)."""
        self._check_size(image_bgr)
        self._writer.write(image_bgr)
        self.frames += 1

    def _check_size(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if (w, h) != self.frame_wh:
            raise ValueError(f"{self.path}: frame of size {w}x{h}, the video is {self.frame_wh[0]}x{self.frame_wh[1]}")

    def close(self) -> None:
        self._writer.release()


class ImageSink:
    """A PNG per image, ``<folder>/<stem>.png``."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, image_rgb: np.ndarray, name: str) -> Path:
        """Write an RGB image as ``<stem of name>.png``."""
        return self.write_bgr(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), name)

    def write_bgr(self, image_bgr: np.ndarray, name: str) -> Path:
        """Write a BGR image (OpenCV's order: no conversion) as ``<stem of name>.png``."""
        path = self.folder / f"{Path(name).stem}.png"
        if not cv2.imwrite(str(path), image_bgr):
            raise OSError(f"could not write PNG to {path}")
        self.frames += 1
        return path

    def close(self) -> None:
        """Nothing to release."""


_STOP = object()


class BackgroundWorker:
    """Run submitted callables in order on one background thread, at most ``depth`` waiting.

    ``put`` blocks while the queue is full (back-pressure, so memory stays bounded) and re-raises the first error a
    task raised; ``close`` waits for the queue to drain and re-raises it too.
    """

    def __init__(self, depth: int = 4, name: str = "wbpose-writer") -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.busy_s = 0.0

    def _run(self) -> None:
        import time

        while True:
            task = self._queue.get()
            if task is _STOP:
                return
            if self._failed:
                continue  # drain after a failure
            start = time.perf_counter()
            try:
                task()
            except BaseException as err:  # re-raised in the caller's thread
                self._error, self._failed = err, True
            self.busy_s += time.perf_counter() - start

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, task: Callable[[], object]) -> None:
        self._raise()
        self._queue.put(task)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()

"""Where drawn frames go: an annotated video (OpenCV's writer) or a PNG per image, drawn in a background thread.

:class:`VideoSink` writes frames at the input's fps and size with the codec OpenCV's writer offers for the
container (:data:`FOURCC_BY_SUFFIX`: ``.mp4`` MPEG-4 Part 2 ``mp4v``, ``.avi`` Motion-JPEG, ``.mkv`` ``XVID``,
``.webm`` VP8), or a given FourCC; when the writer cannot open that container/codec a ``ValueError`` names the
file, the codec and containers to try. :class:`ImageSink` writes ``<stem>.png`` per image.

:class:`BackgroundWorker` runs drawing and encoding off the main thread (OpenCV releases the GIL), with a bounded
queue, so the network does not wait for them; errors there reach the caller on the next ``put`` or on ``close``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

__all__ = ["FOURCC_BY_SUFFIX", "BackgroundWorker", "ImageSink", "VideoSink"]

#: Default FourCC of each container (what OpenCV's FFmpeg writer supports out of the box).
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID", ".webm": "VP80"}


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

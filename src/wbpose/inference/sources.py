"""Where frames come from: an image, a folder, a glob, a video file or a webcam, read ahead in a background thread.

:func:`open_source` turns what a user types into a :class:`FrameSource`:

=========================  ===================================================================================
``photo.jpg``              one image (jpg, jpeg, png, bmp, webp, or anything else OpenCV decodes as an image)
``folder/``                the images of a folder, sorted by name (not recursive)
``'shots/*.png'``          the images matching a glob (quote it in the shell), sorted
``clip.mp4``               a video file (mp4, avi, mov, mkv, webm, ... whatever OpenCV's FFmpeg backend decodes)
``0``, ``1``               a webcam by OpenCV index
=========================  ===================================================================================

Every source yields :class:`Frame` records (RGB uint8 images). Video frames keep their index, which is the
``image_id`` of their results. :func:`prefetch` reads a source in a background thread (OpenCV decodes without the
GIL), so the network never waits for the disk or the decoder; errors raised there reach the caller.

Bad input raises ``FileNotFoundError``/``ValueError`` naming the file (or webcam index) and what was expected.
A bad file among several (a folder or glob: missing, truncated, corrupt) or an undecodable frame inside a video
is skipped instead, with a warning naming it, and listed in the source's ``skipped`` (``strict=True``: raise).
"""

from __future__ import annotations

import glob
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Frame",
    "FrameSource",
    "ImageFiles",
    "VideoFile",
    "Webcam",
    "coco_image_id",
    "open_source",
    "prefetch",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif")
#: fps assumed when a video or camera reports none.
DEFAULT_FPS = 30.0


@dataclass
class Frame:
    """One image to predict on.

    Attributes:
        index: position in the source (a video's frame index, from 0).
        image: RGB uint8 (H, W, 3).
        name: file name (images), ``<video name>#<index>`` (video), ``webcam<i>#<index>`` (webcam).
        path: the image file, ``None`` for video and webcam frames.
    """

    index: int
    image: np.ndarray
    name: str
    path: Path | None = None


def coco_image_id(path: Path) -> int | None:
    """The image id of a COCO file name (``000000000785.jpg`` -> 785, ``COCO_val2014_000000000042.jpg`` -> 42)."""
    stem = path.stem.rsplit("_", 1)[-1]
    return int(stem) if stem.isdigit() else None


class FrameSource:
    """Frames of one input, iterated once.

    Attributes:
        kind: ``"images"``, ``"video"`` or ``"webcam"``.
        name: what the user gave, for messages and output names.
        fps: frames per second (videos and webcams; ``None`` for images).
        frame_wh: (width, height) of the frames (videos and webcams; ``None`` for images).
        num_frames: frame count when known (images; videos as their container reports it), else ``None``.
    """

    kind: str = ""
    name: str = ""
    fps: float | None = None
    frame_wh: tuple[int, int] | None = None
    num_frames: int | None = None
    #: ``"<name>: <why>"`` of every image or frame skipped as unreadable so far (see the module docstring).
    skipped: list[str]

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file (idempotent)."""

    def __repr__(self) -> str:
        parts = [self.name or self.kind]
        if self.num_frames is not None:
            parts.append(f"{self.num_frames} {'images' if self.kind == 'images' else 'frames'}")
        if self.frame_wh is not None:
            parts.append(f"{self.frame_wh[0]}x{self.frame_wh[1]}")
        if self.fps is not None:
            parts.append(f"{self.fps:g} fps")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageFiles(FrameSource):
    """Image files in the given order; each is decoded when its frame is reached.

    A file that does not read (missing, truncated, corrupt) is skipped with a warning and listed in ``skipped``;
    with ``strict`` its ``FileNotFoundError``/``ValueError`` is raised instead. A skipped file keeps its position:
    the next frame's ``index`` is its place in ``paths``. When no file reads at all, ``ValueError`` lists them.
    """

    kind = "images"

    def __init__(self, paths: list[Path], name: str, strict: bool = False) -> None:
        self.paths = list(paths)
        self.name = name
        self.num_frames = len(self.paths)
        self.strict = strict
        self.skipped = []

    def __iter__(self) -> Iterator[Frame]:
        from wbpose.inference.inputs import read_image

        for index, path in enumerate(self.paths):
            try:
                image = read_image(path)
            except (FileNotFoundError, ValueError) as err:
                if self.strict:
                    raise
                log.warning("skipping an unreadable image: %s", err)
                self.skipped.append(f"{path}: {err}")
                continue
            yield Frame(index, image, path.name, path)
        if self.paths and len(self.skipped) == len(self.paths):
            listing = "\n".join(f"  {line}" for line in self.skipped)
            raise ValueError(f"none of the {len(self.paths)} images of {self.name} reads:\n{listing}")


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own warnings (camera probing, FFmpeg) while we report a clear error ourselves."""
    logging = getattr(cv2, "utils", None) and getattr(cv2.utils, "logging", None)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(level)


class _Capture(FrameSource):
    """A ``cv2.VideoCapture`` whose first frame is read on opening (a device or file that opens but gives no frame
    is refused there, not half-way through a run)."""

    #: Undecodable frames in a row after which a video is taken to have ended (the container's frame count is not
    #: always right, so a failed read cannot tell a corrupt frame from the end until a later frame decodes).
    max_bad_run = 25

    def __init__(
        self, capture: cv2.VideoCapture, name: str, max_frames: int | None, skip_bad_frames: bool = False
    ) -> None:
        self._capture = capture
        self.name = name
        self.max_frames = max_frames
        self.skip_bad_frames = skip_bad_frames
        self.strict = False
        self.skipped = []
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise ValueError(self._no_frame_message())
        self._first: np.ndarray | None = first
        h, w = first.shape[:2]
        self.frame_wh = (int(w), int(h))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS

    def _no_frame_message(self) -> str:
        raise NotImplementedError

    def _frame_name(self, index: int) -> str:
        return f"{self.name}#{index}"

    def _read_skipping(self, index: int) -> tuple[int, np.ndarray | None]:
        """The next decodable frame from ``index`` on: ``(its index, BGR)``, or ``(index, None)`` at the end.

        A frame that fails to decode, followed by one that decodes, is skipped (warning, ``skipped``; ``strict``:
        ``ValueError``); failures up to the end of the video (or ``max_bad_run`` in a row) are the end."""
        failed: list[int] = []
        while self.max_frames is None or index < self.max_frames:
            ok, bgr = self._capture.read()
            if ok and bgr is not None:
                for bad in failed:
                    if self.strict:
                        raise ValueError(f"cannot decode frame {bad} of video {self.name} (corrupt); later frames read")
                    log.warning("skipping an undecodable frame: %s", self._frame_name(bad))
                    self.skipped.append(f"{self._frame_name(bad)}: cannot decode the frame (corrupt)")
                return index, bgr
            if not self.skip_bad_frames or len(failed) >= self.max_bad_run:
                break
            failed.append(index)
            index += 1
        return index, None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while self.max_frames is None or index < self.max_frames:
            if self._first is not None:
                bgr, self._first = self._first, None
            else:
                index, bgr = self._read_skipping(index)
                if bgr is None:
                    break
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._frame_name(index))
            index += 1
        self.close()

    def close(self) -> None:
        self._capture.release()


class VideoFile(_Capture):
    """The frames of a video file, in order; ``num_frames`` is the container's count (exact for most files)."""

    kind = "video"

    def __init__(self, path: str | os.PathLike, max_frames: int | None = None, strict: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        with _quiet_opencv():
            capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise ValueError(
                f"cannot read video {self.path}: OpenCV (FFmpeg backend) cannot open it; expected a video file in a "
                f"container/codec it decodes ({', '.join(VIDEO_SUFFIXES[:6])}, ...), not a corrupt or partial file"
            )
        super().__init__(capture, self.path.name, max_frames, skip_bad_frames=True)
        self.strict = strict
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.num_frames = count if count > 0 else None
        if self.num_frames is not None and max_frames is not None:
            self.num_frames = min(self.num_frames, max_frames)

    def _no_frame_message(self) -> str:
        return f"cannot read video {self.path}: it opens but no frame decodes (corrupt, empty or unsupported codec)"


class Webcam(_Capture):
    """Frames of a camera by OpenCV index, until ``max_frames`` (or forever: stop with Ctrl-C)."""

    kind = "webcam"

    def __init__(self, index: int, max_frames: int | None = None) -> None:
        self.index = int(index)
        with _quiet_opencv():
            capture = cv2.VideoCapture(self.index)
        if not capture.isOpened():
            raise ValueError(
                f"cannot open webcam {self.index} (cv2.VideoCapture({self.index})): no camera with this index, or it "
                "is busy or not permitted; expected the index of a connected camera (0 is the first; on Linux "
                "`ls /dev/video*` lists them)"
            )
        super().__init__(capture, f"webcam{self.index}", max_frames)
        self.num_frames = max_frames

    def _no_frame_message(self) -> str:
        return f"webcam {self.index} (cv2.VideoCapture({self.index})) opened but delivered no frame"


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def open_source(source: str | int | os.PathLike, max_frames: int | None = None, strict: bool = False) -> FrameSource:
    """The frame source a user means by ``source`` (see the module docstring).

    Args:
        source: an image, a folder of images, a glob of images, a video file, or a webcam index.
        max_frames: stop a video or webcam after this many frames.
        strict: raise on an unreadable image of a folder or glob, or an undecodable video frame, instead of
            skipping it with a warning (a single image file given alone always raises).

    Raises:
        FileNotFoundError: nothing at that path, an empty folder or a glob without images.
        ValueError: a file that is neither a readable image nor a readable video, a webcam that does not open.
    """
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit() and not Path(source).exists()):
        return Webcam(int(source), max_frames)
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return ImageFiles(files, str(path), strict=strict)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return VideoFile(path, max_frames, strict=strict)
        if suffix in IMAGE_SUFFIXES:
            return ImageFiles([path], str(path), strict=True)
        if cv2.haveImageReader(str(path)):
            return ImageFiles([path], str(path), strict=True)
        try:
            return VideoFile(path, max_frames, strict=strict)
        except ValueError:
            raise ValueError(
                f"cannot read {path}: neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a video OpenCV decodes "
                f"({', '.join(VIDEO_SUFFIXES[:6])}, ...)"
            ) from None
    if _is_glob(text):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text)))
        files = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            videos = [p for p in matches if p.suffix.lower() in VIDEO_SUFFIXES]
            hint = f" ({len(videos)} videos match: give one video at a time)" if videos else ""
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) match {text!r}{hint}")
        return ImageFiles(files, text, strict=strict)
    raise FileNotFoundError(f"image, folder, glob, video or webcam index not found: {text}")


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def prefetch(items: Iterable, depth: int = 4, name: str = "wbpose-reader") -> Iterator:
    """Iterate ``items`` in a background thread, keeping up to ``depth`` of them ready.

    An exception raised while producing an item is re-raised by the consumer at that point. Closing the
    returned generator (or leaving a ``for`` loop early) stops the thread.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item = _DONE
        except BaseException as err:  # handed to the consumer
            item = _Failure(err)
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)

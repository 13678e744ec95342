"""Frame sources: images, folders, globs, videos, webcams; read-ahead; writers; clear errors naming the input."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from wbpose.inference.sources import Frame, ImageFiles, VideoFile, Webcam, open_source, prefetch
from wbpose.inference.writers import (
    DEFAULT_OUT,
    BackgroundWorker,
    ImageSink,
    OutputPaths,
    VideoSink,
    check_outputs,
    check_writable,
    output_paths,
    write_results_json,
)


def _video(path: Path, frames: int = 6, wh: tuple[int, int] = (64, 48), fps: float = 12.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, wh)
    for i in range(frames):
        writer.write(np.full((wh[1], wh[0], 3), (20 * i, 100, 200), np.uint8))
    writer.release()
    return path


def test_images_folder_glob(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((10, 12, 3), (0, 0, 255), np.uint8))  # BGR red
    folder = open_source(tmp_path)
    assert isinstance(folder, ImageFiles) and folder.kind == "images" and folder.num_frames == 2
    frames = list(folder)
    assert [f.name for f in frames] == ["a.jpg", "b.png"] and [f.index for f in frames] == [0, 1]
    assert frames[1].image.shape == (10, 12, 3) and tuple(frames[1].image[0, 0]) == (255, 0, 0)  # RGB
    assert [f.name for f in open_source(str(tmp_path / "*.png"))] == ["b.png"]
    assert open_source(tmp_path / "a.jpg").num_frames == 1
    with pytest.raises(FileNotFoundError, match=r"no images .* match '.*\*\.gif'"):
        open_source(str(tmp_path / "*.gif"))
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        open_source(tmp_path / "missing_dir")


def test_video_frames_fps_and_limits(tmp_path: Path) -> None:
    path = _video(tmp_path / "clip.mp4")
    source = open_source(str(path))
    assert isinstance(source, VideoFile) and source.kind == "video"
    assert (source.num_frames, source.fps, source.frame_wh) == (6, 12.0, (64, 48))
    frames = list(source)
    assert [f.index for f in frames] == list(range(6)) and frames[0].name == "clip.mp4#0" and frames[0].path is None
    assert frames[0].image.shape == (48, 64, 3)
    # BGR (0, 100, 200) was written: RGB (200, 100, 0) comes back (up to the codec)
    np.testing.assert_allclose(frames[0].image[24, 32], (200, 100, 0), atol=12)
    assert len(list(open_source(path, max_frames=4))) == 4


def test_unreadable_video_and_webcam_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(ValueError, match=r"cannot read video .*broken\.mp4.*expected a video file"):
        open_source(broken)
    with pytest.raises(FileNotFoundError, match="video not found: .*nope.mp4"):
        VideoFile(tmp_path / "nope.mp4")
    odd = tmp_path / "notes.xyz"
    odd.write_text("hello")
    with pytest.raises(ValueError, match=r"cannot read .*notes\.xyz: neither an image .* nor a video"):
        open_source(odd)
    with pytest.raises(ValueError, match=r"cannot open webcam 57 .*cv2\.VideoCapture\(57\).*expected the index"):
        open_source("57")
    with pytest.raises(ValueError, match="webcam 58"):
        Webcam(58)


def test_prefetch_order_errors_and_early_stop() -> None:
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("cannot read image frame7.jpg")

    got = []
    with pytest.raises(ValueError, match="frame7.jpg"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]
    before = threading.active_count()
    gen = prefetch(iter(range(10_000)), depth=2)
    assert next(gen) == 0
    gen.close()  # stops the reader thread
    assert threading.active_count() <= before


def test_video_sink_and_errors(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "out.avi", 7.0, (64, 48))
    assert sink.fourcc == "MJPG"
    for i in range(5):
        sink.write(np.full((48, 64, 3), 30 * i, np.uint8))
    with pytest.raises(ValueError, match="frame of size 10x10"):
        sink.write(np.zeros((10, 10, 3), np.uint8))
    sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(7.0)
    with pytest.raises(ValueError, match=r"out\.xyz.*unknown container '\.xyz'"):
        VideoSink(tmp_path / "out.xyz", 7.0, (64, 48))
    with pytest.raises(ValueError, match=r"cannot write video .*out\.mp4 with codec 'ZZZZ'.*try an \.mp4"):
        VideoSink(tmp_path / "out.mp4", 7.0, (64, 48), fourcc="ZZZZ")


def test_background_worker_runs_in_order_and_reports_errors(tmp_path: Path) -> None:
    done: list[int] = []
    worker = BackgroundWorker(depth=2)
    for i in range(20):
        worker.put(lambda i=i: done.append(i))
    worker.close()
    assert done == list(range(20))

    def boom() -> None:
        raise OSError("could not write PNG to x.png")

    worker = BackgroundWorker()
    worker.put(boom)
    with pytest.raises(OSError, match="x.png"):
        for _ in range(100):  # surfaces on a later put or on close
            worker.put(lambda: None)
        worker.close()
    sink = ImageSink(tmp_path / "pngs")
    path = sink.write(np.zeros((4, 4, 3), np.uint8), "frame 1.jpg")
    assert path.name == "frame 1.png" and path.is_file()
    assert isinstance(Frame(0, np.zeros((1, 1, 3), np.uint8), "x"), Frame)


def test_folder_skips_unreadable_images_and_lists_them(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "c.jpg", "d.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (30, 40, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"garbage, not an image")
    data = (tmp_path / "c.jpg").read_bytes()
    (tmp_path / "c.jpg").write_bytes(data[: len(data) // 2])  # truncated: OpenCV alone would decode it
    source = open_source(tmp_path)
    with caplog.at_level("WARNING", logger="wbpose.inference.sources"):
        frames = list(source)
    assert [(f.index, f.name) for f in frames] == [(0, "a.jpg"), (3, "d.png")]  # positions kept
    assert len(source.skipped) == 2
    assert "b.jpg: cannot read image" in source.skipped[0] and "c.jpg: cannot read image" in source.skipped[1]
    assert "truncated JPEG" in source.skipped[1]
    assert "b.jpg" in caplog.text and "c.jpg" in caplog.text
    with pytest.raises(ValueError, match=r"cannot read image .*b\.jpg"):
        list(open_source(tmp_path, strict=True))
    with pytest.raises(ValueError, match=r"cannot read image .*b\.jpg"):
        list(open_source(tmp_path / "b.jpg"))  # one image given alone: an error, not an empty run
    for name in ("a.jpg", "d.png"):
        (tmp_path / name).unlink()
    with pytest.raises(ValueError, match=r"none of the 2 images of .* reads:\n  .*b\.jpg.*\n  .*c\.jpg"):
        list(open_source(tmp_path))


def test_video_skips_an_undecodable_frame(tmp_path: Path, caplog) -> None:
    path = tmp_path / "clip.avi"  # Motion-JPEG: every frame is a JPEG inside the container
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(8):
        writer.write(np.full((48, 64, 3), (20 * i, 100, 200), np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(starts) == 8
    data[starts[3] : starts[3] + 200] = bytes(200)  # frame 3's JPEG header wiped
    path.write_bytes(bytes(data))
    source = open_source(path)
    with caplog.at_level("WARNING", logger="wbpose.inference.sources"):
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 4, 5, 6, 7]  # the frame index stays the position in the video
    assert source.skipped == ["clip.avi#3: cannot decode the frame (corrupt)"] and "clip.avi#3" in caplog.text
    with pytest.raises(ValueError, match=r"cannot decode frame 3 of video clip\.avi"):
        list(open_source(path, strict=True))


def test_frame_sources_print_readably(tmp_path: Path) -> None:
    video = open_source(_video(tmp_path / "clip.mp4"))
    assert repr(video) == "VideoFile(clip.mp4, 6 frames, 64x48, 12 fps)" and str(video) == repr(video)
    video.close()
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    assert repr(open_source(tmp_path / "a.png")) == f"ImageFiles({tmp_path / 'a.png'}, 1 images)"


def test_output_paths_follow_out_video_and_out_json(tmp_path: Path) -> None:
    video = tmp_path / "renders" / "dance_poses.mp4"
    # --out-video alone: the results json goes beside the video, not into outputs/predict
    assert output_paths("video", "dance.mp4", None, video_path=video) == OutputPaths(
        results=tmp_path / "renders" / "dance_poses.json", video=video
    )
    # an explicit --out or --out-json wins
    out = tmp_path / "out"
    assert output_paths("video", "dance.mp4", out, video_path=video).results == out / "results.json"
    assert output_paths("video", "dance.mp4", None, video_path=video, results_path=tmp_path / "r.json").results == (
        tmp_path / "r.json"
    )
    assert output_paths("video", "dance.avi", out) == OutputPaths(out / "results.json", out / "dance.avi")
    assert output_paths("webcam", "webcam0", None).video == DEFAULT_OUT / "webcam0.mp4"
    assert output_paths("images", "shots", None) == OutputPaths(DEFAULT_OUT / "results.json", images=DEFAULT_OUT)
    assert output_paths("images", "shots", out, draw=False) == OutputPaths(out / "results.json")


def test_unwritable_outputs_are_named_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"  # a regular file where a folder would be needed (tests run as root)
    blocker.write_text("x")
    with pytest.raises(ValueError, match=rf"annotated video {blocker}/out\.mp4: {blocker} is a file, not a folder"):
        check_writable(blocker / "out.mp4", "annotated video")
    with pytest.raises(ValueError, match=rf"results json {blocker}/deeper/r\.json: {blocker} is a file"):
        check_writable(blocker / "deeper" / "r.json", "results json")
    with pytest.raises(ValueError, match=rf"output folder {blocker}: it is a file, not a folder"):
        check_writable(blocker, "output folder", folder=True)
    with pytest.raises(ValueError, match=rf"results json {tmp_path}: it is a folder, not a file"):
        check_writable(tmp_path, "results json")
    paths = output_paths("video", "clip.mp4", None, video_path=blocker / "out.mp4")
    with pytest.raises(ValueError, match="annotated video"):
        check_outputs(paths)
    check_outputs(output_paths("video", "clip.mp4", tmp_path / "new" / "deeper"))  # missing folders are fine
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_results_json_is_strict(tmp_path: Path) -> None:
    import json

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict json constant {name}"))

    path = write_results_json(tmp_path / "r.json", [{"image_id": 1, "score": 0.5, "keypoints": [1.0, 2.0, 0.3]}])
    assert strict(path.read_text()) == [{"image_id": 1, "score": 0.5, "keypoints": [1.0, 2.0, 0.3]}]
    from wbpose.metrics.files import default_file_mode

    assert path.stat().st_mode & 0o777 == default_file_mode()  # as open() would make it, not mkstemp's 0600
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"refusing to write .*bad\.json: the results hold a non-finite number"):
            write_results_json(tmp_path / "bad.json", [{"image_id": 1, "score": bad}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # nothing written, no temporary file left

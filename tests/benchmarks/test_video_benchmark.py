"""``benchmarks/video.py``: the pose-only run does the pipeline's pose work, and the printed split adds up."""

from __future__ import annotations

import re

import numpy as np
import pytest

from helpers.paths import load_script
from helpers.threads import torch_threads


@pytest.fixture(scope="module")
def bench():
    return load_script("video", "benchmarks")


def test_pose_only_run_cuts_the_same_crops_and_poses(bench, tmp_path):
    from wbpose.synthetic.video import make_synthetic_video

    video = make_synthetic_video(tmp_path, num_frames=5, frame_hw=(240, 320), num_people=2, seed=3)
    predictor, _ = bench.build_predictor("tiny", tmp_path)
    frames = bench.FramesInMemory(video.video)
    assert frames.num_frames == 5 and frames.frames[0].image.shape == (240, 320, 3) and frames.kind == "video"
    _, timings, people, crops = bench.pipeline_once(predictor, video, tmp_path / "full", 1)
    _, pose_timings, pose_people, pose_crops = bench.pipeline_once(predictor, video, tmp_path / "pose", 1, frames)
    assert people == pose_people > 0
    assert len(crops) == len(pose_crops) == 5
    for a, b in zip(crops, pose_crops):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "full" / "results.json").read_text() == (tmp_path / "pose" / "results.json").read_text()
    assert list((tmp_path / "full").glob("*.mp4")) and not list((tmp_path / "pose").glob("*.mp4"))
    assert timings["network"] > 0 and pose_timings["network"] > 0 and "draw_write" not in pose_timings


def test_table_splits_the_overhead(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "DEMO_CKPT", tmp_path / "absent.ckpt")  # random weights, whatever is in outputs/
    with torch_threads(1):  # main() sets the count too; the context restores it afterwards
        (row,) = bench.main(["--archs", "tiny", "--frames", "4", "--reps", "1", "--threads", "1"])
    assert row["pipe_s"] > 0 and row["pose_s"] > 0 and row["floor_s"] > 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("| tiny 128x96 |"))
    total, io_draw, pose_work = (float(v) for v in re.findall(r"([+-]\d+\.\d) %", line)[:3])
    assert abs(total - (io_draw + pose_work)) <= 0.15  # the two parts add up to the total (rounding)
    assert abs(io_draw - 100 * (row["pipe_s"] - row["pose_s"]) / row["floor_s"]) <= 0.051
    assert ("(met)" in line) == (io_draw < 15)

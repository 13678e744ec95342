"""Write a synthetic video with known whole-body poses (people walking through a scene), with its ground truth.

Usage::

    wbpose-synthetic-video --out DIR [--frames 40] [--hw 360 480] [--people 3] [--fps 10] [--seed 0] [--stem NAME]

Writes ``<stem>.mp4``, its COCO-WholeBody ground truth ``<stem>_gt.json`` (``image_id`` = frame index), the true
person boxes ``<stem>_boxes.json`` and simulated detections ``<stem>_detections.json`` (the module that draws it
documents the files). ``wbpose-predict MODEL --source DIR/<stem>.mp4 --boxes DIR/<stem>_boxes.json`` predicts on
it and ``wbpose-score DIR/<stem>_gt.json <results.json>`` scores the predictions against the ground truth.
(``python scripts/synthetic_video.py ...`` is the same command.)
"""

from __future__ import annotations

import argparse

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``wbpose-synthetic-video``: write the video and its json files, print where; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--hw", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stem", default="synthetic")
    args = parser.parse_args(argv)
    from wbpose.synthetic.video import make_synthetic_video

    video = make_synthetic_video(args.out, num_frames=args.frames, frame_hw=tuple(args.hw), num_people=args.people,
                                 fps=args.fps, seed=args.seed, stem=args.stem)  # fmt: skip
    print(f"{video.video} ({video.num_frames} frames, {video.num_people} people), ground truth {video.annotations}, "
          f"true boxes {video.boxes}, simulated detections {video.detections}")  # fmt: skip
    return 0

"""A synthetic video with known whole-body poses: several people walking through a scene, for tests and benchmarks.

:func:`make_synthetic_video` draws the figures of :mod:`wbpose.synthetic` (sampled once, each in its own pose) on
one background and moves them with constant velocities, bouncing off the frame border, in depth order (lower feet
in front) and with fresh sensor noise per frame. Each frame is labelled exactly as the synthetic dataset labels an
image (:mod:`wbpose.synthetic.scene`: visibility from the drawn layers, occlusion, part validity), and written
with the dataset's own record writer (:func:`wbpose.synthetic.generate.annotation_record`), so
``wbpose-score ANN RESULTS`` scores predictions on the video against its own ground truth:

- ``<stem>.mp4``: the video (OpenCV's ``mp4v`` writer), ``fps`` frames per second;
- ``<stem>_gt.json``: COCO-WholeBody annotations, ``image_id`` = frame index, annotation ``id`` =
  ``100 * frame + person + 1`` and ``track_id`` = person index (the same person in every frame);
- ``<stem>_boxes.json``: the true person boxes as a COCO detection-results file (score 1, ``image_id`` = frame);
- ``<stem>_detections.json``: a simulated detector on each frame (jittered boxes, duplicates, false positives,
  misses; :func:`wbpose.synthetic.generate.simulate_detections`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from wbpose.synthetic.draw import PALETTE, add_sensor_noise, draw_background
from wbpose.synthetic.generate import annotation_record, simulate_detections, wholebody_categories
from wbpose.synthetic.people import Figure, sample_figure
from wbpose.synthetic.scene import draw_people, label_person

__all__ = ["SyntheticVideo", "make_synthetic_video"]

#: Every visible-enough part is labelled (no annotator skipping), so each frame has full ground truth.
_ALL_PARTS = {"face": 1.0, "lefthand": 1.0, "righthand": 1.0, "foot": 1.0}


@dataclass
class SyntheticVideo:
    """The files of a synthetic video and its ground truth.

    Attributes:
        video: the video file.
        annotations: COCO-WholeBody annotations (``image_id`` = frame index, ``track_id`` = person).
        boxes: the true boxes as a detection-results json.
        detections: simulated detector results json.
        num_frames, fps, frame_wh: the video's frame count, rate and (width, height).
        num_people: people in the video (each in every frame).
        keypoints: labels per frame: (num_frames, num_people, 133, 3) x, y, visibility (v = 0: unlabelled, x = y = 0).
        true_keypoints: where every keypoint really is, labelled or not: (num_frames, num_people, 133, 2).
        boxes_xywh: true boxes per frame, (num_frames, num_people, 4).
    """

    video: Path
    annotations: Path
    boxes: Path
    detections: Path
    num_frames: int
    fps: float
    frame_wh: tuple[int, int]
    num_people: int
    keypoints: np.ndarray = field(repr=False)
    true_keypoints: np.ndarray = field(repr=False)
    boxes_xywh: np.ndarray = field(repr=False)


def _move(fig: Figure, dxy: np.ndarray) -> Figure:
    return replace(fig, keypoints=fig.keypoints + dxy, head_center=fig.head_center + dxy, ears=fig.ears + dxy)


def _people(rng: np.random.Generator, count: int, height: int, width: int) -> list[tuple[Figure, np.ndarray]]:
    """``count`` upright figures spread across the frame, each with a velocity (px/frame).

    Their sizes differ (as at different depths: 0.45 to 0.8 of the frame height), so two people crossing never
    cover each other exactly.
    """
    out = []
    slots = (np.arange(count) + 0.5) / count
    sizes = rng.permutation(np.linspace(0.45, 0.8, count)) if count > 1 else np.array([0.65])
    for slot, size in zip(slots, sizes):
        body_h = height * size * rng.uniform(0.97, 1.03)
        fig = sample_figure(rng, np.zeros(2), body_h, rng.normal(0.0, 4.0), PALETTE)
        lo, hi = fig.keypoints.min(0), fig.keypoints.max(0)
        target = np.array([slot * width, rng.uniform(0.45, 0.6) * height])
        fig = _move(fig, target - (lo + hi) / 2)
        speed = rng.uniform(0.006, 0.015) * width * rng.choice([-1.0, 1.0])
        out.append((fig, np.array([speed, rng.uniform(-0.003, 0.003) * height])))
    return out


def _step(fig: Figure, velocity: np.ndarray, height: int, width: int) -> tuple[Figure, np.ndarray]:
    """Move one frame on; reverse a velocity component that would take the figure out of the frame."""
    lo, hi = fig.keypoints.min(0), fig.keypoints.max(0)
    margin = 0.06 * fig.height
    nxt_lo, nxt_hi = lo + velocity, hi + velocity
    out = (nxt_lo < margin) | (nxt_hi > np.array([width, height]) - margin)
    velocity = np.where(out, -velocity, velocity)
    return _move(fig, velocity), velocity


def make_synthetic_video(
    folder: str | os.PathLike,
    num_frames: int = 16,
    frame_hw: tuple[int, int] = (240, 320),
    num_people: int = 3,
    fps: float = 10.0,
    seed: int = 0,
    stem: str = "synthetic",
) -> SyntheticVideo:
    """Write a synthetic video of ``num_people`` moving people with its ground truth (see the module docstring).

    Args:
        folder: where the files go (created).
        num_frames: frames to render.
        frame_hw: frame (height, width).
        num_people: people, each in every frame.
        fps: frame rate written in the container.
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.
        stem: file name stem.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = (int(v) for v in frame_hw)
    rng = np.random.default_rng(seed)
    background = draw_background(rng, height, width)
    people = _people(rng, num_people, height, width)
    video = folder / f"{stem}.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise ValueError(f"cannot write {video}: OpenCV's video writer has no mp4v codec here")
    images, annotations, boxes, detections = [], [], [], []
    keypoints = np.zeros((num_frames, num_people, 133, 3))
    true_keypoints = np.zeros((num_frames, num_people, 133, 2))
    boxes_xywh = np.zeros((num_frames, num_people, 4))
    try:
        for index in range(num_frames):
            if index:
                people = [_step(fig, vel, height, width) for fig, vel in people]
            order = sorted(range(num_people), key=lambda i: float(people[i][0].keypoints[[15, 16], 1].max()))
            image = background.copy()
            owner, silhouettes = draw_people(image, [people[i][0] for i in order])
            labels = {}
            for depth, (person, sil) in enumerate(zip(order, silhouettes)):
                labels[person] = label_person(rng, people[person][0], depth, owner, sil, _ALL_PARTS)
            writer.write(add_sensor_noise(rng, image))
            images.append({"license": 1, "file_name": f"{stem}_{index:06d}.jpg", "height": height, "width": width,
                           "date_captured": "2020-09-18 00:00:00", "id": index})  # fmt: skip
            for person in range(num_people):
                label = labels[person]
                record = annotation_record(label, index, 100 * index + person + 1, (height, width))
                record["track_id"] = person
                annotations.append(record)
                keypoints[index, person] = label.keypoints
                true_keypoints[index, person] = people[person][0].keypoints
                boxes_xywh[index, person] = label.bbox
                boxes.append({"bbox": [round(float(v), 2) for v in label.bbox], "category_id": 1, "image_id": index,
                              "score": 1.0})  # fmt: skip
            frame_labels = [labels[p] for p in range(num_people)]
            detections += simulate_detections(rng, frame_labels, index, (height, width))
    finally:
        writer.release()
    info = {"description": f"wbpose synthetic video {video.name}", "url": "", "version": "1.0", "year": 2020,
            "contributor": "wbpose.synthetic.video", "date_created": "2020/09/18", "seed": seed}  # fmt: skip
    gt = {"info": info, "licenses": [{"url": "", "id": 1, "name": "Synthetic, no restrictions"}],
          "categories": wholebody_categories(), "images": images, "annotations": annotations}  # fmt: skip
    paths = {name: folder / f"{stem}_{name}.json" for name in ("gt", "boxes", "detections")}
    paths["gt"].write_text(json.dumps(gt, separators=(",", ":")))
    paths["boxes"].write_text(json.dumps(boxes, separators=(",", ":")))
    paths["detections"].write_text(json.dumps(detections, separators=(",", ":")))
    return SyntheticVideo(video, paths["gt"], paths["boxes"], paths["detections"], num_frames, float(fps),
                          (width, height), num_people, keypoints, true_keypoints, boxes_xywh)  # fmt: skip

"""Pose tracking: ids held through a synthetic video, the vectorised OKS/box helpers against plain references.

The id test drives :class:`PoseTracker` with a *perfect pose model* (``helpers.fakes.OraclePose``: the true
keypoints of the person each box covers best, plus 1.5 px noise) and the true person boxes as the detector, asked
every ``det_every`` frames. So the >= 95 % claim is about the tracker (detection schedule, boxes from poses,
matching), not about a pose model: a random network cannot keep a box on a person between detections. The boxes
come in a random order with random scores per frame and the people cross each other's paths, so a tracker that pairs
row i with track i fails; the negative controls break the matching on purpose and must fail the same metric.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers.fakes import OraclePose
from wbpose.inference import tracking
from wbpose.inference.boxes import DetectionFile, WholeImage, iou_matrix
from wbpose.inference.predictor import PosePrediction
from wbpose.inference.sources import Frame, VideoFile
from wbpose.inference.tracking import PoseTracker, keypoint_boxes, keypoint_oks_matrix
from wbpose.keypoints import sigmas_array
from wbpose.synthetic.video import make_synthetic_video

#: A seed whose four people cross each other's paths five times in 60 frames (see ``test_video_has_crossings``).
VIDEO_SEED = 4


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory):
    return make_synthetic_video(tmp_path_factory.mktemp("track"), num_frames=60, num_people=4, seed=VIDEO_SEED)


@pytest.fixture(scope="module")
def shuffled_boxes(video, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The true boxes with each frame's records in a random order and random scores in [0.5, 1].

    The video's own box file lists every frame's people in person order, all scored 1; a tracker that pairs row i
    with track i would then look perfect. Here the row of a person changes from frame to frame.
    """
    records = json.loads(video.boxes.read_text())
    rng = np.random.default_rng(7)
    frames: dict[int, list[dict]] = {}
    for record in records:
        frames.setdefault(int(record["image_id"]), []).append(record)
    out = []
    for index in sorted(frames):
        group = frames[index]
        for i in rng.permutation(len(group)):
            out.append({**group[i], "score": round(float(rng.uniform(0.5, 1.0)), 3)})
    path = tmp_path_factory.mktemp("shuffled") / "boxes.json"
    path.write_text(json.dumps(out))
    return path


def id_consistency(assigned: dict[int, list[int | None]]) -> dict[int, float]:
    """Per true person: share of frames whose track id is the person's most frequent id. A frame where the person
    has no pose (``None``) is a miss, also for a person never tracked at all."""
    out = {}
    for person, ids in assigned.items():
        known = [i for i in ids if i is not None]
        if not known:
            out[person] = 0.0
            continue
        majority = max(set(known), key=known.count)
        out[person] = sum(i is not None and i == majority for i in ids) / len(ids)
    return out


def crossings(video) -> int:
    """How many times two people swap their left-right order (box centres) from one frame to the next."""
    cx = video.boxes_xywh[..., 0] + video.boxes_xywh[..., 2] / 2
    side = np.sign(cx[:, :, None] - cx[:, None, :])
    return int((np.diff(side, axis=0) != 0).sum()) // 2


def track(video, boxes: Path, match: str, det_every: int, **kwargs) -> tuple[PoseTracker, dict[int, float]]:
    """Run :class:`PoseTracker` over ``video`` with the oracle pose model; the tracker and each person's id
    consistency."""
    tracker = PoseTracker(DetectionFile(boxes), det_every=det_every, match=match, **kwargs)
    source = VideoFile(video.video)
    tracker.check_source(source)
    oracle = OraclePose(video)
    assigned: dict[int, list[int | None]] = {p: [None] * video.num_frames for p in range(video.num_people)}
    for frame in source:
        boxes_ = tracker(frame)
        prediction, person = oracle(frame.index, boxes_.xywh, boxes_.scores)
        keep, ids = tracker.update(frame, prediction)
        for k, tid in zip(keep.tolist(), ids.tolist()):
            assigned[int(person[k])][frame.index] = tid
    return tracker, id_consistency(assigned)


def test_video_has_crossings_and_shuffled_rows(video, shuffled_boxes: Path) -> None:
    """The id test below is only hard if people cross and a person's row in the box file is not fixed."""
    assert crossings(video) >= 3
    records = json.loads(shuffled_boxes.read_text())
    frames: dict[int, list[dict]] = {}
    for record in records:
        frames.setdefault(int(record["image_id"]), []).append(record)
    true = video.boxes_xywh
    rows = [
        [int(np.abs(true[index] - np.asarray(r["bbox"])).sum(1).argmin()) for r in group]
        for index, group in frames.items()
    ]
    assert all(sorted(r) == list(range(video.num_people)) for r in rows)
    assert sum(r != sorted(r) for r in rows) >= 0.8 * video.num_frames
    assert len({r["score"] for r in records}) > video.num_frames


def test_id_consistency_counts_untracked_people_as_misses() -> None:
    assert id_consistency({0: [None, None, None], 1: [4, 4, None], 2: [1, 2, 1]}) == {
        0: 0.0,
        1: pytest.approx(2 / 3),
        2: pytest.approx(2 / 3),
    }


@pytest.mark.parametrize(("match", "det_every"), [("iou", 5), ("oks", 5), ("iou", 10)])
def test_ids_held_with_true_poses(video, shuffled_boxes: Path, match: str, det_every: int) -> None:
    tracker, consistency = track(video, shuffled_boxes, match, det_every)
    assert tracker.detections == pytest.approx(video.num_frames / det_every, abs=1)
    assert min(consistency.values()) >= 0.95, consistency
    assert tracker.next_id <= video.num_people + 1  # at most one id spent on a brief confusion


def _identity_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(cost.shape)
    return np.arange(n), np.arange(n)


@pytest.mark.parametrize("match", ["iou", "oks"])
def test_negative_control_identity_assignment_fails(video, shuffled_boxes: Path, monkeypatch, match: str) -> None:
    """Broken matching (detection row i -> live track i, whatever the similarity) must fail the id test."""
    monkeypatch.setattr(tracking, "linear_sum_assignment", _identity_assignment)
    tracker, consistency = track(video, shuffled_boxes, match, 5)
    assert min(consistency.values()) < 0.95, consistency
    assert tracker.next_id > video.num_people + 1


def test_negative_control_matching_off_fails(video, shuffled_boxes: Path) -> None:
    """No pose ever matches a track (threshold above any similarity): a new id at every detection."""
    tracker, consistency = track(video, shuffled_boxes, "iou", 5, match_thr=1.01)
    assert max(consistency.values()) < 0.95, consistency
    assert tracker.next_id >= video.num_people * video.num_frames // 5


def test_negative_control_one_person_per_frame_fails(video, shuffled_boxes: Path, monkeypatch) -> None:
    """A tracker that reports only one pose per frame leaves people untracked; they count as misses."""
    update = PoseTracker.update

    def first_only(self, frame, prediction):
        keep, ids = update(self, frame, prediction)
        return keep[:1], ids[:1]

    monkeypatch.setattr(PoseTracker, "update", first_only)
    _, consistency = track(video, shuffled_boxes, "iou", 5)
    assert min(consistency.values()) < 0.95, consistency


def test_detection_schedule_and_track_end() -> None:
    image = np.zeros((100, 80, 3), np.uint8)
    tracker = PoseTracker(WholeImage(), det_every=3)
    kp = np.stack(np.meshgrid(np.linspace(20, 40, 19), np.linspace(30, 70, 7)), -1).reshape(-1, 2)[:133]
    detections = []
    for index in range(7):
        frame = Frame(index, image, f"v#{index}")
        boxes = tracker(frame)
        detections.append(tracker._last_detection == index)
        scores = np.full((len(boxes), 133), 0.9 if index != 4 else 0.0, np.float32)  # frame 4: pose lost
        pred = PosePrediction(np.repeat(kp[None], len(boxes), 0).astype(np.float32), scores,
                              np.ones(len(boxes), np.float32), boxes.xywh.astype(np.float32),
                              boxes.scores.astype(np.float32))  # fmt: skip
        keep, ids = tracker.update(frame, pred)
        assert keep.tolist() == [0] and ids.tolist() == [0 if index < 5 else 1]
        if index == 1:  # the box of a tracked frame: the keypoint extent grown by 1.25, clipped
            np.testing.assert_allclose(boxes.xywh, [[17.5, 25, 25, 50]], atol=1e-6)
    # detections at 0 and 3; the pose lost at 4 is still reported, but its track ends: 5 detects again and, with
    # no track alive to match, the person gets a new id
    assert detections == [True, False, False, True, False, True, False]
    with pytest.raises(RuntimeError, match="must follow"):
        tracker.update(Frame(9, image, "v#9"), pred)


def test_keypoint_oks_matrix_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 100, (3, 133, 2)), rng.uniform(0, 100, (4, 133, 2))
    sa, sb = rng.random((3, 133)), rng.random((4, 133))
    area_a, area_b = rng.uniform(500, 3000, 3), rng.uniform(500, 3000, 4)
    var = (2 * sigmas_array()) ** 2
    expected = np.zeros((3, 4))
    for i in range(3):
        for j in range(4):
            shared = (sa[i] > 0.3) & (sb[j] > 0.3)
            d2 = ((a[i] - b[j]) ** 2).sum(-1)
            e = d2 / var / ((area_a[i] + area_b[j]) / 2 + np.spacing(1)) / 2
            expected[i, j] = np.exp(-e)[shared].sum() / max(shared.sum(), 1)
    np.testing.assert_allclose(keypoint_oks_matrix(a, sa, area_a, b, sb, area_b, 0.3), expected, rtol=1e-12)
    same = keypoint_oks_matrix(a, np.ones((3, 133)), area_a, a, np.ones((3, 133)), area_a)
    np.testing.assert_allclose(np.diag(same), 1.0)


def test_keypoint_boxes_fallback_and_clip() -> None:
    kp = np.zeros((2, 133, 2))
    kp[0, :, 0], kp[0, :, 1] = np.linspace(50, 70, 133), np.linspace(10, 30, 133)
    sc = np.zeros((2, 133))
    sc[0] = 0.9
    sc[1, :2] = 0.9  # too few confident points
    boxes, ok = keypoint_boxes(kp, sc, np.array([[1, 2, 3, 4], [5, 6, 7, 8.0]]), (64, 48))
    assert ok.tolist() == [True, False]
    np.testing.assert_allclose(boxes[0], [47.5, 7.5, 64 - 47.5, 25])  # right side clipped at width 64
    np.testing.assert_allclose(boxes[1], [5, 6, 7, 8])


def test_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="det_every"):
        PoseTracker(WholeImage(), det_every=0)
    with pytest.raises(ValueError, match="unknown match 'hungarian'"):
        PoseTracker(WholeImage(), match="hungarian")


# ---------------------------------------------------------------- edges found by mutation testing (docs/testing.md)
def _rect_pose(x0: float, y0: float, w: float = 20.0, h: float = 40.0) -> np.ndarray:
    """133 keypoints spread over the rectangle ``[x0, x0 + w] x [y0, y0 + h]`` (corners included)."""
    xs, ys = np.meshgrid(np.linspace(x0, x0 + w, 19), np.linspace(y0, y0 + h, 7))
    return np.stack([xs, ys], -1).reshape(-1, 2)[:133]


def _prediction(poses, scores=None, box_scores=None, keypoint_scores=None) -> PosePrediction:
    kp = np.stack(poses).astype(np.float32)
    n = len(kp)
    sc = np.full((n, 133), 0.9, np.float32) if keypoint_scores is None else np.asarray(keypoint_scores, np.float32)
    scores = np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32)
    box_scores = np.ones(n, np.float32) if box_scores is None else np.asarray(box_scores, np.float32)
    return PosePrediction(kp, sc, scores, np.zeros((n, 4), np.float32), box_scores)


def _boxes_of(tracker: PoseTracker, pred: PosePrediction, image_wh: tuple[int, int]) -> np.ndarray:
    return keypoint_boxes(pred.keypoints, pred.keypoint_scores, pred.boxes, image_wh, tracker.keypoint_thr,
                          tracker.box_padding, tracker.min_keypoints)[0]  # fmt: skip


def test_defaults() -> None:
    t = PoseTracker(WholeImage())
    assert (t.det_every, t.match, t.match_thr, t.keypoint_thr) == (5, "iou", 0.3, 0.3)
    assert (t.box_padding, t.min_keypoints, t.dedupe_thr) == (1.25, 3, 0.8)
    assert PoseTracker(WholeImage(), det_every=1).det_every == 1


def test_similarity_is_box_iou_or_oks_over_the_keypoint_extent() -> None:
    rng = np.random.default_rng(1)
    kp_a, kp_b = rng.uniform(0, 60, (3, 133, 2)), rng.uniform(0, 60, (2, 133, 2))
    sc_a, sc_b = rng.random((3, 133)), rng.random((2, 133))
    box_a, box_b = rng.uniform(5, 50, (3, 4)), rng.uniform(5, 50, (2, 4))
    iou = PoseTracker(WholeImage(), match="iou")._similarity(kp_a, sc_a, box_a, kp_b, sc_b, box_b)
    np.testing.assert_allclose(iou, iou_matrix(box_a, box_b))
    oks = PoseTracker(WholeImage(), match="oks", keypoint_thr=0.4)._similarity(kp_a, sc_a, box_a, kp_b, sc_b, box_b)
    areas_a, areas_b = box_a[:, 2] * box_a[:, 3] / 1.5625, box_b[:, 2] * box_b[:, 3] / 1.5625
    np.testing.assert_allclose(oks, keypoint_oks_matrix(kp_a, sc_a, areas_a, kp_b, sc_b, areas_b, 0.4))
    assert np.abs(oks - iou).max() > 0.05


def test_duplicates_keep_the_best_scored_pose_and_thresholds_are_inclusive() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    tracker = PoseTracker(WholeImage())
    tracker(Frame(0, image, "v#0"))
    # A, B (elsewhere), A' (A moved by half a pixel): best first A, then B; A' duplicates A even after B is kept
    pred = _prediction([_rect_pose(10, 10), _rect_pose(90, 10), _rect_pose(10.5, 10)], scores=[0.9, 0.6, 0.3])
    keep, ids = tracker.update(Frame(0, image, "v#0"), pred)
    assert keep.tolist() == [0, 1] and ids.tolist() == [0, 1]

    # a similarity exactly at dedupe_thr keeps both poses; exactly at match_thr matches
    two = _prediction([_rect_pose(10, 10), _rect_pose(16, 12)])
    boxes = _boxes_of(tracker, two, (160, 120))
    sim = tracker._similarity(two.keypoints, two.keypoint_scores, boxes, two.keypoints, two.keypoint_scores, boxes)
    assert 0.2 < sim[0, 1] < 0.8
    at_thr = PoseTracker(WholeImage(), det_every=1, dedupe_thr=float(sim[0, 1]), match_thr=float(sim[0, 1]))
    at_thr(Frame(0, image, "v#0"))
    assert at_thr.update(Frame(0, image, "v#0"), two)[0].tolist() == [0, 1]
    at_thr.tracks = at_thr.tracks[:1]  # one live track (pose 0); frame 1 brings pose 1 alone
    at_thr(Frame(1, image, "v#1"))
    moved = _prediction([_rect_pose(16, 12)])
    assert at_thr.update(Frame(1, image, "v#1"), moved)[1].tolist() == [0]  # matched at exactly match_thr


def test_tracked_frames_boxes_scores_and_track_records() -> None:
    image = np.zeros((60, 100, 3), np.uint8)  # not square: boxes clip at height 60
    tracker = PoseTracker(WholeImage(), det_every=2, min_keypoints=5)
    with pytest.raises(
        RuntimeError, match=r"^PoseTracker\.update\(\) must follow tracker\(frame\) for the same frame$"
    ):
        tracker.update(Frame(0, image, "v#0"), _prediction([_rect_pose(40, 30, 20, 28)]))
    pose = _rect_pose(40, 30, 20, 28)  # x 40..60, y 30..58
    tracker(Frame(0, image, "v#0"))
    tracker.update(Frame(0, image, "v#0"), _prediction([pose], box_scores=[0.7]))
    (track,) = tracker.tracks
    assert (track.track_id, track.first_frame, track.last_frame, track.box_score) == (0, 0, 0, pytest.approx(0.7))
    np.testing.assert_allclose(track.keypoints, pose, atol=1e-5)
    np.testing.assert_allclose(track.keypoint_scores, 0.9)
    boxes = tracker(Frame(1, image, "v#1"))  # from the last pose: centre (50, 44), half-size (12.5, 17.5)
    np.testing.assert_allclose(boxes.xywh, [[37.5, 26.5, 25.0, 33.5]], atol=1e-5)
    np.testing.assert_allclose(boxes.scores, [0.7], atol=1e-6)
    with pytest.raises(ValueError, match=r"expected one pose per tracked box \(1\), got 2"):
        tracker.update(Frame(1, image, "v#1"), _prediction([pose, pose]))
    tracker(Frame(1, image, "v#1"))
    tracker.update(Frame(1, image, "v#1"), _prediction([pose + 1]))
    assert (tracker.tracks[0].first_frame, tracker.tracks[0].last_frame) == (0, 1)
    assert tracker.tracks[0].box_score == pytest.approx(0.7)  # a tracked frame keeps the detection's box score
    tracker(Frame(2, image, "v#2"))  # a detection frame: the matched track keeps its first frame
    tracker.update(Frame(2, image, "v#2"), _prediction([pose + 2]))
    assert (tracker.tracks[0].track_id, tracker.tracks[0].first_frame, tracker.tracks[0].last_frame) == (0, 0, 2)
    assert tracker.detections == 2
    tracker(Frame(3, image, "v#3"))
    few = np.full((1, 133), 0.05, np.float32)
    few[0, :4] = 0.9  # 4 confident keypoints < min_keypoints=5: the track ends after this frame
    tracker.update(Frame(3, image, "v#3"), _prediction([pose], keypoint_scores=few))
    assert tracker.tracks == []


def test_keypoint_boxes_edges() -> None:
    wh = (64, 48)
    poses = np.stack([_rect_pose(-10, -5, 20, 25), _rect_pose(70, 10, 20, 10), np.full((133, 2), 30.0),
                      _rect_pose(-30, 10, 20, 10)])  # fmt: skip
    boxes, ok = keypoint_boxes(poses, np.full((4, 133), 0.9), np.zeros((4, 4)), wh)
    assert ok.all()
    np.testing.assert_allclose(boxes[3], [0.0, 8.75, 1.0, 12.5])  # off the left edge: at the border, width 1
    np.testing.assert_allclose(boxes[0], [0.0, 0.0, 12.5, 23.125])  # clipped at the left and top
    np.testing.assert_allclose(boxes[1], [64.0, 8.75, 1.0, 12.5])  # off the right edge: at the border, width 1
    np.testing.assert_allclose(boxes[2], [30.0, 30.0, 1.0, 1.0])  # a point-like pose: 1 x 1
    empty, ok = keypoint_boxes(np.zeros((0, 133, 2)), np.zeros((0, 133)), np.zeros((0, 4)), wh)
    assert empty.shape == (0, 4) and ok.shape == (0,)
    # exactly min_keypoints (3) confident is enough; a score equal to the threshold does not count; a NaN point
    # is skipped; a pose with no confident point falls back without touching the others
    sc = np.full((3, 133), 0.05)
    sc[0, :3] = 0.9
    sc[1, :3], sc[1, 3] = 0.9, 0.3
    sc[2] = 0.9
    kp = np.stack([_rect_pose(10, 10)] * 3)
    kp[2, 0] = np.nan
    boxes, ok = keypoint_boxes(kp, sc, np.ones((3, 4)), wh)
    assert ok.tolist() == [True, True, True]
    np.testing.assert_allclose(boxes[1], boxes[0])  # the point scored exactly 0.3 is left out
    sc[0] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no confident point: no floating-point warning either
        boxes, ok = keypoint_boxes(kp, sc, np.ones((3, 4)), wh)
    assert ok.tolist() == [False, True, True] and boxes[0].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_keypoint_oks_matrix_threshold_and_one_shared_keypoint() -> None:
    a, b = np.zeros((1, 133, 2)), np.zeros((1, 133, 2))
    b[0, 5] = [3.0, 4.0]
    sa, sb = np.full((1, 133), 0.1), np.full((1, 133), 0.1)
    sa[0, 5] = sb[0, 5] = 0.9
    sa[0, 6], sb[0, 6] = 0.3, 0.9  # a score exactly at the threshold, on either side: not shared
    sa[0, 7], sb[0, 7] = 0.9, 0.3
    var = (2 * sigmas_array()[5]) ** 2
    expected = np.exp(-25.0 / var / (100.0 + np.spacing(1)) / 2)
    got = keypoint_oks_matrix(a, sa, np.array([100.0]), b, sb, np.array([100.0]), 0.3)
    np.testing.assert_allclose(got, [[expected]], rtol=1e-12)

"""The synthetic COCO-WholeBody generator writes the real layout and formats, deterministically."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

from wbpose.app.synthetic import main
from wbpose.keypoints import KEYPOINT_NAMES, PART_FIELDS, PART_SLICES, sigmas_array
from wbpose.synthetic.draw import PALETTE
from wbpose.synthetic.generate import DETECTIONS_FILE, MARKER_FILE, generate_dataset
from wbpose.synthetic.people import sample_figure

PART_LENGTHS = {"keypoints": 51, "foot_kpts": 18, "face_kpts": 204, "lefthand_kpts": 63, "righthand_kpts": 63}
BOOL_FIELDS = ("face_valid", "lefthand_valid", "righthand_valid", "foot_valid")
BOX_OF = {"face_kpts": "face_box", "lefthand_kpts": "lefthand_box", "righthand_kpts": "righthand_box"}
VALID_OF = {"foot_kpts": "foot_valid", "face_kpts": "face_valid", "lefthand_kpts": "lefthand_valid",
            "righthand_kpts": "righthand_valid"}  # fmt: skip
COCO_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
                 [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic")
    stats = generate_dataset(root, num_train=4, num_val=3, seed=3)
    return root, stats


def _load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"coco_wholebody_{split}_v1.0.json").read_text())


def test_layout_and_images(dataset):
    root, stats = dataset
    assert (root / DETECTIONS_FILE).is_file()
    for split, count in (("train", 4), ("val", 3)):
        data = _load(root, split)
        assert set(data) == {"info", "licenses", "categories", "images", "annotations"}
        assert len(data["images"]) == count == stats[split]["images"]
        assert len(data["annotations"]) == stats[split]["people"] > 0
        for img in data["images"]:
            assert img["file_name"] == f"{img['id']:012d}.jpg"
            pixels = cv2.imread(str(root / f"{split}2017" / img["file_name"]))
            assert pixels.shape == (img["height"], img["width"], 3)
    assert stats["images_per_s"] > 0


def test_category_matches_real_files(dataset):
    (cat,) = _load(dataset[0], "val")["categories"]
    assert cat["id"] == 1 and cat["name"] == "person" and cat["supercategory"] == "person"
    assert cat["keypoints"] == list(KEYPOINT_NAMES[:17])
    assert cat["skeleton"] == COCO_SKELETON


def test_every_annotation_field(dataset):
    root, _ = dataset
    ids = set()
    for split in ("train", "val"):
        data = _load(root, split)
        image_ids = {img["id"] for img in data["images"]}
        for ann in data["annotations"]:
            assert ann["image_id"] in image_ids and ann["category_id"] == 1 and ann["iscrowd"] == 0
            assert ann["id"] not in ids
            ids.add(ann["id"])
            for field, length in PART_LENGTHS.items():
                kp = np.asarray(ann[field], dtype=np.float64).reshape(-1, 3)
                assert len(ann[field]) == length
                assert set(np.unique(kp[:, 2])) <= {0, 1, 2}
                assert np.all(kp[kp[:, 2] == 0, :2] == 0), "unlabelled points must be x = y = 0"
                if field in VALID_OF and not ann[VALID_OF[field]]:
                    assert not kp.any(), f"invalid {field} must be all zeros"
            for flag in BOOL_FIELDS:
                assert isinstance(ann[flag], bool)
            for box in ("bbox", *BOX_OF.values()):
                assert len(ann[box]) == 4 and all(isinstance(v, float) for v in ann[box])
            body_v = np.asarray(ann["keypoints"][2::3])
            assert ann["num_keypoints"] == int(np.count_nonzero(body_v > 0))
            assert ann["area"] > 0 and ann["segmentation"] and all(len(p) >= 6 for p in ann["segmentation"])


def test_boxes_contain_labelled_points(dataset):
    root, _ = dataset
    for split in ("train", "val"):
        data = _load(root, split)
        sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            for field in PART_LENGTHS:
                kp = np.asarray(ann[field]).reshape(-1, 3)
                pts = kp[kp[:, 2] > 0, :2]
                assert np.all((pts >= [x, y]) & (pts <= [x + w, y + h])), field
                assert np.all((pts >= 0) & (pts <= np.asarray(sizes[ann["image_id"]]) - 1)), field
                if field in BOX_OF:
                    bx, by, bw, bh = ann[BOX_OF[field]]
                    assert (bw > 0) == (len(pts) > 0)
                    assert np.all((pts >= [bx, by]) & (pts <= [bx + bw, by + bh])), BOX_OF[field]


def test_detections_reference_images(dataset):
    root, stats = dataset
    dets = json.loads((root / DETECTIONS_FILE).read_text())
    sizes = {img["id"]: (img["width"], img["height"]) for img in _load(root, "val")["images"]}
    assert len(dets) == stats["val"]["detections"] > 0
    for det in dets:
        assert set(det) == {"bbox", "category_id", "image_id", "score"}
        assert det["image_id"] in sizes and det["category_id"] == 1 and 0.0 <= det["score"] <= 1.0
        x, y, w, h = det["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= sizes[det["image_id"]][0] and y + h <= sizes[det["image_id"]][1]


def test_same_seed_gives_identical_json(tmp_path: Path):
    generate_dataset(tmp_path / "a", num_train=2, num_val=1, seed=7)
    generate_dataset(tmp_path / "b", num_train=2, num_val=1, seed=7)
    generate_dataset(tmp_path / "c", num_train=2, num_val=1, seed=8)
    for rel in ("annotations/coco_wholebody_train_v1.0.json", "annotations/coco_wholebody_val_v1.0.json",
                DETECTIONS_FILE):  # fmt: skip
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    train = "annotations/coco_wholebody_train_v1.0.json"
    assert (tmp_path / "a" / train).read_bytes() != (tmp_path / "c" / train).read_bytes()


@pytest.mark.parametrize("iou_type", ["keypoints_wholebody", "keypoints", "keypoints_face", "keypoints_lefthand"])
def test_xtcocotools_scores_ground_truth_as_one(dataset, iou_type):
    coco = COCO(str(dataset[0] / "annotations" / "coco_wholebody_val_v1.0.json"))
    fields = (*PART_FIELDS.values(), "image_id", "category_id")
    scores = dict.fromkeys(("score", "wholebody_score", "face_score", "lefthand_score"), 1.0)
    results = [{**{k: ann[k] for k in fields}, **scores} for ann in coco.dataset["annotations"]]
    part = {"keypoints": "body", "keypoints_face": "face", "keypoints_lefthand": "lefthand"}.get(iou_type)
    sigmas = sigmas_array()[PART_SLICES[part]] if part else sigmas_array()
    evaluator = COCOeval(coco, coco.loadRes(results), iou_type, sigmas, use_area=True)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_figures_face_the_camera():
    """The person's left side is on the image right (COCO convention for a frontal person)."""
    for seed in range(20):
        kp = sample_figure(np.random.default_rng(seed), np.zeros(2), 200.0, 0.0, PALETTE).keypoints
        assert kp[5, 0] > kp[6, 0] and kp[11, 0] > kp[12, 0] and kp[1, 0] > kp[2, 0]
        face = kp[23:91]
        assert face[0, 0] < face[16, 0] and face[36, 0] < face[45, 0] and face[48, 0] < face[54, 0]
        assert face[8, 1] > face[30, 1] > face[27, 1], "chin below nose tip below nose bridge"


def test_cli_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture):
    status = main(["--out", str(tmp_path), "--num-train", "1", "--num-val", "1", "--seed", "1",
                   "--image-hw", "240", "320"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0  # an int: the console wrapper's sys.exit(main()) exits 0
    assert "images/s" in out and "| train |" in out and "| val |" in out
    assert len(_load(tmp_path, "train")["images"]) == 1
    assert json.loads((tmp_path / "annotations/coco_wholebody_val_v1.0.json").read_text())["images"][0]["height"] == 240


def test_part_label_prob_zero_leaves_parts_unlabelled(tmp_path: Path):
    off = dict.fromkeys(("face", "lefthand", "righthand", "foot"), 0.0)
    stats = generate_dataset(tmp_path, num_train=2, num_val=0, seed=0, part_label_prob=off)
    anns = _load(tmp_path, "train")["annotations"]
    assert anns and not any(a[flag] for a in anns for flag in BOOL_FIELDS)
    assert stats["train"]["face_labelled"] == 0 and stats["train"]["body_labelled"] > 0
    assert json.loads((tmp_path / DETECTIONS_FILE).read_text()) == []


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_refuses_a_folder_it_did_not_mark(tmp_path: Path):
    """A folder holding anything without the marker (a real dataset) is refused and left byte for byte as it was."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "coco_wholebody_val_v1.0.json").write_text('{"images": []}')
    (root / "val2017").mkdir()
    (root / "val2017" / "000000000785.jpg").write_bytes(b"\xff\xd8 real image")
    before = _files(root)
    with pytest.raises(FileExistsError, match=rf"refusing to generate synthetic data into {root}: .*{MARKER_FILE}"):
        generate_dataset(root, num_train=1, num_val=1, seed=0)
    assert _files(root) == before and sorted(p.name for p in root.iterdir()) == ["annotations", "val2017"]
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileExistsError, match="a_file: it is a file"):
        generate_dataset(tmp_path / "a_file", num_train=1, num_val=1)


def test_marks_its_root_and_regenerates_into_it(tmp_path: Path):
    root = tmp_path / "empty"
    root.mkdir()  # an existing empty folder is fine
    generate_dataset(root, num_train=1, num_val=1, seed=1)
    marker = json.loads((root / MARKER_FILE).read_text())
    assert marker["generator"] == "wbpose.synthetic.generate"
    assert (marker["num_train"], marker["num_val"], marker["seed"]) == (1, 1, 1)
    first = (root / "annotations" / "coco_wholebody_val_v1.0.json").read_bytes()
    generate_dataset(root, num_train=1, num_val=1, seed=2)  # marked by the generator: regenerated in place
    assert json.loads((root / MARKER_FILE).read_text())["seed"] == 2
    assert (root / "annotations" / "coco_wholebody_val_v1.0.json").read_bytes() != first

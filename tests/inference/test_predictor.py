"""Predictor: MMPose / native checkpoints, shapes, batching, flip test, equality with the evaluation pipeline."""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from helpers.fakes import random_model
from wbpose.checkpoints import CONFIG_KEY, RECIPES, convert_mmpose_checkpoint, infer_arch, load_checkpoint
from wbpose.codecs import DarkHeatmap, MSRAHeatmap, flip_test_average
from wbpose.inference import PosePrediction, Predictor, make_codec, to_coco_results
from wbpose.keypoints import NUM_KEYPOINTS, PART_FIELDS
from wbpose.metrics.oks import rescore
from wbpose.models import build_pose_model

IMAGE_HW = (128, 96)  # small crops keep the tiny HRNet fast on two cores


def mmpose_checkpoint(model: nn.Module, version: str) -> dict:
    """``model`` saved as MMPose 0.x (``keypoint_head.*``) or 1.x (``head.*`` + ``data_preprocessor.*``) would."""
    return mmpose_checkpoint_from_state(model.state_dict(), version)


def mmpose_checkpoint_from_state(model_state: dict[str, torch.Tensor], version: str) -> dict:
    """A ``TopdownPoseModel`` state dict in MMPose 0.x or 1.x file layout."""
    state = collections.OrderedDict()
    for key, value in model_state.items():
        renamed = version == "0.x" and key.startswith("head.")
        state[key.replace("head.", "keypoint_head.", 1) if renamed else key] = value
    if version == "1.x":
        state["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
        state["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
        meta = {"dataset_meta": {"sigmas": np.full(133, 0.02, np.float32)}, "epoch": 210}
    else:
        meta = {"epoch": 210, "hook_msgs": {"best_score": np.float64(0.55)}, "config": "model = dict(...)"}
    return {"meta": meta, "state_dict": state}


def people_image(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """An RGB image with a few stick figures drawn by OpenCV (``Predictor.predict`` needs ``channel_order="rgb"``)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    img[:] = rng.integers(60, 120, size=3, dtype=np.uint8)
    for cx in (70, 160, 250):
        cv2.circle(img, (cx, 60), 14, (230, 200, 180), -1)
        cv2.line(img, (cx, 74), (cx, 150), (40, 90, 200), 6)
        cv2.line(img, (cx, 95), (cx - 30, 130), (200, 60, 40), 4)
        cv2.line(img, (cx, 95), (cx + 30, 130), (200, 60, 40), 4)
        cv2.line(img, (cx, 150), (cx - 20, 210), (30, 160, 60), 5)
        cv2.line(img, (cx, 150), (cx + 20, 210), (30, 160, 60), 5)
    return img


BOXES = np.array([[40, 30, 60, 190], [130, 30, 60, 190], [220, 30, 60, 190], [0, 0, 320, 240],
                  [10.5, 20.25, 33.0, 80.0], [200, 100, 150, 200], [-20, -10, 80, 100]], dtype=np.float64)  # fmt: skip


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_model()


@pytest.fixture(scope="module")
def predictor(model: nn.Module) -> Predictor:
    codec = make_codec("msra", IMAGE_HW)
    return Predictor(model, codec, codec.input_wh, device="cpu")


def test_prediction_shapes_and_scores(predictor: Predictor) -> None:
    image = people_image()
    scores_in = np.linspace(0.3, 0.9, len(BOXES))
    pred = predictor.predict(image, BOXES, scores_in, channel_order="rgb")
    n = len(BOXES)
    assert isinstance(pred, PosePrediction) and len(pred) == n
    assert pred.keypoints.shape == (n, NUM_KEYPOINTS, 2) and pred.keypoints.dtype == np.float32
    assert pred.keypoint_scores.shape == (n, NUM_KEYPOINTS) and pred.keypoint_scores.dtype == np.float32
    assert pred.scores.shape == (n,) and pred.scores.dtype == np.float32
    np.testing.assert_allclose(pred.boxes, BOXES.astype(np.float32))
    np.testing.assert_allclose(pred.box_scores, scores_in.astype(np.float32))
    np.testing.assert_allclose(pred.scores, rescore(pred.keypoint_scores, scores_in), rtol=1e-6)
    assert np.isfinite(pred.keypoints).all()
    # Each keypoint with a positive maximum lies in its padded, aspect-fixed box (up to one heatmap cell); the
    # others sit at heatmap (-1, -1), the codec's "no maximum" location.
    assert (pred.keypoint_scores > 0).any() and (pred.keypoint_scores <= 0).any()
    for box, kp_all, sc in zip(BOXES, pred.keypoints, pred.keypoint_scores):
        kp = kp_all[sc > 0]
        x, y, w, h = box
        sw = max(w, h * 0.75) * 1.25
        sh = sw / 0.75
        cx, cy = x + w / 2, y + h / 2
        slack = sw / IMAGE_HW[1] * 4
        assert (kp[:, 0] >= cx - sw / 2 - slack).all() and (kp[:, 0] <= cx + sw / 2 + slack).all()
        assert (kp[:, 1] >= cy - sh / 2 - slack).all() and (kp[:, 1] <= cy + sh / 2 + slack).all()


def test_batched_equals_one_at_a_time(model: nn.Module) -> None:
    codec = make_codec("dark", IMAGE_HW)
    batched = Predictor(model, codec, codec.input_wh, device="cpu", batch_size=3).predict(
        people_image(), BOXES, channel_order="rgb"
    )
    single = Predictor(model, codec, codec.input_wh, device="cpu", batch_size=1)
    for i, box in enumerate(BOXES):
        one = single.predict(people_image(), box[None], channel_order="rgb")
        np.testing.assert_allclose(one.keypoints[0], batched.keypoints[i], atol=2e-3)
        np.testing.assert_allclose(one.keypoint_scores[0], batched.keypoint_scores[i], atol=1e-5)


def test_flip_test_on_and_off(model: nn.Module) -> None:
    codec = make_codec("msra", IMAGE_HW)
    flip = Predictor(model, codec, codec.input_wh, device="cpu", flip_test=True)
    plain = Predictor(model, codec, codec.input_wh, device="cpu", flip_test=False)
    images, center, scale = flip.crops(people_image(), BOXES[:3])
    x = torch.from_numpy(images)
    with torch.no_grad():
        expected = flip_test_average(model(x), model(x.flip(-1)))
        torch.testing.assert_close(flip.heatmaps(x), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(plain.heatmaps(x), model(x), rtol=1e-5, atol=1e-6)
    a, b = (
        flip.predict(people_image(), BOXES, channel_order="rgb"),
        plain.predict(people_image(), BOXES, channel_order="rgb"),
    )
    assert a.keypoints.shape == b.keypoints.shape
    assert not np.allclose(a.keypoint_scores, b.keypoint_scores)


def test_whole_image_path_and_empty_boxes(predictor: Predictor, tmp_path: Path) -> None:
    image = people_image()
    pred = predictor.predict(image, channel_order="rgb")
    np.testing.assert_array_equal(pred.boxes, [[0, 0, 320, 240]])
    np.testing.assert_array_equal(pred.box_scores, [1.0])
    with_scores = predictor.predict(image, np.concatenate([BOXES[:2], [[0.5], [0.25]]], axis=1), channel_order="rgb")
    np.testing.assert_allclose(with_scores.box_scores, [0.5, 0.25])
    empty = predictor.predict(image, np.zeros((0, 4)))
    assert empty.keypoints.shape == (0, NUM_KEYPOINTS, 2) and empty.scores.shape == (0,)
    assert to_coco_results(empty, 1) == []


def test_bgr_default_rgb_flag_and_path_give_the_same_keypoints(predictor: Predictor, tmp_path: Path) -> None:
    """BGR (cv2.imread's order) by default, RGB with channel_order="rgb", a path: the same keypoints, bit for bit."""
    rgb = people_image()
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    path = tmp_path / "people.png"  # lossless: the file decodes to exactly ``bgr``
    assert cv2.imwrite(str(path), bgr)
    boxes = BOXES[:3]
    default = predictor.predict(bgr, boxes)
    runs = {
        "imread": predictor.predict(cv2.imread(str(path)), boxes),
        "rgb flag": predictor.predict(rgb, boxes, channel_order="rgb"),
        "upper-case flag": predictor.predict(rgb, boxes, channel_order="RGB"),
        "Path": predictor.predict(path, boxes),
        "str path": predictor.predict(str(path), boxes),
        "path, order ignored": predictor.predict(path, boxes, channel_order="rgb"),
    }
    for name, pred in runs.items():
        np.testing.assert_array_equal(pred.keypoints, default.keypoints, err_msg=name)
        np.testing.assert_array_equal(pred.keypoint_scores, default.keypoint_scores, err_msg=name)
        np.testing.assert_array_equal(pred.scores, default.scores, err_msg=name)
    crops_bgr, _, _ = predictor.crops(bgr, boxes, bgr=True)
    np.testing.assert_array_equal(crops_bgr, predictor.crops(rgb, boxes)[0])
    # negative control: BGR pixels declared RGB swap red and blue, and the network sees another image
    swapped = predictor.predict(bgr, boxes, channel_order="rgb")
    assert not np.array_equal(swapped.keypoint_scores, default.keypoint_scores)
    assert not np.array_equal(swapped.keypoints, default.keypoints)
    assert not np.array_equal(predictor.predict(rgb, boxes).keypoints, default.keypoints)  # RGB taken as BGR
    with pytest.raises(ValueError, match=r"channel_order must be one of \('bgr', 'rgb'\), got 'hsv'"):
        predictor.predict(bgr, boxes, channel_order="hsv")


def test_no_boxes_warns_once_that_the_whole_image_is_one_person(model: nn.Module, caplog) -> None:
    codec = make_codec("msra", IMAGE_HW)
    fresh = Predictor(model, codec, codec.input_wh, device="cpu", flip_test=False)
    image = people_image()
    with caplog.at_level("WARNING", logger="wbpose.inference.predictor"):
        fresh.predict(image, BOXES[:1])
        assert not caplog.records  # boxes given: nothing to say
        fresh.predict(image)
        fresh.predict(image)
    (record,) = caplog.records  # once per predictor, not once per image
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert "whole image is used as one person box" in message and "several people" in message
    assert "--boxes" in message and "--detector" in message and "predict(image, boxes)" in message


def test_bad_inputs_are_named(predictor: Predictor, tmp_path: Path) -> None:
    image = people_image()
    with pytest.raises(ValueError, match="box #1"):
        predictor.predict(image, [[0, 0, 10, 10], [0, 0, 0, 10]], channel_order="rgb")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        predictor.predict(image, [[0, 0, 10]], channel_order="rgb")
    with pytest.raises(ValueError, match="RGB uint8"):
        predictor.predict(image.astype(np.float32), channel_order="rgb")
    with pytest.raises(ValueError, match=r"BGR image of shape \(H, W, 3\), got \(240, 320, 4\)"):
        predictor.predict(np.concatenate([image, image[..., :1]], axis=2))
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        predictor.predict(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        predictor.predict(broken)


def test_coco_results_format(predictor: Predictor) -> None:
    pred = predictor.predict(people_image(), BOXES[:3], [0.9, 0.8, 0.7], channel_order="rgb")
    results = to_coco_results(pred, image_id=785)
    assert len(results) == 3
    lengths = {"keypoints": 51, "foot_kpts": 18, "face_kpts": 204, "lefthand_kpts": 63, "righthand_kpts": 63}
    assert set(PART_FIELDS.values()) == set(lengths)
    for i, entry in enumerate(results):
        assert entry["image_id"] == 785 and entry["category_id"] == 1
        assert entry["score"] == pytest.approx(float(pred.scores[i]))
        for field, length in lengths.items():
            assert len(entry[field]) == length
        triples = np.asarray(entry["keypoints"]).reshape(17, 3)
        np.testing.assert_allclose(triples[:, :2], pred.keypoints[i, :17], rtol=1e-6)
        np.testing.assert_allclose(triples[:, 2], pred.keypoint_scores[i, :17], rtol=1e-6)


@pytest.mark.parametrize("version", ["0.x", "1.x"])
def test_fake_mmpose_checkpoint_predicts_like_its_source(model: nn.Module, tmp_path: Path, version: str) -> None:
    path = tmp_path / f"hrnet_tiny_{version}.pth"
    torch.save(mmpose_checkpoint(model, version), path)
    loaded = Predictor.from_checkpoint(path, device="cpu", image_hw=IMAGE_HW, codec="dark")
    assert isinstance(loaded.codec, DarkHeatmap) and loaded.input_wh == (96, 128)
    source = Predictor(model, make_codec("dark", IMAGE_HW), (96, 128), device="cpu")
    a, b = (
        loaded.predict(people_image(), BOXES, channel_order="rgb"),
        source.predict(people_image(), BOXES, channel_order="rgb"),
    )
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.keypoint_scores, b.keypoint_scores)
    # a name that is no released checkpoint: the error says which arguments to pass
    with pytest.raises(ValueError, match=r"hrnet_tiny_.*matches no released .*image_hw=.*codec="):
        Predictor.from_checkpoint(path, device="cpu")
    with pytest.raises(ValueError, match="HRNet-tiny"):
        Predictor.from_checkpoint(path, arch="w32", image_hw=IMAGE_HW, codec="msra")


def _released_file(tmp_path: Path, name: str, arch: str, version: str) -> Path:
    """A weights file named like a released MMPose checkpoint, of the right arch, a few KB on disk.

    Every tensor is a zero-stride view of one zero (torch.save keeps views), so a W48 costs no disk or time.
    """
    with torch.device("meta"):
        reference = build_pose_model(arch)
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in reference.state_dict().items()}
    path = tmp_path / name
    torch.save(mmpose_checkpoint_from_state(state, version), path)
    return path


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_released_checkpoint_names_pick_their_recipe(tmp_path: Path, name: str) -> None:
    recipe = RECIPES[name]
    path = _released_file(tmp_path, name, recipe.arch, "0.x")
    predictor = Predictor.from_checkpoint(path, device="cpu")
    h, w = recipe.image_hw
    assert (recipe.arch, recipe.codec) == (
        infer_arch(predictor.model.state_dict()),
        "dark" if "dark" in name else "msra",
    )
    assert predictor.input_wh == (w, h) and tuple(predictor.codec.heatmap_hw) == (h // 4, w // 4)
    assert isinstance(predictor.codec, DarkHeatmap if recipe.codec == "dark" else MSRAHeatmap)
    assert (h, w) == ((384, 288) if "384x288" in name else (256, 192))
    # the command line (arguments) still wins over the recipe
    other = Predictor.from_checkpoint(path, device="cpu", image_hw=(128, 96), codec="msra")
    assert other.input_wh == (96, 128) and isinstance(other.codec, MSRAHeatmap)


def test_renamed_released_checkpoint_keeps_its_recipe(tmp_path: Path) -> None:
    path = _released_file(tmp_path, "my_hrnet_w48_coco_wholebody_384x288_dark_copy.pth", "w48", "1.x")
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.input_wh == (288, 384) and isinstance(predictor.codec, DarkHeatmap)


# ~5-10 s (a 28 M parameter model is randomised, saved and read back): cheap enough for the default run
def test_w32_mmpose_checkpoint_loads(tmp_path: Path) -> None:
    source = random_model("w32")
    path = tmp_path / "hrnet_w32.pth"
    torch.save(mmpose_checkpoint(source, "0.x"), path)
    loaded = Predictor.from_checkpoint(path, device="cpu", image_hw=(64, 32), codec="msra", flip_test=False)
    expected = source.state_dict()
    got = loaded.model.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    x = torch.randn(1, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.heatmaps(x), source(x), rtol=0, atol=0)


def test_unsafe_and_foreign_files_are_refused(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, unsafe)  # a class weights_only refuses
    with pytest.raises(ValueError, match="refusing to load"):
        Predictor.from_checkpoint(unsafe)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, foreign)
    with pytest.raises(ValueError, match="HRNet"):
        Predictor.from_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        Predictor.from_checkpoint(tmp_path / "nope.pth")


def test_load_checkpoint_formats(model: nn.Module, tmp_path: Path) -> None:
    """One loader for every format: MMPose 0.x/1.x, converted files and our Lightning files give the same weights."""
    expected = model.state_dict()
    files = {}
    for version in ("0.x", "1.x"):
        files[version] = tmp_path / f"m_{version}.pth"
        torch.save(mmpose_checkpoint(model, version), files[version])
    files["converted"] = tmp_path / "converted.pth"
    convert_mmpose_checkpoint(files["0.x"], files["converted"])
    files["native"] = tmp_path / "native.ckpt"
    config = {"model": {"net": {"arch": "tiny"}}}
    torch.save({"state_dict": {f"model.{k}": v for k, v in expected.items()}, CONFIG_KEY: config}, files["native"])
    formats = {"0.x": "mmpose", "1.x": "mmpose", "converted": "converted", "native": "native"}
    for kind, path in files.items():
        loaded = load_checkpoint(path)
        assert (loaded.format, loaded.arch, loaded.source) == (formats[kind], "tiny", str(path)), kind
        assert (loaded.config is not None) == (kind == "native") and loaded.recipe is None
        assert set(loaded.state_dict) == set(expected)
        assert all(torch.equal(loaded.state_dict[k], v) for k, v in expected.items()), kind
    for bad, content in {"empty.ckpt": {"state_dict": {}}, "other.pth": {"weights": torch.zeros(3)}}.items():
        torch.save(content, tmp_path / bad)
        with pytest.raises(ValueError, match=bad):
            load_checkpoint(tmp_path / bad)


def test_matches_the_evaluation_pipeline(model: nn.Module, tmp_path: Path) -> None:
    """Detector boxes through the val dataset + TopdownPoseModule give the predictor's keypoints."""
    from wbpose.data.coco_wholebody import CocoWholeBodyDataset
    from wbpose.engine.module import TopdownPoseModule
    from wbpose.synthetic.generate import DETECTIONS_FILE, generate_dataset

    generate_dataset(tmp_path, num_train=0, num_val=2, seed=3)
    ann = json.loads((tmp_path / "annotations" / "coco_wholebody_val_v1.0.json").read_text())
    dets = [d for d in json.loads((tmp_path / DETECTIONS_FILE).read_text()) if d["category_id"] == 1]
    dataset = CocoWholeBodyDataset(tmp_path / "annotations" / "coco_wholebody_val_v1.0.json", tmp_path / "val2017",
                                   (96, 128), bbox_source="det", det_file=tmp_path / DETECTIONS_FILE)  # fmt: skip
    assert len(dataset) == len(dets) > 2
    codec = make_codec("msra", IMAGE_HW)
    module = TopdownPoseModule(model, codec, loss=nn.MSELoss(), optimizer=torch.optim.Adam, num_vis_images=0).eval()
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        expected = module.predict_batch(batch)

    predictor = Predictor(model, codec, (96, 128), device="cpu")
    for image in ann["images"]:
        mine = [d for d in dets if d["image_id"] == image["id"]]
        pred = predictor.predict(tmp_path / "val2017" / image["file_name"], [d["bbox"] for d in mine])
        rows = np.flatnonzero(batch["image_id"].numpy() == image["id"])
        assert len(rows) == len(mine)
        for row in rows.tolist():  # pair each dataset crop with the box of the same centre
            center = np.array([[d["bbox"][0] + d["bbox"][2] / 2, d["bbox"][1] + d["bbox"][3] / 2] for d in mine])
            i = int(np.argmin(np.abs(center - batch["center_xy"][row].numpy()).sum(1)))
            got_kp, got_sc = torch.from_numpy(pred.keypoints[i]), torch.from_numpy(pred.keypoint_scores[i])
            torch.testing.assert_close(got_kp, expected["keypoints"][row], atol=1e-3, rtol=0)
            torch.testing.assert_close(got_sc, expected["scores"][row], atol=1e-5, rtol=0)


def test_native_checkpoint_round_trip(make_cfg, tmp_path: Path) -> None:
    """A Lightning checkpoint saved by a Trainer rebuilds model and codec from its embedded config."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from wbpose.build import build_module

    cfg = make_cfg(["model=hrnet_tiny", "data=synthetic", f"data.data_root={tmp_path}", "codec=dark"])
    module = build_module(cfg, with_metrics=False)

    samples = [{"image": torch.randn(3, *IMAGE_HW), "heatmaps": torch.rand(133, 32, 24), "weights": torch.ones(133)}]
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, DataLoader(samples * 2, batch_size=2))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)

    loaded = Predictor.from_checkpoint(path, device="cpu")
    assert isinstance(loaded.codec, DarkHeatmap) and loaded.input_wh == (96, 128)
    # The CPU trainer ran the model NHWC (channels_last="auto"); the same weights in the default layout give
    # bit-identical outputs to the rebuilt predictor.
    reference = Predictor(module.model.to(memory_format=torch.contiguous_format), module.codec, (96, 128), device="cpu")
    a, b = (
        loaded.predict(people_image(), BOXES[:3], channel_order="rgb"),
        reference.predict(people_image(), BOXES[:3], channel_order="rgb"),
    )
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    msra = Predictor.from_checkpoint(path, device="cpu", codec="msra", flip_test=False)
    assert isinstance(msra.codec, MSRAHeatmap) and not msra.flip_test
    with pytest.raises(ValueError, match="HRNet-tiny"):
        Predictor.from_checkpoint(path, arch="w48")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(model: nn.Module) -> None:
    codec = make_codec("dark", IMAGE_HW)
    cpu = Predictor(model, codec, codec.input_wh, device="cpu").predict(people_image(), BOXES, channel_order="rgb")
    gpu_predictor = Predictor(random_model(), codec, codec.input_wh)
    assert gpu_predictor.device.type == "cuda"
    gpu = gpu_predictor.predict(people_image(), BOXES, channel_order="rgb")
    np.testing.assert_allclose(gpu.keypoints, cpu.keypoints, atol=0.05)
    np.testing.assert_allclose(gpu.keypoint_scores, cpu.keypoint_scores, atol=1e-3)

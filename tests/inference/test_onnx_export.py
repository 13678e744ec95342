"""ONNX export (native and MMPose files, with and without the folded flip test) and the Predictor on ONNX files.

Each export is checked by the exporter itself (ONNX Runtime vs torch heatmaps within 1e-4 on synthetic crops,
whole batch and one crop alone); here the Predictor on the ONNX file must give the checkpoint's keypoints within
0.01 px, the metadata must hold the contract, and files of another contract must be refused by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.extras import require_extra
from helpers.threads import torch_threads

require_extra("onnxruntime", "onnx")

from omegaconf import OmegaConf  # noqa: E402

from helpers.fakes import calibrated_model, mmpose_file, probe_detector_onnx  # noqa: E402
from wbpose.checkpoints import CONFIG_KEY  # noqa: E402
from wbpose.codecs import DarkHeatmap, MSRAHeatmap  # noqa: E402
from wbpose.inference import Predictor  # noqa: E402
from wbpose.inference.export import export_onnx, synthetic_crops  # noqa: E402
from wbpose.inference.onnx_runtime import METADATA_KEY, OnnxPoseNetwork  # noqa: E402
from wbpose.keypoints import FLIP_INDICES  # noqa: E402

# inside the 320x240 scene with their 1.25 padding: crops without black borders, whose constant heatmap values
# would tie exactly
BOXES = np.array([[40, 30, 60, 150], [130, 40, 70, 150], [200, 60, 70, 130], [100, 90, 120, 110]], float)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):  # small networks: see helpers.threads
        yield


def _scene() -> np.ndarray:
    import cv2

    from wbpose.synthetic.scene import render_scene

    bgr, _ = render_scene(np.random.default_rng(5), 240, 320)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _same_predictions(a: Predictor, b: Predictor, atol_px: float = 0.01) -> float:
    """``a`` and ``b`` give the same keypoints within ``atol_px`` on a synthetic scene; returns the largest difference.

    Only keypoints that float rounding cannot move are compared: those whose decoded position moves by less than
    ``atol_px / 2`` when torch's own heatmaps get +-2e-6 noise (ONNX Runtime's kernels differ from torch's by about
    1e-7). Random weights make some keypoints ill-conditioned (two maxima within rounding; for DARK, a Taylor step
    on a map that is no Gaussian peak, where a 1e-7 change moves the point by pixels); they must stay under 10 %.
    """
    image = _scene()
    pa, pb = a.predict(image, BOXES, channel_order="rgb"), b.predict(image, BOXES, channel_order="rgb")
    crops, _, scale = a.crops(image, BOXES)
    heatmaps = a.heatmaps(torch.from_numpy(crops))
    px_per_crop_px = torch.from_numpy(scale[:, :1] / a.input_wh[0])[:, :, None]
    reference, _ = a.codec.decode(heatmaps)
    generator = torch.Generator().manual_seed(0)
    stable = torch.ones(heatmaps.shape[:2], dtype=torch.bool)
    for _ in range(2):
        noise = (torch.rand(heatmaps.shape, generator=generator) - 0.5) * 4e-6
        moved, _ = a.codec.decode(heatmaps + noise)
        stable &= ((moved - reference).abs() * px_per_crop_px).amax(-1) < atol_px / 2
    assert stable.float().mean() >= 0.9, float(stable.float().mean())
    diff = float(np.abs(pa.keypoints - pb.keypoints)[stable.numpy()].max())
    assert diff <= atol_px, diff
    print(f"compared {int(stable.sum())}/{stable.numel()} keypoints: max difference {diff:.2e} px")
    np.testing.assert_allclose(pa.keypoint_scores, pb.keypoint_scores, atol=1e-4)
    np.testing.assert_allclose(pa.scores, pb.scores, atol=1e-4)
    return diff


@pytest.fixture(scope="module")
def native_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A native wbpose checkpoint (``model.*`` weights + the resolved training config) of a tiny 128x96 DARK model."""
    from wbpose.app.config import compose_config

    folder = tmp_path_factory.mktemp("native")
    cfg = compose_config("train", ["model=hrnet_tiny", "input=128x96", "codec=dark", "data=synthetic",
                                   f"data.data_root={folder}"], output_dir=folder / "run")  # fmt: skip
    state = {f"model.{k}": v for k, v in calibrated_model("tiny").state_dict().items()}
    path = folder / "tiny_dark.ckpt"
    torch.save({"state_dict": state, CONFIG_KEY: OmegaConf.to_container(cfg, resolve=True),
                "pytorch-lightning_version": "2.6.0"}, path)  # fmt: skip
    return path


@pytest.mark.parametrize("flip", [False, True])
def test_native_checkpoint_export_matches_torch(native_ckpt: Path, tmp_path: Path, flip: bool) -> None:
    report = export_onnx(native_ckpt, tmp_path / "tiny.onnx", flip_test=flip)
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-4
    assert report.heatmap_scale > 0.05  # real signal, not a comparison of zeros
    meta = report.metadata
    assert (meta.input_hw, meta.heatmap_hw, meta.codec, meta.flip_test) == ((128, 96), (32, 24), "dark", flip)
    assert meta.blur_kernel == 11 and meta.sigma == 1.0 and meta.arch == "tiny" and meta.source == "tiny_dark.ckpt"
    checkpoint = Predictor.from_checkpoint(native_ckpt, device="cpu")
    onnx_predictor = Predictor.from_checkpoint(tmp_path / "tiny.onnx")  # a .onnx path goes to from_onnx
    assert isinstance(onnx_predictor.model, OnnxPoseNetwork) and onnx_predictor.network_flips == flip
    assert isinstance(onnx_predictor.codec, DarkHeatmap) and onnx_predictor.input_wh == (96, 128)
    _same_predictions(checkpoint, onnx_predictor)
    # dynamic batch: 1, 3 and 7 crops in one call give the same heatmaps as torch
    crops = torch.from_numpy(synthetic_crops(checkpoint, 7))
    expected = checkpoint.heatmaps(crops)
    for n in (1, 3, 7):
        torch.testing.assert_close(onnx_predictor.heatmaps(crops[:n]), expected[:n], atol=1e-4, rtol=0)


def test_mmpose_file_export_and_metadata(tmp_path: Path) -> None:
    source = mmpose_file(calibrated_model("tiny", seed=1), tmp_path / "tiny_1x.pth", "1.x")
    report = export_onnx(source, flip_test=True, image_hw=(128, 96), codec="msra")
    assert report.path == tmp_path / "tiny_1x_flip.onnx" and report.max_abs_diff <= 1e-4
    import onnx

    model = onnx.load(str(report.path))
    meta = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert meta["format"] == "wbpose.pose/1" and meta["input_hw"] == [128, 96] and meta["codec"] == "msra"
    assert meta["mean"] == [123.675, 116.28, 103.53] and meta["std"] == [58.395, 57.12, 57.375]
    assert meta["flip_indices"] == list(FLIP_INDICES) and meta["flip_test"] is True and meta["sigma"] == 2.0
    assert meta["shift_heatmap"] is True and meta["box_padding"] == 1.25 and meta["opset"] == 18
    graph_input = model.graph.input[0].type.tensor_type.shape.dim
    assert graph_input[0].dim_param == "batch" and [d.dim_value for d in graph_input[1:]] == [3, 128, 96]
    a = Predictor.from_checkpoint(source, device="cpu", image_hw=(128, 96), codec="msra")
    b = Predictor.from_onnx(report.path)
    assert isinstance(b.codec, MSRAHeatmap)
    _same_predictions(a, b)


# in the default run: 18 s of CPU time (12 s wall on two quiet cores); tracing a 28 M parameter HRNet-W32 dominates
def test_mmpose_w32_export(tmp_path: Path) -> None:
    """A W32 256x192 file in MMPose 0.x layout under its released name: recipe from the name, flip folded in."""
    name = "hrnet_w32_coco_wholebody_256x192-853765cd_20200918.pth"
    source = mmpose_file(calibrated_model("w32"), tmp_path / name, "0.x")
    report = export_onnx(source, tmp_path / "w32_flip.onnx", flip_test=True, verify_crops=2)
    assert report.max_abs_diff <= 1e-4 and report.heatmap_scale > 0.05
    assert report.metadata.arch == "w32" and report.metadata.input_hw == (256, 192)
    _same_predictions(Predictor.from_checkpoint(source, device="cpu"), Predictor.from_onnx(report.path))


def test_other_contracts_are_refused(native_ckpt: Path, tmp_path: Path) -> None:
    import onnx

    flip = export_onnx(native_ckpt, tmp_path / "flip.onnx", flip_test=True, verify=False).path
    with pytest.raises(ValueError, match=r"flip\.onnx has the flip test folded .*cannot run without it"):
        Predictor.from_onnx(flip, flip_test=False)
    with pytest.raises(ValueError, match=r"carries its input size.*do not pass"):
        Predictor.from_checkpoint(flip, image_hw=(256, 192))
    model = onnx.load(str(flip))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ValueError, match=r"bare\.onnx: not a wbpose pose network: no 'wbpose' metadata \(expected a "
                       r"file written by scripts/export\.py.*inputs \[input \['batch', 3, 128, 96\]"):  # fmt: skip
        Predictor.from_onnx(bare)
    meta = json.loads({p.key: p.value for p in onnx.load(str(flip)).metadata_props}[METADATA_KEY])
    changes = {
        "input_hw": ([256, 192], r"graph does not match its 'wbpose' metadata: expected input 'input' float "
                                 r"\(batch, 3, 256, 192\)"),
        "format": ("other/2", r"format 'other/2', expected 'wbpose.pose/1'"),
        "mean": ([0, 0, 0], r"expects crops normalised with mean \[0.0, 0.0, 0.0\]"),
    }  # fmt: skip
    for key, (value, message) in changes.items():
        change = {key: value}
        edited = onnx.load(str(flip))
        edited.metadata_props[0].value = json.dumps({**meta, **change})
        path = tmp_path / "edited.onnx"
        onnx.save(edited, str(path))
        with pytest.raises(ValueError, match=message):
            Predictor.from_onnx(path)
    detector = probe_detector_onnx(tmp_path / "person_yolox.onnx", [[0, 0, 9, 9]], [[1, 1]], [0])
    with pytest.raises(ValueError, match=r"person_yolox\.onnx: not a wbpose pose network.*person detector goes to "
                       r"--detector"):  # fmt: skip
        Predictor.from_checkpoint(detector)
    with pytest.raises(ValueError, match=r"flip\.onnx: expected an MMDeploy end2end .*a wbpose pose network"):
        from wbpose.inference.detector import OnnxPersonDetector

        OnnxPersonDetector(flip, family="yolox")
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        Predictor.from_onnx(tmp_path / "absent.onnx")


def test_onnx_deployment_imports_neither_lightning_nor_hydra(native_ckpt: Path, tmp_path: Path) -> None:
    path = export_onnx(native_ckpt, tmp_path / "deploy.onnx", verify=False).path
    code = (
        "import sys, numpy as np\n"
        "from wbpose.inference import Predictor, to_coco_results\n"
        f"p = Predictor.from_onnx({str(path)!r})\n"
        "pred = p.predict(np.zeros((120, 90, 3), np.uint8), [[10, 10, 50, 100]])\n"
        "assert len(to_coco_results(pred, 0)) == 1\n"
        "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'hydra', 'omegaconf') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"

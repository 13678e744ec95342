"""A checkpoint's stored config is data: a ``_target_`` outside the project's classes is refused on every path.

Three payloads, each written into the ``codec`` node of a real checkpoint (weights and config as training writes
them): ``torch.load`` on inline pickle bytes with ``weights_only=False`` (the pickle writes a marker file where an
attack would call ``os.system``), ``pathlib.Path.write_text`` and ``builtins.eval``. Each is shown live first
(Hydra's ``instantiate`` of the node does write its marker), then given to evaluation, ``scripts/predict.py``,
``scripts/export.py``, ``Predictor.from_checkpoint``, ``TopdownPoseModule.from_checkpoint`` and training resume
(``ckpt_path=<file>`` and ``ckpt_path=auto``): every one refuses with the file and the node in the message, and
no marker file appears.
"""

from __future__ import annotations

import contextlib
import copy
import pathlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers.paths import REPO_ROOT
from wbpose.app.config import compose_config
from wbpose.checkpoints.io import load_checkpoint
from wbpose.checkpoints.reader import CONFIG_KEY, LIGHTNING_VERSION_KEY, RAW_CONFIG_KEY
from wbpose.checkpoints.stored_config import ALLOWED_TARGETS, CHECKPOINT_GROUPS, checked_config

SMALL = [
    "model=hrnet_tiny",
    "data=synthetic",
    "codec=dark",
    "data.num_workers=0",
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "callbacks.rich_progress_bar=null",
    "logger=csv",
]


# ------------------------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A checkpoint dict as training writes it: ``model.*`` weights and the config (``on_save_checkpoint``)."""
    from wbpose.build import build_module

    cfg = compose_config("train", SMALL, output_dir=tmp_path_factory.mktemp("honest_run"))
    module = build_module(cfg, with_metrics=False)
    checkpoint: dict[str, Any] = {"state_dict": module.state_dict(), LIGHTNING_VERSION_KEY: pl.__version__}
    module.on_save_checkpoint(checkpoint)
    return checkpoint


class _WriteMarker:
    """Pickled into payload (a): unpickling it writes ``path`` (where an attack would call ``os.system``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (pathlib.Path.write_text, (pathlib.Path(self.path), "torch.load ran the pickle"))


def payload(kind: str, marker: Path) -> dict[str, Any]:
    """A config node that writes ``marker`` when Hydra instantiates it."""
    if kind == "torch_load":
        blob = pickle.dumps(_WriteMarker(marker))
        return {"_target_": "torch.load", "f": {"_target_": "io.BytesIO", "_args_": [blob]}, "weights_only": False}
    if kind == "write_text":
        file = {"_target_": "pathlib.Path", "_args_": [str(marker)]}
        return {"_target_": "pathlib.Path.write_text", "_args_": [file, "x"]}
    if kind == "eval":
        code = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
        return {"_target_": "builtins.eval", "_args_": [code]}
    raise AssertionError(kind)


KINDS = ("torch_load", "write_text", "eval")
TARGET_OF = {"torch_load": "torch.load", "write_text": "pathlib.Path.write_text", "eval": "builtins.eval"}


def write_checkpoint(honest: dict[str, Any], path: Path, node: dict[str, Any], group: str = "codec") -> Path:
    """``honest`` with ``node`` as its ``group`` in both stored configs, saved as a normal torch file."""
    checkpoint = copy.deepcopy(honest)
    for key in (CONFIG_KEY, RAW_CONFIG_KEY):
        checkpoint[key][group] = copy.deepcopy(node)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("kind", ["torch_load", "write_text"])
def test_payloads_are_live(kind: str, tmp_path: Path) -> None:
    """Control: the payloads really run when a stored node is instantiated as before (so the refusals below
    stop something real), and the weights-only reader lets them through (it guards the pickle, not the config).
    (``builtins.eval`` is on the blocklist of the Hydra installed here, a partial defence of its own: neither of
    these two is.)"""
    marker = tmp_path / "control_marker"
    empty = {"state_dict": {}, CONFIG_KEY: {}, RAW_CONFIG_KEY: {}}
    path = write_checkpoint(empty, tmp_path / "p.ckpt", payload(kind, marker))
    stored = torch.load(path, map_location="cpu", weights_only=True)[CONFIG_KEY]["codec"]
    with contextlib.suppress(Exception):  # torch.load fails on the magic number after the pickle has run
        instantiate(OmegaConf.create(stored))
    assert marker.is_file()


# ------------------------------------------------------------------------------------------------ every path


def _evaluate(path: Path, tmp_path: Path, synthetic_root: Path) -> None:
    from wbpose.app.evaluate import evaluate

    overrides = [f"ckpt_path={path}", "trainer=cpu", "data=synthetic", f"data.data_root={synthetic_root}"]
    evaluate(compose_config("eval", overrides, output_dir=tmp_path / "eval"), overrides=overrides)


def _predictor(path: Path, tmp_path: Path, synthetic_root: Path) -> None:
    from wbpose.inference import Predictor

    Predictor.from_checkpoint(path, device="cpu")


def _module(path: Path, tmp_path: Path, synthetic_root: Path) -> None:
    from wbpose.engine.module import TopdownPoseModule

    TopdownPoseModule.from_checkpoint(path)


def _train_resume(path: Path, tmp_path: Path, synthetic_root: Path) -> None:
    from wbpose.app.train import train

    overrides = [*SMALL, f"data.data_root={synthetic_root}", f"ckpt_path={path}", "trainer.max_steps=1"]
    train(compose_config("train", overrides, output_dir=tmp_path / "resumed"))


def _train_auto_resume(path: Path, tmp_path: Path, synthetic_root: Path) -> None:
    """``ckpt_path=auto`` finds the file as the last.ckpt of an earlier run of the same command."""
    from wbpose.app.resume import RUN_KEY_FILE, run_key
    from wbpose.app.train import task_overrides, train

    logs = tmp_path / "logs"
    overrides = [*SMALL, f"data.data_root={synthetic_root}", "ckpt_path=auto", f"paths.log_dir={logs}"]
    cfg = compose_config("train", overrides, output_dir=logs / "train" / "runs" / "second")
    earlier = logs / "train" / "runs" / "first"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / RUN_KEY_FILE).write_text(run_key(task_overrides()) + "\n")
    (earlier / "checkpoints" / "last.ckpt").write_bytes(path.read_bytes())
    train(cfg)


def _script(name: str) -> Callable[[Path, Path, Path], None]:
    def run(path: Path, tmp_path: Path, synthetic_root: Path) -> None:
        if name == "predict":
            from wbpose.app.predict import main

            image = tmp_path / "image.jpg"
            cv2.imwrite(str(image), np.full((64, 48, 3), 127, np.uint8))
            status = main([str(path), "--source", str(image), "--out", str(tmp_path / "pred"), "--device", "cpu"])
        else:
            from wbpose.app.export import main

            status = main([str(path), "--out", str(tmp_path / "model.onnx")])
        assert status == 1  # the scripts print the error and exit 1
        raise ValueError("script failed")

    return run


PATHS = {
    "evaluate": _evaluate,
    "predictor": _predictor,
    "module": _module,
    "train_resume": _train_resume,
    "train_auto_resume": _train_auto_resume,
    "predict_script": _script("predict"),
    "export_script": _script("export"),
}


@pytest.mark.parametrize("entry", sorted(PATHS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_path_refuses_a_foreign_target(
    kind: str, entry: str, honest: dict, synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    path = write_checkpoint(honest, tmp_path / f"{kind}.ckpt", payload(kind, markers / "ran"))
    with pytest.raises(ValueError) as err:
        PATHS[entry](path, tmp_path, synthetic_root)
    message = str(err.value) if "script" not in entry else capsys.readouterr().err
    if entry == "train_auto_resume":  # the copy that ckpt_path=auto found
        path = tmp_path / "logs" / "train" / "runs" / "first" / "checkpoints" / "last.ckpt"
    assert f"refusing {path}" in message
    assert f"codec._target_ = {TARGET_OF[kind]!r} is not one of the project's classes" in message
    assert list(markers.iterdir()) == []  # nothing ran
    assert not (tmp_path / "pred").exists() and not (tmp_path / "model.onnx").exists()  # nothing written


def test_honest_checkpoint_still_loads_everywhere(honest: dict, tmp_path: Path) -> None:
    from wbpose.engine.module import TopdownPoseModule
    from wbpose.inference import Predictor

    path = tmp_path / "honest.ckpt"
    torch.save(honest, path)
    loaded = load_checkpoint(path)
    assert set(loaded.config) == set(loaded.raw_config) == set(CHECKPOINT_GROUPS)
    assert loaded.raw_config["codec"]["image_hw"] == "${input.image_hw}"  # references are kept
    assert loaded.config["module"]["test_metric"]["outfile"] is None  # files are this machine's choice
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert type(predictor.codec).__name__ == "DarkHeatmap" and predictor.input_wh == (96, 128)
    module = TopdownPoseModule.from_checkpoint(path).eval()
    images = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(module(images), predictor.model(images))


# ------------------------------------------------------------------------------------------------ the check


def test_allow_list_is_the_targets_of_conf_model_codec_module() -> None:
    """Every ``_target_`` of ``conf/model``, ``conf/codec`` and ``conf/module`` is allowed, and nothing else."""

    def targets(node: Any) -> set[str]:
        if isinstance(node, dict):
            own = {node["_target_"]} if "_target_" in node else set()
            return own.union(*(targets(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(targets(v) for v in node))
        return set()

    found = set()
    for group in ("model", "codec", "module"):
        for file in (REPO_ROOT / "conf" / group).glob("*.yaml"):
            found |= targets(yaml.safe_load(file.read_text()))
    assert found == ALLOWED_TARGETS
    from hydra._internal.utils import _locate

    for target in ALLOWED_TARGETS:
        assert callable(_locate(target))


def _refusal(stored: dict) -> str:
    with pytest.raises(ValueError) as err:
        checked_config(stored, "f.ckpt", CONFIG_KEY)
    return str(err.value)


@pytest.mark.parametrize(
    ("stored", "node"),
    [
        ({"module": {"loss": {"_target_": "os.system", "_args_": ["true"]}}}, "module.loss._target_"),
        (
            {"module": {"loss": {"_target_": "wbpose.losses.KeypointMSELoss", "w": [1, {"_target_": "os.getcwd"}]}}},
            "module.loss.w[1]._target_",
        ),
        (
            {"codec": {"_target_": "wbpose.codecs.MSRAHeatmap", "_args_": [{"_target_": "builtins.exec"}]}},
            "codec._args_",
        ),
        ({"codec": {"_target_": "wbpose.codecs.MSRAHeatmap", "_partial_": True}}, "codec._partial_"),
        ({"codec": {"_target_": ["wbpose.codecs.MSRAHeatmap"]}}, "codec._target_"),
        ({"input": {"sigma": "${oc.env:HOME}"}}, "input.sigma"),
        ({"module": {"loss": "${oc.create:{_target_: builtins.eval, _args_: ['1']}}"}}, "module.loss"),
        ({"codec": "${oc.decode:'{_target_: os.system}'}"}, "codec"),
        ({"input": {"image_hw": "${input.${x}}"}}, "input.image_hw"),
        ({"input": {"image_hw": "${trainer.x}"}}, "input.image_hw"),
        ({"input": {"sigma": torch.tensor(2.0)}}, "input.sigma"),
        ({"input": {1: 2}}, "input"),
        ("not a dict", "<root>"),
    ],
)
def test_check_names_the_node(stored: Any, node: str) -> None:
    message = _refusal(stored)
    assert message.startswith(f"refusing f.ckpt: its {CONFIG_KEY} {node} ")
    assert "wbpose.codecs.MSRAHeatmap" in message  # says what is accepted


def test_resolver_in_a_stored_node_would_run_code(tmp_path: Path) -> None:
    """Control for the interpolation rule: ``${oc.create:...}`` builds a ``_target_`` node at resolution time,
    which ``instantiate`` then calls; the check refuses it before OmegaConf ever sees it."""
    marker = tmp_path / "marker"
    file = f"{{_target_: pathlib.Path, _args_: [{marker}]}}"
    node = f"${{oc.create:{{_target_: pathlib.Path.write_text, _args_: [{file}, x]}}}}"
    stored = {"module": {"_target_": "builtins.dict", "loss": node}}
    instantiate(OmegaConf.create(stored)["module"])
    assert marker.is_file()
    marker.unlink()
    stored["module"]["_target_"] = "wbpose.engine.module.TopdownPoseModule"
    assert "module.loss = " in _refusal(stored) and not marker.exists()


def test_only_the_checkpoint_groups_come_back_as_plain_data() -> None:
    stored = {
        "model": {
            "net": {"_target_": "wbpose.models.build_pose_model", "arch": "tiny"},
            "pretrained": "/x.pth",
            "init": {"pretrained": "/y.ckpt"},
        },  # fmt: skip
        "input": {"image_hw": (128, 96), "sigma": 2.0},
        "codec": {"_target_": "wbpose.codecs.DarkHeatmap", "image_hw": "${input.image_hw}"},
        "module": {
            "_target_": "wbpose.engine.module.TopdownPoseModule",
            "input_hw": "${input.image_hw}",
            "test_metric": {
                "_target_": "wbpose.metrics.CocoWholeBodyMetric",
                "outfile": "${paths.output_dir}/r.json",
                "cache_dir": "/c",
            },
        },
        # groups a checkpoint does not supply are dropped unread, whatever they hold (callbacks of the user's own)
        "data": {"_target_": "os.system", "synthetic": {"num_train": 1}},
        "trainer": {"_target_": "pytorch_lightning.Trainer"},
        "callbacks": {"mine": {"_target_": "my_package.MyCallback"}},
        "seed": 1,
    }
    kept = checked_config(stored, "f.ckpt")
    assert set(kept) == set(CHECKPOINT_GROUPS)
    assert kept["input"]["image_hw"] == [128, 96]  # tuples become lists
    assert kept["model"]["pretrained"] is None and kept["model"]["init"]["pretrained"] is None
    assert kept["module"]["test_metric"]["outfile"] is None and kept["module"]["test_metric"]["cache_dir"] is None
    assert kept["codec"]["image_hw"] == "${input.image_hw}" and kept["model"]["net"]["arch"] == "tiny"
    assert stored["model"]["pretrained"] == "/x.pth"  # a copy: the checkpoint dict is untouched


@pytest.mark.parametrize("key", [CONFIG_KEY, RAW_CONFIG_KEY])
def test_either_stored_config_is_checked(key: str, honest: dict, tmp_path: Path) -> None:
    checkpoint = copy.deepcopy(honest)
    checkpoint[key]["model"]["net"]["_target_"] = "os.system"
    torch.save(checkpoint, tmp_path / "one.ckpt")
    with pytest.raises(ValueError, match=rf"one\.ckpt: its {key} model\.net\._target_ = 'os\.system'"):
        load_checkpoint(tmp_path / "one.ckpt")


def test_bytes_survive_the_weights_only_reader(tmp_path: Path) -> None:
    """Payload (a) relies on bytes inside the config: the reader keeps them, the check refuses their node."""
    torch.save({"x": b"abc"}, tmp_path / "b.pt")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["x"] == b"abc"
    assert "input.blob is a bytes" in _refusal({"input": {"blob": b"abc"}})

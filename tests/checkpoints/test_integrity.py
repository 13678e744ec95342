"""Every checkpoint reader refuses a corrupt or foreign file by name: CRC of every zip member, torch's own headers.

A checkpoint with 64 bytes flipped inside a weight tensor used to load everywhere except ``ckpt_path=auto`` (eval
scored AP 0, predict drew keypoints hundreds of pixels off, resume restored it); a text file named ``.ckpt`` failed
with ``KeyError: 101``. Here each entry point (eval, Predictor, export, module rebuild, train resume, init weights)
is handed such files and must name them.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch

from wbpose.app.resume import RUN_KEY_FILE, find_last_checkpoint
from wbpose.build import build_module
from wbpose.checkpoints import load_checkpoint, read_checkpoint
from wbpose.checkpoints.init_weights import load_init_weights
from wbpose.checkpoints.reader import checkpoint_problem, is_intact
from wbpose.models import build_pose_model


def _flip_inside_largest_tensor(src: Path, dst: Path, count: int = 64) -> str:
    """Copy ``src`` to ``dst`` with ``count`` bytes inverted in the middle of its largest tensor; returns the member."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    # local header: 30 fixed bytes, then the name and the extra field, then the stored (uncompressed) tensor bytes
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for i in range(start, start + count):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return info.filename


@pytest.fixture
def native(make_cfg, tmp_path: Path) -> tuple[Path, Path]:
    """A tiny native checkpoint (weights and config, as ``scripts/train.py`` writes) and its bit-flipped copy."""
    module = build_module(make_cfg(["model=hrnet_tiny", "data=synthetic", "codec=dark"]), with_metrics=False)
    checkpoint = {"state_dict": module.state_dict(), "pytorch-lightning_version": "2.6.0"}
    module.on_save_checkpoint(checkpoint)
    good = tmp_path / "good.ckpt"
    torch.save(checkpoint, good)
    flipped = tmp_path / "flipped.ckpt"
    _flip_inside_largest_tensor(good, flipped)
    return good, flipped


def test_flipped_bytes_in_a_tensor_are_refused_naming_the_file_and_member(native) -> None:
    good, flipped = native
    member = _flip_inside_largest_tensor(good, flipped)
    # torch.load alone does not notice: the tensors simply differ
    a = torch.load(good, weights_only=True)["state_dict"]
    b = torch.load(flipped, weights_only=True)["state_dict"]
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    assert is_intact(good) and not is_intact(flipped)
    assert read_checkpoint(good)["state_dict"].keys() == a.keys()
    with pytest.raises(ValueError, match=rf"flipped.ckpt is corrupt: the bytes of {member} do not match the CRC"):
        read_checkpoint(flipped)


def test_every_entry_point_refuses_a_flipped_checkpoint(native, make_cfg, synthetic_root: Path, capsys) -> None:
    from wbpose.app.evaluate import evaluate
    from wbpose.app.train import check_resume_checkpoint, train
    from wbpose.engine.module import TopdownPoseModule
    from wbpose.inference.predictor import Predictor

    _, flipped = native
    named = rf"{flipped} is corrupt"
    with pytest.raises(ValueError, match=named):
        evaluate(make_cfg([f"ckpt_path={flipped}"], config_name="eval"))
    with pytest.raises(ValueError, match=named):
        Predictor.from_checkpoint(flipped, device="cpu")
    with pytest.raises(ValueError, match=named):
        TopdownPoseModule.from_checkpoint(flipped)
    with pytest.raises(ValueError, match=named):
        load_checkpoint(flipped)
    # resume with an explicit ckpt_path: refused before the Trainer (which would load it unchecked) is built
    resume = make_cfg([f"ckpt_path={flipped}", "model=hrnet_tiny"], root=synthetic_root)
    with pytest.raises(ValueError, match=named):
        check_resume_checkpoint(resume)
    with pytest.raises(ValueError, match=named):
        train(resume)
    model = build_pose_model("tiny")
    for model_cfg in ({"pretrained": str(flipped)}, {"init": {"pretrained": str(flipped)}}):
        with pytest.raises(ValueError, match=named):
            load_init_weights(model, model_cfg)
    # export: the script prints the error and exits 1
    from wbpose.app import export

    assert export.main([str(flipped), "--out", str(flipped.with_suffix(".onnx"))]) == 1
    err = capsys.readouterr().err
    assert f"{flipped} is corrupt" in err and "Traceback" not in err
    assert not flipped.with_suffix(".onnx").exists()


def _onnx_bytes() -> bytes:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph, producer_name="wbpose-test").SerializeToString()


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("notes.ckpt", b"epoch 3, loss 0.0012\nthis is not a checkpoint\n", "it is text, starting 'epoch 3"),
        ("random.ckpt", bytes(range(7, 200)) * 3, "it starts with bytes 07 08 09"),
        ("empty.ckpt", b"", "the file is empty"),
        ("model.onnx.ckpt", None, "it looks like an ONNX model"),
        ("plain_pickle.ckpt", b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00}\x94.", "not one written by torch.save"),
        ("photos.ckpt", "zip", "a zip archive without data.pkl"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path: Path, name: str, content, says: str) -> None:
    from wbpose.inference.predictor import Predictor

    path = tmp_path / name
    if content is None:
        content = _onnx_bytes()
    if content == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("img/0001.jpg", b"\xff\xd8\xff\xd9")
    else:
        path.write_bytes(content)
    expected = rf"{path} is not a torch checkpoint: .*{says}"
    with pytest.raises(ValueError, match=expected):
        read_checkpoint(path)
    with pytest.raises(ValueError, match=expected):
        Predictor.from_checkpoint(path, device="cpu")
    assert checkpoint_problem(path).startswith(f"{path} is not a torch checkpoint")


def test_torn_zip_and_legacy_files(tmp_path: Path) -> None:
    """A cut zip checkpoint is 'truncated or corrupt'; a legacy (pre torch 1.6) file still loads, and a torn one
    is named."""
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.arange(1000.0)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(legacy)["w"], torch.arange(1000.0)) and is_intact(legacy)
    (tmp_path / "legacy_torn.pth").write_bytes(legacy.read_bytes()[:-500])
    with pytest.raises(ValueError, match="legacy_torn.pth is truncated or corrupt"):
        read_checkpoint(tmp_path / "legacy_torn.pth")
    zipped = tmp_path / "zipped.pth"
    torch.save({"w": torch.arange(1000.0)}, zipped)
    (tmp_path / "zip_torn.pth").write_bytes(zipped.read_bytes()[:-30])
    with pytest.raises(ValueError, match="zip_torn.pth is truncated or corrupt"):
        read_checkpoint(tmp_path / "zip_torn.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_checkpoint(tmp_path / "missing.pth")


def test_auto_resume_falls_back_past_corrupt_and_foreign_newest_files(native, tmp_path: Path, caplog) -> None:
    good, flipped = native
    run = tmp_path / "train" / "runs" / "a"
    (run / "checkpoints").mkdir(parents=True)
    (run / RUN_KEY_FILE).write_text("k\n")
    older = run / "checkpoints" / "epoch_1.ckpt"
    older.write_bytes(good.read_bytes())
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(flipped.read_bytes())
    text = run / "checkpoints" / "epoch_2.ckpt"
    text.write_text("not a checkpoint\n")
    os.utime(older, (1, 1))
    os.utime(last, (2, 2))  # newest first: the text file, then the flipped last.ckpt, then the good one
    with caplog.at_level("WARNING", logger="wbpose.app.resume"):
        assert find_last_checkpoint(tmp_path / "train", "k") == older
    assert f"skipping {text}" in caplog.text and f"{text} is not a torch checkpoint" in caplog.text
    assert f"skipping {last}" in caplog.text and f"{last} is corrupt" in caplog.text
    older.write_bytes(b"")  # nothing usable left: start from scratch rather than crash
    assert find_last_checkpoint(tmp_path / "train", "k") is None


def test_a_pth_that_is_not_an_hrnet_pose_model_says_so(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save({"meta": {}, "state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(10)}}, path)
    with pytest.raises(ValueError, match=r"resnet50.pth is not an HRNet pose checkpoint .*2 tensors.*conv1.weight"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match=r"resnet50.pth is not an HRNet checkpoint: .*conv1.weight \[64, 3, 7, 7\]"):
        load_init_weights(build_pose_model("tiny"), {"pretrained": str(path)})
    # an HRNet of a width not built here is told apart from a foreign network
    w18 = dict(build_pose_model("tiny").state_dict())
    w18["backbone.transition1.0.0.weight"] = torch.zeros(18, 256, 3, 3)
    torch.save({"state_dict": w18}, tmp_path / "w18.pth")
    with pytest.raises(
        ValueError, match=r"w18.pth is an HRNet pose checkpoint of a width .*unsupported HRNet width 18"
    ):
        load_checkpoint(tmp_path / "w18.pth")

"""Read what the experiment loggers wrote, with their own readers: a wandb offline run's records, a TensorBoard
folder's HParams plugin data and scalars.

wandb 0.31 writes an offline run as one transaction log, ``offline-run-*/run-<id>.wandb`` (no
``files/wandb-summary.json``), and ships no Python reader for it: :func:`wandb_records` reads its block format
(LevelDB's log: 32 KiB blocks of chunks with a 7-byte header; wandb's file starts with ``:W&B``, magic 0xBEE1,
version 0) and parses each record with wandb's own protobuf, ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["tensorboard_hparams", "tensorboard_scalars", "wandb_records", "wandb_run", "wandb_summary"]

_BLOCK = 32768
_CHUNK_HEADER = struct.Struct("<IHB")  # masked CRC-32C (not checked here), length, chunk type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[bytes]:
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"not a wandb transaction log: {data[:7]!r}"
    pos, pending = 7, b""
    while pos + _CHUNK_HEADER.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER.size:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        body = data[pos + _CHUNK_HEADER.size : pos + _CHUNK_HEADER.size + length]
        pos += _CHUNK_HEADER.size + length
        if kind == _FULL:
            yield body
        elif kind == _FIRST:
            pending = body
        elif kind == _MIDDLE:
            pending += body
        elif kind == _LAST:
            yield pending + body
            pending = b""


def wandb_records(run_dir: Path) -> list[Any]:
    """Every record of the offline run folder ``run_dir`` (``.../wandb/offline-run-*``), in order."""
    from wandb.proto import wandb_internal_pb2

    (log_file,) = run_dir.glob("run-*.wandb")
    return [wandb_internal_pb2.Record.FromString(chunk) for chunk in _chunks(log_file.read_bytes())]


def wandb_run(run_dir: Path) -> Any:
    """The run record (name, group, project, ...) of an offline run."""
    return next(r.run for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "run")


def wandb_summary(run_dir: Path) -> dict[str, Any]:
    """The offline run's summary as wandb computed it: its summary updates applied in order, keyed by the metric
    name (a nested key joined with ``.``; ``val/wholebody_ap`` with ``summary="max,last"`` holds
    ``{"max": ..., "last": ...}``)."""
    summary: dict[str, Any] = {}
    for record in wandb_records(run_dir):
        if record.WhichOneof("record_type") != "summary":
            continue
        for item in record.summary.update:
            summary[".".join(item.nested_key) if item.nested_key else item.key] = json.loads(item.value_json)
        for item in record.summary.remove:
            summary.pop(".".join(item.nested_key) if item.nested_key else item.key, None)
    return summary


def _accumulator(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def tensorboard_hparams(folder: Path) -> dict[str, Any]:
    """The HParams plugin data of a TensorBoard run folder, read with TensorBoard's event reader and parsed with its
    hparams metadata: ``{"experiment": Experiment, "session_start_info": SessionStartInfo, "session_end_info":
    SessionEndInfo}`` (those present)."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    out = {}
    for content in _accumulator(folder).PluginTagToContent(metadata.PLUGIN_NAME).values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        assert data.version == metadata.PLUGIN_DATA_VERSION
        field = data.WhichOneof("data")
        out[field] = getattr(data, field)
    return out


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard run folder: tag -> [(step, value), ...] in the order written."""
    acc = _accumulator(folder)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}

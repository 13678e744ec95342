"""The training config stored in a checkpoint, read as data: only the project's own classes are rebuilt from it.

A checkpoint written by ``scripts/train.py`` carries the run's Hydra config (resolved and raw, the keys of
:mod:`wbpose.checkpoints.reader`). Loading the pickle weights-only does not make that config safe: evaluation,
prediction, export and ``TopdownPoseModule.from_checkpoint`` rebuild objects from its ``_target_`` nodes with Hydra's
``instantiate``, so a file whose ``codec._target_`` named ``torch.load`` or ``pathlib.Path.write_text`` would run
that call. :func:`checked_config` is the one gate every reader of a stored config goes through
(:func:`wbpose.checkpoints.reader.embedded_config`, hence ``load_checkpoint`` and the training resume check):

- only the groups a checkpoint supplies are kept (:data:`CHECKPOINT_GROUPS`: network, input size, codec, the
  LightningModule's settings, loss and metrics); the others (data, trainer, callbacks, loggers, optimiser,
  paths...) are dropped unread, so nothing downstream can build them from the file: evaluation takes its data from
  its own command line, training from its own config;
- in those groups every ``_target_``, at any depth (nested dicts, lists), must be one of :data:`ALLOWED_TARGETS`
  (the ``_target_`` of ``conf/model``, ``conf/codec`` and ``conf/module``; a test keeps the two in step), and no
  other Hydra key (``_args_``, ``_partial_``, ``_recursive_``, ``_convert_``...) is accepted;
- values are plain: strings, numbers, booleans, null, lists and string-keyed dicts; a string may interpolate
  a node of those groups or of ``paths`` (``${input.image_hw}``, ``${paths.output_dir}``) but not call a resolver
  (``${oc.decode:...}`` and ``${oc.create:...}`` would make new ``_target_`` nodes at resolution time, past this
  check; ``${oc.env:...}`` reads the environment);
- values that name files to read or write are this machine's choice, not the file's: ``model.pretrained``,
  ``model.init.pretrained`` and the metrics' ``outfile`` and ``cache_dir`` are set to null (evaluation sets its
  own results file).

Anything else is refused with a ``ValueError`` naming the file, the config key and the node (``codec._target_``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["ALLOWED_TARGETS", "CHECKPOINT_GROUPS", "FILE_VALUES", "checked_config"]

#: The config groups a checkpoint supplies; everything else in a stored config is dropped unread.
CHECKPOINT_GROUPS = ("model", "input", "codec", "module")

#: The only ``_target_`` values accepted in a stored config: the classes and builders of ``conf/model``,
#: ``conf/codec`` and ``conf/module`` (its loss and metric nodes included).
ALLOWED_TARGETS = frozenset(
    {
        "wbpose.models.build_pose_model",
        "wbpose.codecs.MSRAHeatmap",
        "wbpose.codecs.DarkHeatmap",
        "wbpose.engine.module.TopdownPoseModule",
        "wbpose.losses.KeypointMSELoss",
        "wbpose.metrics.CocoWholeBodyMetric",
    }
)

#: Nodes naming files or folders to read or write: set to null in what a checkpoint supplies.
FILE_VALUES = (
    ("model", "pretrained"),
    ("model", "init", "pretrained"),
    ("module", "val_metric", "outfile"),
    ("module", "val_metric", "cache_dir"),
    ("module", "test_metric", "outfile"),
    ("module", "test_metric", "cache_dir"),
)

#: Hydra's special keys (``_target_``, ``_args_``, ``_partial_``, ``_recursive_``, ``_convert_``...).
_HYDRA_KEY = re.compile(r"^_\w*_$")
#: An interpolation of a node of the supplied groups or of ``paths``, without a resolver call: ``${input.image_hw}``.
_NODE_REFERENCE = re.compile(r"\$\{(?:" + "|".join((*CHECKPOINT_GROUPS, "paths")) + r")(?:\.[\w\-]+|\[\d+\])*\}")


class _Refused(Exception):
    def __init__(self, node: str, reason: str) -> None:
        super().__init__(node, reason)
        self.node, self.reason = node, reason


def checked_config(stored: Any, source: str, key: str = "stored config") -> dict[str, Any]:
    """The part of a stored config that a checkpoint may supply, as plain data (see the module docstring).

    Args:
        stored: the dict read from the checkpoint (``checkpoint[CONFIG_KEY]`` or ``checkpoint[RAW_CONFIG_KEY]``).
        source: the file, for messages.
        key: the checkpoint key it was read from, for messages.

    Returns:
        A new dict holding only :data:`CHECKPOINT_GROUPS` (those present), with :data:`FILE_VALUES` set to null.

    Raises:
        ValueError: a ``_target_`` outside :data:`ALLOWED_TARGETS`, another Hydra key, a resolver interpolation or
            a value that is not plain data, naming ``source``, ``key`` and the node.
    """
    try:
        if not isinstance(stored, Mapping):
            raise _Refused("<root>", f"is a {type(stored).__name__}, not a dict")
        kept = {group: _plain(stored[group], group) for group in CHECKPOINT_GROUPS if group in stored}
    except _Refused as refused:
        raise ValueError(
            f"refusing {source}: its {key} {refused.node} {refused.reason}. A checkpoint's config is read as data: "
            f"only the project's own classes ({', '.join(sorted(ALLOWED_TARGETS))}) are built from it, and nothing "
            "in the file is run. Re-save the checkpoint from a trusted training run, or pass the weights with "
            "model=, input= and codec= on the command line."
        ) from None
    for path in FILE_VALUES:
        parent: Any = kept
        for name in path[:-1]:
            parent = parent.get(name) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and path[-1] in parent:
            parent[path[-1]] = None
    return kept


def _plain(value: Any, node: str) -> Any:
    """A copy of ``value`` made of plain containers and scalars, checked node by node (``node`` is its path)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        rest = _NODE_REFERENCE.sub("", value)
        if "${" in rest:
            allowed = ", ".join((*CHECKPOINT_GROUPS, "paths"))
            raise _Refused(node, f"= {value!r} calls an interpolation resolver (only references to {allowed} pass)")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{node}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise _Refused(node, f"has a key {name!r} that is not a string")
            child = f"{node}.{name}"
            if _HYDRA_KEY.match(name):
                if name != "_target_":
                    raise _Refused(child, "is a Hydra instantiation key; only _target_ is accepted")
                if not isinstance(item, str) or item not in ALLOWED_TARGETS:
                    raise _Refused(child, f"= {item!r} is not one of the project's classes")
            out[name] = _plain(item, child)
        return out
    raise _Refused(node, f"is a {type(value).__name__}, not a plain config value")

"""``ckpt_path=auto``: resume the latest ``last.ckpt`` of the same run, or start fresh and say so.

A run is "the same" when it was started with the same command-line overrides (``ckpt_path`` and Hydra's own keys
aside): every training run writes that key to ``run_key.txt`` in its folder, and ``ckpt_path=auto`` looks for the
newest intact checkpoint (``last.ckpt`` first; torn files skipped) under ``<paths.log_dir>/<task_name>/`` whose
folder holds the same key. This is what a pre-empted SLURM job needs: re-submitting the same command continues
where it stopped, in a new run folder.
A wandb run is resumed under the same id (the id is kept in ``wandb_id.txt`` next to the key).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, open_dict

from wbpose.app.config import parse_override
from wbpose.checkpoints.reader import checkpoint_problem

log = logging.getLogger(__name__)

__all__ = ["RUN_KEY_FILE", "WANDB_ID_FILE", "find_last_checkpoint", "resolve_auto_resume", "run_key"]

RUN_KEY_FILE = "run_key.txt"
WANDB_ID_FILE = "wandb_id.txt"
#: Overrides that do not change what is trained.
_IGNORED = ("ckpt_path", "hydra", "paths.output_dir", "trainer.enable_progress_bar", "extras")


def run_key(overrides: Sequence[str]) -> str:
    """A short hash of the overrides that define a run (sorted; ``ckpt_path`` and Hydra keys ignored)."""
    kept = sorted(o for o in overrides if not parse_override(o)[0].startswith(_IGNORED))
    return hashlib.sha1("\n".join(kept).encode()).hexdigest()[:16]


def find_last_checkpoint(search_root: Path, key: str, exclude: Path | None = None) -> Path | None:
    """The newest intact checkpoint (by mtime; ``last.ckpt`` first among equals) of the runs under ``search_root``
    with ``key``. A torn, corrupt or foreign file (:func:`~wbpose.checkpoints.reader.checkpoint_problem`: CRC of
    every member, not a torch checkpoint at all) is skipped with a warning saying why, for the previous good one."""
    found = []
    for key_file in search_root.glob(f"**/{RUN_KEY_FILE}"):
        folder = key_file.parent
        if exclude is not None and folder.resolve() == exclude.resolve():
            continue
        if key_file.read_text().strip() == key:
            found += list((folder / "checkpoints").glob("*.ckpt"))
    for path in sorted(found, key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt"), reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        log.warning("ckpt_path=auto: skipping %s, trying the previous checkpoint: %s", path, problem)
    return None


def resolve_auto_resume(cfg: DictConfig, overrides: Sequence[str]) -> Path | None:
    """Write this run's key; with ``ckpt_path=auto`` replace it by the checkpoint to resume (or ``None``).

    Returns:
        The checkpoint resumed from, or ``None``.
    """
    output_dir = Path(cfg.paths.output_dir)
    key = run_key(overrides)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_KEY_FILE).write_text(key + "\n")
    if str(cfg.get("ckpt_path")) != "auto":
        return None
    search_root = Path(cfg.paths.log_dir) / str(cfg.task_name)
    last = find_last_checkpoint(search_root, key, exclude=output_dir)
    with open_dict(cfg):
        cfg.ckpt_path = str(last) if last is not None else None
        if last is not None and cfg.get("logger") and cfg.logger.get("wandb"):
            id_file = last.parent.parent / WANDB_ID_FILE
            if id_file.is_file():
                cfg.logger.wandb.id = id_file.read_text().strip()
                cfg.logger.wandb.resume = "allow"
    if last is None:
        log.info("ckpt_path=auto: no last.ckpt of this run (key %s) under %s: starting from scratch", key, search_root)
    else:
        log.info("ckpt_path=auto: resuming %s (run key %s)", last, key)
    return last


def remember_wandb_id(cfg: DictConfig, loggers: Sequence[object]) -> None:
    """Keep the wandb run id in the run folder, so ``ckpt_path=auto`` can resume the same dashboard run."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            (Path(cfg.paths.output_dir) / WANDB_ID_FILE).write_text(str(logger.version) + "\n")

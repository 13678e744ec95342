"""``ckpt_path=auto``: resume the latest ``last.ckpt`` of the same run, or start fresh and say so.

A run is "the same" when it was started with the same command-line overrides (``ckpt_path`` and Hydra's own keys
aside): every training run writes that key to ``run_key.txt`` in its folder, and ``ckpt_path=auto`` looks for the
newest intact checkpoint (``last.ckpt`` first; torn files skipped) under ``<paths.log_dir>/<task_name>/`` whose
folder holds the same key. This is what a pre-empted SLURM job needs: re-submitting the same command continues
where it stopped, in a new run folder. A job that submitit re-queues itself (``hydra/launcher=slurm``) starts
again in the same job folder; a folder holding this very key is kept and its own ``last.ckpt`` resumed.
A wandb run is resumed under the same id: each training run draws its wandb id up front (unless the config gives
one), so the id is known before wandb starts, and keeps it in ``wandb_id.txt`` next to the key.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, open_dict

from wbpose.app.config import parse_override
from wbpose.app.startup import RUN_KEY_FILE, claim_run_folder, is_first_process
from wbpose.checkpoints.reader import checkpoint_problem

log = logging.getLogger(__name__)

__all__ = [
    "RUN_KEY_FILE",
    "WANDB_ID_FILE",
    "assign_wandb_id",
    "find_last_checkpoint",
    "remember_wandb_id",
    "resolve_auto_resume",
    "run_key",
]

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
    """Claim the run folder with this run's key (:func:`~wbpose.app.startup.claim_run_folder`: a folder holding
    another run is refused); with ``ckpt_path=auto`` replace it by the checkpoint to resume (or ``None``).

    Returns:
        The checkpoint resumed from, or ``None``.
    """
    output_dir = Path(cfg.paths.output_dir)
    key = run_key(overrides)
    auto = str(cfg.get("ckpt_path")) == "auto"
    continued = claim_run_folder(output_dir, key, continue_same_run=auto)
    if not auto:
        return None
    search_root = Path(cfg.paths.log_dir) / str(cfg.task_name)
    if continued:
        log.info("ckpt_path=auto: %s already holds this run (a re-queued job): continuing there", output_dir)
        _keep_earlier_csv(output_dir)
    # This run's own folder first: a newly claimed one holds no checkpoint, one continued in place (a re-queued job,
    # also outside the search root, e.g. a multirun with its own hydra.sweep.dir) holds the newest. The same on
    # every rank (only the first claims the folder).
    last = find_last_checkpoint(output_dir, key) or find_last_checkpoint(search_root, key)
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


def _keep_earlier_csv(output_dir: Path) -> None:
    """Move the CSV logger's ``csv/metrics.csv`` of the earlier attempt aside (``csv/metrics.attempt<N>.csv``):
    Lightning's CSVLogger deletes an existing file when it starts."""
    csv_file = output_dir / "csv" / "metrics.csv"
    if not csv_file.is_file():
        return
    attempt = 1
    while (kept := csv_file.with_name(f"metrics.attempt{attempt}.csv")).exists():
        attempt += 1
    csv_file.rename(kept)
    log.info("ckpt_path=auto: the earlier attempt's metrics are in %s", kept)


def assign_wandb_id(cfg: DictConfig) -> str | None:
    """Give the wandb logger of ``cfg`` an id when it has none (a new run: 8 random hex digits), so the id is known
    before wandb starts its run (Lightning's ``logger.version`` is ``None`` until then). Returns the id, or
    ``None`` without a wandb logger."""
    wandb_cfg = cfg.logger.get("wandb") if cfg.get("logger") else None
    if not wandb_cfg:
        return None
    if not wandb_cfg.get("id"):
        with open_dict(cfg):
            wandb_cfg.id = secrets.token_hex(4)
    return str(wandb_cfg.id)


def remember_wandb_id(cfg: DictConfig, loggers: Sequence[object]) -> None:
    """Keep the wandb run id in the run folder, so ``ckpt_path=auto`` can resume the same dashboard run (first
    process only: the other ranks have no wandb run)."""
    from pytorch_lightning.loggers import WandbLogger

    if not is_first_process():
        return
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            if logger.version is None:  # no id given and no run yet: nothing that could be resumed
                log.warning("wandb logger without an id: ckpt_path=auto will start a new wandb run")
                continue
            (Path(cfg.paths.output_dir) / WANDB_ID_FILE).write_text(f"{logger.version}\n")

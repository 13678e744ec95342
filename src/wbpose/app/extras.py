"""Start-of-run conveniences and the task wrapper (lightning-hydra-template's ``extras`` and ``task_wrapper``).

``apply_extras(cfg)`` reads the ``extras`` node: ignore Python warnings, require tags, save the composed config as
a tree (``config_tree.log`` in the run folder; the terminal gets one line naming it, so an error is never buried
under a screenful of config). ``task_wrapper`` runs a task so that a failure is reported once: the terminal gets
one line naming the run folder and the error itself (raised on to the caller, whose report is the only traceback
shown), the run's log file gets the full traceback. The experiment loggers are closed on every path.
"""

from __future__ import annotations

import functools
import io
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

__all__ = ["apply_extras", "close_loggers", "print_config_tree", "task_wrapper"]

#: Config nodes printed first, in this order; the rest follow in composition order.
PRINT_ORDER: tuple[str, ...] = ("experiment", "model", "input", "data", "codec", "module", "optim", "sched", "trainer")

T = TypeVar("T")


def print_config_tree(
    cfg: DictConfig, save_to: str | Path | None = None, order: Sequence[str] = PRINT_ORDER, terminal: bool = True
) -> str:
    """Render ``cfg`` as a rich tree (one branch per top-level node), print it (``terminal``) and optionally save
    the text; returns it."""
    import rich
    import rich.syntax
    import rich.tree
    from rich.console import Console

    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    names = [n for n in order if n in cfg] + [n for n in cfg if n not in order]
    for name in names:
        branch = tree.add(str(name), style="bold", guide_style="dim")
        node = cfg[name]
        text = OmegaConf.to_yaml(node, resolve=False) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    if terminal:
        rich.print(tree)
    console = Console(record=True, width=120, file=io.StringIO())  # records the text for the log file
    console.print(tree)
    text = console.export_text()
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        Path(save_to).write_text(text)
    return text


def apply_extras(cfg: DictConfig) -> None:
    """Apply the ``extras`` node of ``cfg`` (absent node: nothing)."""
    extras = cfg.get("extras")
    if not extras:
        return
    if extras.get("ignore_warnings"):
        log.info("extras.ignore_warnings=true: Python warnings are silenced")
        warnings.filterwarnings("ignore")
    if extras.get("enforce_tags") and not cfg.get("tags"):
        raise ValueError(
            "the run has no tags (extras.enforce_tags=true): pass tags=[my_tag,...] on the command line or set "
            "tags in the experiment file (they name and group runs in the dashboards)"
        )
    if extras.get("print_config"):
        output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
        if output_dir:  # the file only: the terminal is for progress and errors
            print_config_tree(cfg, Path(output_dir) / "config_tree.log", terminal=False)
            log.info("config tree: %s", Path(output_dir) / "config_tree.log")
        else:
            print_config_tree(cfg)


def close_loggers(loggers: Sequence[Any] = ()) -> None:
    """Close the loggers that keep a background process (wandb), whatever ``loggers`` holds."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    if wandb.run is not None:
        log.info("closing wandb (run folder: %s)", wandb.run.dir)
        wandb.finish()


def _log_traceback_to_files(message: str) -> None:
    """Log ``message`` with the exception being handled to the file handlers only (the run's ``<task>.log``): the
    terminal already gets the exception from whoever catches it."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, (), sys.exc_info())
    seen = set()
    for logger in (log, logging.getLogger()):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and id(handler) not in seen:
                seen.add(id(handler))
                handler.handle(record)


def task_wrapper(task: Callable[[DictConfig], T]) -> Callable[[DictConfig], T]:
    """Run ``task(cfg)``: on failure, say which run failed (one line on the terminal, the traceback in the run's
    log file) and re-raise, so the error is shown once, by the caller; always close the loggers."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig, *args: Any, **kwargs: Any) -> T:
        output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
        try:
            return task(cfg, *args, **kwargs)
        except Exception as err:
            _log_traceback_to_files(f"{task.__name__} failed (run folder: {output_dir})")
            log.error("%s failed (run folder: %s): %s, shown below", task.__name__, output_dir, type(err).__name__)
            raise
        finally:
            close_loggers()
            log.info("output dir: %s", output_dir)

    return wrapped

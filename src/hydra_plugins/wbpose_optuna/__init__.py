"""Hydra looks for sweepers in the ``hydra_plugins`` package only: this is the door to
:class:`wbpose.app.optuna_search.ContinuedOptunaSweeper` (``hparams_search=optuna``), the Optuna sweeper whose
study continues where an interrupted launch stopped. Hydra imports this module at every start (plugin discovery),
so it imports nothing of wbpose or optuna until the sweeper is made."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper

__all__ = ["ContinuedOptunaSweeper"]


class ContinuedOptunaSweeper(Sweeper):
    """Builds :class:`wbpose.app.optuna_search.ContinuedOptunaSweeper` from the sweeper config and hands it every
    call (the parameters of hydra-optuna-sweeper's ``OptunaSweeper``)."""

    def __init__(self, **params: Any) -> None:
        from wbpose.app.optuna_search import ContinuedOptunaSweeper as Impl

        self.sweeper = Impl(**params)

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)

"""Hydra helpers: OmegaConf resolvers, the config folder, experiment listing and composing outside ``@hydra.main``.

Importing this module registers the resolvers the configs use:

- ``${wbpose_root:}``: the project root (``$WBPOSE_ROOT`` if set, else the checkout holding ``conf/``, else the
  current directory);
- ``${wandb_offline:}``: ``True`` unless ``WANDB_MODE=online``, so runs never need the network; sync later with
  ``wandb sync <run dir>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = [
    "CONFIG_DIR",
    "compose_config",
    "list_experiments",
    "parse_override",
    "project_root",
    "register_resolvers",
]


def project_root() -> Path:
    """The project root: ``$WBPOSE_ROOT``, else the source checkout (has ``conf/``), else the cwd."""
    env = os.environ.get("WBPOSE_ROOT")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "conf" / "train.yaml").is_file():
        return checkout
    return Path.cwd()


#: The ``conf/`` directory of this checkout.
CONFIG_DIR = project_root() / "conf"


def _wandb_offline() -> bool:
    return os.environ.get("WANDB_MODE", "offline").lower() != "online"


def register_resolvers() -> None:
    """Register the ``wbpose_root`` and ``wandb_offline`` resolvers (idempotent)."""
    if not OmegaConf.has_resolver("wbpose_root"):
        OmegaConf.register_new_resolver("wbpose_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("wandb_offline"):
        OmegaConf.register_new_resolver("wandb_offline", _wandb_offline)


register_resolvers()


def list_experiments(config_dir: Path = CONFIG_DIR) -> list[str]:
    """Names of the files in ``conf/experiment/`` (without ``.yaml``)."""
    return sorted(p.stem for p in (config_dir / "experiment").glob("*.yaml"))


def parse_override(item: str) -> tuple[str, str]:
    """``"+data.batch_size=8"`` -> ``("data.batch_size", "8")`` (Hydra's ``+``/``++``/``~`` prefixes dropped)."""
    key, _, value = item.partition("=")
    return key.lstrip("+~"), value


def check_overrides(overrides: Sequence[str], config_dir: Path = CONFIG_DIR) -> None:
    """Fail early, listing the choices, when ``experiment=<name>`` names no file in ``conf/experiment/``."""
    for item in overrides:
        key, value = parse_override(item)
        if key == "experiment" and value:
            available = list_experiments(config_dir)
            for name in value.split(","):  # multirun: experiment=a,b
                if name and name not in available:
                    raise ValueError(f"unknown experiment {name!r}; available: {', '.join(available)}")


def compose_config(
    config_name: str = "train", overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> DictConfig:
    """Compose a config outside ``@hydra.main`` (tests, notebooks, the demo) as a real run would see it.

    ``HydraConfig`` is set so that ``${hydra:...}`` interpolations resolve; ``output_dir`` replaces the run
    folder (``paths.output_dir``) that only ``@hydra.main`` would create.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    check_overrides(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg

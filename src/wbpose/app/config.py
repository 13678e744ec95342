"""Hydra helpers: OmegaConf resolvers, the config folder, experiment listing and composing outside ``@hydra.main``.

Importing this module registers the resolvers the configs use:

- ``${wbpose_root:}``: the project root (``$WBPOSE_ROOT`` if set, else the checkout holding ``conf/``, else the
  current directory);
- ``${wandb_offline:}``: ``True`` unless ``WANDB_MODE=online``, so runs never need the network; sync later with
  ``wandb sync <run dir>``;
- ``${sweep_group:}``: the multirun folder's name in a sweep (wandb groups a sweep's runs by it), else null;
- ``${run_name:}``: what the run varies (``input=256x192,seed=1``: in a multirun the keys the sweep varies, else the
  overrides less folders, loggers, devices, ...; :mod:`wbpose.app.run_names`), else null: each dashboard run says
  what it varied;
- ``${run_id:}``: what makes a run folder's name unique beside its start time: ``<array job>_<task>`` in a SLURM
  array, ``<job id>`` in another SLURM job, torchrun's rendezvous id, else six random hex digits. Drawn once per
  composed config (Hydra copies it to a sweep's jobs), so two runs started in the same second never share a folder.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = [
    "CONFIG_DIR",
    "config_dir",
    "compose_config",
    "list_experiments",
    "parse_override",
    "project_root",
    "register_resolvers",
    "run_id",
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


def config_dir() -> Path:
    """The Hydra config tree: this checkout's ``conf/``, else the copy installed with the package (``wbpose.conf``)."""
    checkout = Path(__file__).resolve().parents[3] / "conf"
    if (checkout / "train.yaml").is_file():
        return checkout
    from importlib.resources import files

    return Path(str(files("wbpose.conf")))


#: The ``conf/`` tree the scripts and console commands compose from (``--config-dir`` adds a user's own).
CONFIG_DIR = config_dir()


def _wandb_offline() -> bool:
    return os.environ.get("WANDB_MODE", "offline").lower() != "online"


def _sweep_group() -> str | None:
    """``<task>/<multirun folder>`` in a multirun (every job of one sweep shares it), else ``None``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(str(HydraConfig.get().sweep.dir)).name


def _run_name() -> str | None:
    """What the run varies as ``key=value,...`` (:func:`wbpose.app.run_names.hydra_run_name`: in a multirun the
    keys the sweep varies, else the overrides less folders, loggers, devices, ...), ``None`` when nothing is left."""
    from wbpose.app.run_names import hydra_run_name

    return hydra_run_name()


def run_id() -> str:
    """The unique part of a run folder's name: SLURM's array job and task ids, its job id, torchrun's rendezvous id
    (``--rdzv-id`` or ``--standalone``), else 6 random hex digits."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    if os.environ.get("SLURM_JOB_ID"):
        return os.environ["SLURM_JOB_ID"]
    # torchrun's rendezvous id is shared by every rank of one launch ("none" unless --rdzv-id or --standalone)
    elastic = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if elastic != "none":
        return elastic.replace("-", "")[:8]
    return secrets.token_hex(3)


def register_resolvers() -> None:
    """Register the resolvers the configs use (idempotent): ``wbpose_root``, ``wandb_offline``, ``sweep_group``,
    ``run_name``, ``run_id`` (cached per config: every use in one config gives the same id)."""
    for name, fn in (
        ("wbpose_root", lambda: str(project_root())),
        ("wandb_offline", _wandb_offline),
        ("sweep_group", _sweep_group),
        ("run_name", _run_name),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id, use_cache=True)


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

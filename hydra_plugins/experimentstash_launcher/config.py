"""Typed configs of the launcher (one per backend: hydra/launcher=stash, stash_slurm, ...) and the sweeper."""

import importlib
from dataclasses import dataclass, field, make_dataclass

from hydra.core.config_store import ConfigStore

from experimentstash.backends import BACKENDS, LAUNCHER_TARGET


@dataclass
class StashSweeperConf:
    _target_: str = "hydra_plugins.experimentstash_launcher.sweeper.StashSweeper"


def _register() -> None:
    store = ConfigStore.instance()
    for name, (launcher, module) in BACKENDS.items():
        options = importlib.import_module(module).Options  # backend modules keep their top-level imports light
        node = make_dataclass(f"{name.capitalize()}LauncherConf",
                              [("_target_", str, field(default=LAUNCHER_TARGET))], bases=(options,))
        store.store(group="hydra/launcher", name=launcher, node=node, provider="experimentstash")
    store.store(group="hydra/sweeper", name="stash", node=StashSweeperConf, provider="experimentstash")


_register()

"""Typed configs of the launcher (one per backend: hydra/launcher=stash, stash_slurm, ...) and the sweeper.

Hydra scans this module in every Hydra app of the environment (the tools' too): it reads the backends' options
classes only, never their code (backends/__init__.py), and a backend whose options cannot be had is left out,
so one broken backend breaks nothing else. Another package's backend gets its config here only when it is the
one chosen (the command line loaded it already).
"""

from dataclasses import dataclass, field, make_dataclass

from hydra.core.config_store import ConfigStore

from experimentstash import StashError, backends
from experimentstash.launch.invocation import current


@dataclass
class StashSweeperConf:
    _target_: str = "hydra_plugins.experimentstash_launcher.sweeper.StashSweeper"


def _register() -> None:
    store = ConfigStore.instance()
    chosen = {current.backend: type(current.launcher_options)} if current.launcher_options is not None else {}
    for name in dict.fromkeys([*backends.BACKENDS, *chosen]):
        try:
            options = chosen.get(name) or backends.options_class(name)
        except StashError:
            continue  # named when it is chosen
        node = make_dataclass(f"{name.capitalize()}LauncherConf",
                              [("_target_", str, field(default=backends.LAUNCHER_TARGET))], bases=(options,))
        store.store(group="hydra/launcher", name=backends.launcher_of(name), node=node, provider="experimentstash")
    store.store(group="hydra/sweeper", name="stash", node=StashSweeperConf, provider="experimentstash")


_register()

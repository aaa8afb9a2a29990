"""Typed configs of the launcher (hydra/launcher=stash) and the sweeper (hydra/sweeper=stash)."""

from dataclasses import dataclass
from typing import List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class StashLauncherConf:
    _target_: str = "hydra_plugins.experimentstash_launcher.launcher.StashLauncher"
    max_parallel: Optional[int] = None  # jobs at once; default: the number of CPUs
    fail_fast: bool = False  # end the sweep at the first job that does not succeed
    timeout: Optional[float] = None  # seconds per job (stash.timeout wins when both are set)
    gpus: Optional[List[str]] = None  # device ids to share out; default: CUDA_VISIBLE_DEVICES
    gpus_per_job: int = 0  # devices each job gets as its own CUDA_VISIBLE_DEVICES


@dataclass
class StashSweeperConf:
    _target_: str = "hydra_plugins.experimentstash_launcher.sweeper.StashSweeper"


ConfigStore.instance().store(group="hydra/launcher", name="stash", node=StashLauncherConf, provider="experimentstash")
ConfigStore.instance().store(group="hydra/sweeper", name="stash", node=StashSweeperConf, provider="experimentstash")

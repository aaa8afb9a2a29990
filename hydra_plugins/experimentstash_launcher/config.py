"""Typed configs of the launcher (hydra/launcher=stash) and the sweeper (hydra/sweeper=stash)."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

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
class StashSlurmLauncherConf:
    """The whole sweep as ONE Slurm job array; option names as in hydra-submitit-launcher.

    Options not given on the command line are taken from `slurm:` in configs/meta.yaml or meta.local.yaml.
    """

    _target_: str = "hydra_plugins.experimentstash_launcher.launcher.StashSlurmLauncher"
    partition: Optional[str] = None
    timeout_min: int = 60
    cpus_per_task: Optional[int] = None
    gpus_per_node: Optional[int] = None
    mem_gb: Optional[float] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    exclude: Optional[str] = None
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    setup: List[str] = field(default_factory=list)  # shell lines run before the job, e.g. module load
    signal_delay_s: int = 90  # USR1 this long before the time limit: submitit's checkpoint and requeue
    array_parallelism: int = 256
    wait: bool = True  # false: submit, write sweep.json, exit; follow with `experimentstash status`


@dataclass
class StashSweeperConf:
    _target_: str = "hydra_plugins.experimentstash_launcher.sweeper.StashSweeper"


ConfigStore.instance().store(group="hydra/launcher", name="stash", node=StashLauncherConf, provider="experimentstash")
ConfigStore.instance().store(
    group="hydra/launcher", name="stash_slurm", node=StashSlurmLauncherConf, provider="experimentstash"
)
ConfigStore.instance().store(group="hydra/sweeper", name="stash", node=StashSweeperConf, provider="experimentstash")

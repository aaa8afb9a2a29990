"""The hydra.launcher.* options of the built-in backends, apart from their code: Hydra's plugin scan registers one
launcher config per backend from these without importing the backends themselves (backends/__init__.py)."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class LocalOptions:
    max_parallel: Optional[int] = None  # jobs at once; default: the number of CPUs
    fail_fast: bool = False  # end the sweep at the first job that does not succeed
    timeout: Optional[float] = None  # seconds per job (stash.timeout wins when both are set)
    gpus: Optional[List[str]] = None  # device ids to share out; default: CUDA_VISIBLE_DEVICES
    gpus_per_job: int = 0  # devices each job gets as its own CUDA_VISIBLE_DEVICES


@dataclass
class SlurmOptions:
    """Option names as in hydra-submitit-launcher."""

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
    signal_delay_s: int = 90  # submitit's signal this long before the time limit: checkpoint and requeue
    array_parallelism: int = 256
    wait: bool = True  # false: submit, write sweep.json, exit; follow with `experimentstash status`
    max_running: Optional[int] = None  # tasks of the whole sweep running at once, however many arrays it takes
    nodes: int = 1  # nodes of each job's allocation
    tasks_per_node: int = 1  # ranks of each job on each node (stash.distributed says how they start)
    gpus_per_task: Optional[int] = None

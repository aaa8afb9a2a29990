"""The launcher: plans every job in this process, then runs each as a subprocess of its pinned tool."""

from typing import Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StashLauncher(Launcher):
    def __init__(self, **options) -> None:
        self.options = options
        self.config: Optional[DictConfig] = None
        self.sweep = None  # one sweep dir for every launch() of this process (optimizing sweepers call it often)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config

    def sweep_class(self):
        from experimentstash.sweep import LocalSweep

        return LocalSweep

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from experimentstash import StashError
        from experimentstash.invocation import fail

        try:
            if self.sweep is None:
                self.sweep = self.sweep_class().create(self.config, self.options)
            return self.sweep.launch(job_overrides, initial_job_idx)
        except StashError as err:
            fail(err)


class StashSlurmLauncher(StashLauncher):
    """The same sweep, as one Slurm job array through submitit."""

    def sweep_class(self):
        from experimentstash.slurm import SlurmSweep

        return SlurmSweep

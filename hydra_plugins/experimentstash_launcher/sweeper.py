"""The sweeper: expands the command line, tool overrides included, into one override list per job."""

from typing import Any, List, Optional

from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StashSweeper(Sweeper):
    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> Any:
        from experimentstash import Escape, StashError, backends
        from experimentstash.launch.expand import expand
        from experimentstash.launch.invocation import current
        from experimentstash.registry import Stash

        # our launcher takes the tool overrides from every job's list; another launcher's task function adds them
        ours = backends.for_launcher(self.config.hydra.runtime.choices.get("hydra/launcher")) is not None
        try:
            stash = Stash.load(current.root)
            jobs = expand(stash, [*arguments, *(current.tool_overrides if ours else [])], self.config.tool)
        except StashError as err:  # through Hydra, which would show it as a crash: cli.py gives its exit code
            raise Escape(err) from None
        returns = self.launcher.launch(jobs, initial_job_idx=0)
        if not ours:  # the task function ran elsewhere (joblib's workers): its return value is the exit code
            for ret in returns:
                current.worse(ret.return_value if ret.status == JobStatus.COMPLETED else 1)
        return returns

"""The launcher: hands every job of a launch to the sweep core, which runs it on the chosen backend."""

from pathlib import Path
from typing import Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SweepEnd(Callback):
    """After a multirun driven by another sweeper (optuna, ...): the sweep's table once, and the best value."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if config.hydra.runtime.choices.get("hydra/sweeper") != "stash":
            from experimentstash.launch.invocation import current
            from experimentstash.views.summary import print_sweep_end

            print_sweep_end(current.root, Path(config.hydra.sweep.dir).absolute())


class StashLauncher(Launcher):
    """One class for every backend: which one runs the jobs is the hydra/launcher choice (stash, stash_slurm)."""

    def __init__(self, **options) -> None:
        self.options = options
        self.config: Optional[DictConfig] = None
        self.sweep = None  # one sweep dir for every launch() of this process (optimizing sweepers call it often)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from experimentstash import Escape, Interrupted, StashError
        from experimentstash.launch.invocation import current
        from experimentstash.launch.sweep import new_sweep

        try:
            if self.sweep is None:
                self.sweep = new_sweep(self.config, self.options)
            # the stash sweeper put the tool overrides in every job's list; another sweeper (optuna) only those
            # it searches, shown to it as ++key: the others are added here. Such a sweeper launches batch after
            # batch: the table comes once, at the end (SweepEnd)
            ours = self.config.hydra.runtime.choices.get("hydra/sweeper") == "stash"
            extra = [] if ours else current.tool_overrides
            numbered = [(num, [*words, *extra]) for num, words in enumerate(job_overrides, start=initial_job_idx)]
            return [self.sweep.job_return(p) for p in self.sweep.launch(numbered, table=ours)]
        except (StashError, Interrupted) as err:  # through Hydra, which would show it as a crash: cli.py gives its exit code
            raise Escape(err) from None

"""The contract between the sweep core (launch/sweep.py) and a backend: every hook the core calls, with a default
where a backend may do nothing, and the narrow view of a sweep and of a launch that a backend gets.

A backend subclasses Backend, sets `Options` (a dataclass of its `hydra.launcher.*` options) and implements
`run(launch)`; one missing is refused when the backend is loaded (backends/__init__.py), before anything runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar

from ..records import JobEntry, RunRecord, Status

FINISHER = "finisher"  # a sweep's final job in backend_state: {job_id} as submitted, {ended_at, notified} once it ran


class Job(ABC):
    """One planned job of a launch. It carries everything its run needs (the tool's pin, the stash's state, the
    experiment's sha256, the watch on the tool's checkout, its environment, its tracker run), and it pickles: a
    backend may run it here or send it to the machine that runs it."""

    num: int  # its number in the sweep
    run_dir: Path  # where its run.json and logs go
    spec: object  # the planned job (launch/plan.py JobSpec): tool, experiment, overrides, argv, env, timeout
    needs: tuple[int, ...] = ()  # jobs of the same launch it runs after, only once each of them succeeded
    distributed: str | None = None  # stash.distributed: how a job of several ranks starts them (srun, torchrun)

    @abstractmethod
    def run(self, on_start: Callable[[], None] | None = None, *, env: dict[str, str] | None = None,
            extra: dict | None = None, ignore_signals: tuple[int, ...] = ()) -> RunRecord | None:
        """Run the job's tool in this process to its end and return its final record (also its run.json).

        None, with no run dir made, when the launch is stopping (Ctrl-C, fail-fast) before the job started.
        records.RunDirError when its run dir cannot be written: nothing ran. `on_start()` is called once the tool
        runs; `env` adds variables to the tool's environment (its devices); `extra` adds fields to its record (a
        Slurm task's id and node); the tool starts with `ignore_signals` ignored (the one Slurm sends before
        preempting the task that runs it)."""

    @abstractmethod
    def stop(self, reason: Status = Status.INTERRUPTED) -> None:
        """End the job's tool, if it runs (TERM, then KILL after the grace period); its record says `reason`."""

    @abstractmethod
    def wait(self) -> int | None:
        """From a signal handler that interrupted run(): until the tool ends on its own. Its exit code (negative:
        the signal that ended it), None when no tool runs; run() still records it."""


class Sweep(ABC):
    """What a backend sees of a sweep when it is not running it (`status`, `rerun`, the follow hint)."""

    sweep_id: str
    sweep_dir: Path
    stash_root: Path
    state: dict  # the backend's own part of sweep.json (`backend_state`), kept across launches and reruns
    entries: dict[int, JobEntry]  # every job of the sweep, by number, as sweep.json has it


class Launch(Sweep):
    """What a backend gets to run the jobs of one launch, and how it reports on them."""

    jobs: list[Job]  # the jobs to run, in order (jobs reused from earlier runs are not among them)
    grace: float  # seconds between TERM and KILL when a job is ended (stash.grace)

    @property
    @abstractmethod
    def stopping(self) -> bool:
        """Ctrl-C or fail-fast: start no more jobs."""

    @abstractmethod
    def run(self, job: Job, env: dict[str, str] | None = None) -> Status:
        """Run one job in this process and report it (started, ended, cancelled when the launch is stopping, failed
        when its run dir cannot be written); its status. The way to run jobs in this process."""

    @abstractmethod
    def started(self, num: int) -> None:
        """A job's tool started (elsewhere: its record says running)."""

    @abstractmethod
    def ended(self, num: int, record: RunRecord | None, status: Status | None = None, **fields) -> None:
        """A job ended: its record (None when it has none), the backend's word on its status when it knows better
        than the record (Slurm's TIMEOUT, CANCELLED), and the backend's own fields."""

    @abstractmethod
    def cancelled(self, num: int, reason: str | None = None) -> None:
        """A job that never started and never will in this launch: no run dir, status cancelled, and why when it
        is not that the launch is stopping (`upstream failed`: a job it needs did not succeed)."""

    @abstractmethod
    def update(self, num: int, **fields) -> None:
        """The backend's own fields of a job (job_fields()), or a status it has not ended in (pending, running)."""

    @abstractmethod
    def tick(self) -> None:
        """Called while waiting: the progress line (sweep.json is kept true without it)."""

    @abstractmethod
    def stop(self, reason: Status = Status.INTERRUPTED) -> None:
        """End every job that runs in this process and start no new one (Ctrl-C, fail-fast)."""

    def finisher(self) -> tuple[Callable[[], object], dict[str, str]] | None:
        """For a backend that does not wait: what to run once every job of the launch has ended (a callable that
        pickles: it brings the records in line, ends the tracker runs, tells the sweep's end) and the environment
        it needs (never to be written to disk: it may hold secrets)."""
        return None


class Backend(ABC):
    """Where the jobs of a sweep run. Constructed with its resolved options (`Options`)."""

    Options: ClassVar[type]  # a dataclass of its hydra.launcher.* options: typing types, a default for each
    waits: bool = True  # run() returns only once every job has ended (False: submitted, followed by `status`)
    # run() starts a job only once the jobs it needs (Job.needs) succeeded, and cancels it when one did not
    # (`upstream failed`): without, a launch whose jobs need others is refused
    follows_needs: bool = False
    ranks: bool = False  # runs a job as several ranks (stash.distributed)

    def __init__(self, options) -> None:
        self.options = options

    @staticmethod
    def validate(options) -> None:
        """Values of the options that must agree with each other: a StashError naming the option."""

    def job_fields(self) -> dict:
        """The backend's own fields of a job in sweep.json, with their defaults."""
        return {}

    def job_timeout(self) -> float | None:
        """Seconds a job may run when stash.timeout is not given (None: no limit of the launcher's)."""
        return None

    def preflight(self) -> None:
        """Checks of the outside world before anything is written (a StashError stops the launch)."""

    def foreground_env(self) -> dict[str, str]:
        """What a single run gets of the options (the default backend's: its devices)."""
        return {}

    @abstractmethod
    def run(self, launch: Launch) -> None:
        """Run (or submit) the launch's jobs and report each one through `launch`. Ctrl-C arrives as Interrupted:
        end the jobs (launch.stop() for those of this process) and let it through."""

    def refresh(self, sweep: Sweep, statuses: dict[int, Status]) -> tuple[dict[int, tuple[Status, dict]], str | None]:
        """For `status` and `rerun`: given each job's status as its run.json says, what the backend knows better,
        as {job number: (status, its own fields)}, and a note for the user when it cannot say everything."""
        return {}, None

    def before_rerun(self, sweep: Sweep, nums: list[int]) -> None:
        """A StashError when these jobs cannot be run again yet (an attempt still queued or running)."""

    def follow_hint(self, sweep: Sweep) -> str | None:
        """For a backend that does not wait: how to follow what this launch submitted (None: the table instead)."""
        return None

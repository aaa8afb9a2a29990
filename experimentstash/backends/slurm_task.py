"""What one task of a Slurm array runs on its node (imported there and when submitting, never at start-up:
submitit takes long to import)."""

import os
import socket
import time
from pathlib import Path

import submitit

from ..records import Status, mark_ended, move_aside
from ..results import run_outputs
from .base import Job


class NodeTask(submitit.helpers.Checkpointable):
    """What one array task runs on its node: its job (a pickled base.Job). Preempted: ends the tool, records
    `preempted`, requeues itself."""

    def __init__(self, root: Path, timeout_min: int, strict: bool = False):
        self.root = root
        self.timeout_min = timeout_min
        self.strict = strict  # a job that did not succeed fails its task: Slurm then never starts what needs it
        self._job: Job | None = None
        self._started = 0.0

    def __getstate__(self):
        return {"root": self.root, "timeout_min": self.timeout_min, "strict": self.strict}

    def __setstate__(self, state):
        self.__init__(**state)

    def __call__(self, job: Job) -> str:
        self._started = time.time()
        self._job = job
        previous = move_aside(job.run_dir, "preempted")  # a requeued task finds its earlier attempt's run dir
        env = submitit.JobEnvironment()
        extra = {"slurm_job_id": env.job_id, "node": socket.gethostname(), "requeued": len(previous),
                 "previous_attempts": previous}
        record = job.run(extra=extra, ignore_signals=(submitit.JobEnvironment._usr_sig(),))
        status = record.status if record else Status.CANCELLED
        if self.strict and not status.ok:
            raise RuntimeError(f"job {job.num} {status}: see {job.run_dir}/stderr.log")
        return status.value

    def checkpoint(self, *args, **kwargs):
        # the same rule as submitit: a signal late in the time limit is the limit, earlier it is a preemption
        walltime = time.time() - self._started
        limit = self.timeout_min * 60
        if walltime >= min(limit * 0.8, limit - 600):
            self._until_the_limit()
        if self._job is not None:
            self._job.stop(Status.PREEMPTED)
        self._finish(status=Status.PREEMPTED)
        return super().checkpoint(*args, **kwargs)

    def _until_the_limit(self) -> None:
        """Let the tool work on until Slurm ends the task at its limit (Slurm's state: TIMEOUT)."""
        code = self._job.wait() if self._job else None
        if code is not None and code >= 0:  # it finished on its own before the limit: that is its result
            self._finish(status=Status.SUCCEEDED if code == 0 else Status.FAILED, exit_code=code,
                         **run_outputs(self._job.run_dir, self._job.spec.tool.result, self._job.spec.tool.history))
            os._exit(0 if code == 0 else 1)
        self._finish(status=Status.TIMEOUT)
        while True:
            time.sleep(60)

    def _finish(self, **fields) -> None:
        if self._job is not None:
            mark_ended(self.root, self._job.run_dir, duration_s=round(time.time() - self._started, 3), **fields)

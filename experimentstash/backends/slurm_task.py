"""What one task of a Slurm array runs on its node (imported there and when submitting, never at start-up:
submitit takes long to import)."""

import os
import socket
import sys
import time
from pathlib import Path

import submitit

from ..execute import Runner, read_result
from ..records import Status, mark_ended, move_aside


class NodeTask(submitit.helpers.Checkpointable):
    """What one array task runs on its node. Preempted: ends the tool, records `preempted`, requeues itself."""

    def __init__(self, root: Path, grace: float, timeout_min: int):
        self.root = root
        self.grace = grace
        self.timeout_min = timeout_min
        self._runner = None
        self._spec = None
        self._started = 0.0

    def __getstate__(self):
        return {"root": self.root, "grace": self.grace, "timeout_min": self.timeout_min}

    def __setstate__(self, state):
        self.__init__(**state)

    def __call__(self, spec, pin, stash, experiment_sha: str, child=None):
        self._started = time.time()
        self._spec = spec
        previous = move_aside(spec.run_dir, "preempted")  # a requeued task finds its earlier attempt's run dir
        env = submitit.JobEnvironment()
        extra = {"slurm_job_id": env.job_id, "node": socket.gethostname(), "requeued": len(previous),
                 "previous_attempts": previous}
        self._runner = Runner(self.root, grace=self.grace, ignore_signals=(submitit.JobEnvironment._usr_sig(),))
        return self._runner.run(spec, pin, stash, experiment_sha, extra=extra,
                                prepare=_mlflow_run(child) if child else None).status.value

    def checkpoint(self, *args, **kwargs):
        # the same rule as submitit: a signal late in the time limit is the limit, earlier it is a preemption
        walltime = time.time() - self._started
        limit = self.timeout_min * 60
        if walltime >= min(limit * 0.8, limit - 600):
            self._until_the_limit()
        if self._runner is not None:
            self._runner.stop_all(Status.PREEMPTED)
        self._finish(status=Status.PREEMPTED)
        return super().checkpoint(*args, **kwargs)

    def _until_the_limit(self) -> None:
        """Let the tool work on until Slurm ends the task at its limit (Slurm's state: TIMEOUT)."""
        code = None
        for pid in self._runner.pids() if self._runner else []:
            # this handler interrupted the runner's wait for the tool: look at its end without reaping it
            while (info := os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)) is None:
                time.sleep(0.5)
            code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        if code is not None and code >= 0:  # it finished on its own before the limit: that is its result
            self._finish(status=Status.SUCCEEDED if code == 0 else Status.FAILED, exit_code=code,
                         result=read_result(self._spec))
            os._exit(0 if code == 0 else 1)
        self._finish(status=Status.TIMEOUT)
        while True:
            time.sleep(60)

    def _finish(self, **fields) -> None:
        if self._spec is not None:
            mark_ended(self.root, self._spec.run_dir, duration_s=round(time.time() - self._started, 3), **fields)


def _mlflow_run(child):
    """The job's MLflow run (trackers.ChildRun), made here on the node just before its tool starts: the task
    cannot wait for the submitting process. A server that does not answer costs the job its run, not its start."""
    def start(record) -> dict:
        from ..trackers import Mlflow, said

        try:
            return child.start(Mlflow(child.uri), record.started_at)
        except Exception as err:
            print(f"experimentstash: no MLflow run for this job ({said(err)})", file=sys.stderr, flush=True)
            return {}
    return start

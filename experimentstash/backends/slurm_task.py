"""What one task of a Slurm array runs on its node (imported there and when submitting, never at start-up:
submitit takes long to import)."""

import json
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import submitit

from ..records import Status, mark_ended, move_aside
from ..results import run_outputs
from .base import Job

RANK_SCRIPT = Path(__file__).with_name("slurm_rank.py")


class NodeTask(submitit.helpers.Checkpointable):
    """What one array task runs on its node: its job (a pickled base.Job). Preempted: ends the tool, records
    `preempted`, requeues itself."""

    def __init__(self, root: Path, timeout_min: int, strict: bool = False, nodes: int = 1, tasks_per_node: int = 1):
        self.root = root
        self.timeout_min = timeout_min
        self.strict = strict  # a job that did not succeed fails its task: Slurm then never starts what needs it
        self.nodes, self.tasks_per_node = nodes, tasks_per_node
        self._job: Job | None = None
        self._planned = None  # the job's spec as planned, before its tool was wrapped for its ranks
        self._started = 0.0

    def __getstate__(self):
        return {"root": self.root, "timeout_min": self.timeout_min, "strict": self.strict, "nodes": self.nodes,
                "tasks_per_node": self.tasks_per_node}

    def __setstate__(self, state):
        self.__init__(**state)

    def __call__(self, job: Job) -> str:
        self._started = time.time()
        self._job = job
        previous = move_aside(job.run_dir, "preempted")  # a requeued task finds its earlier attempt's run dir
        env = submitit.JobEnvironment()
        extra = {"slurm_job_id": env.job_id, "node": socket.gethostname(), "requeued": len(previous),
                 "previous_attempts": previous}
        ranked = job.distributed is not None or self.nodes * self.tasks_per_node > 1
        variables = self._start_ranks(job, env) if ranked else None
        record = job.run(extra=extra, env=variables, ignore_signals=(submitit.JobEnvironment._usr_sig(),))
        if record is not None and ranked:
            mark_ended(self.root, job.run_dir, ranks=self._ranks(job))
        status = record.status if record else Status.CANCELLED
        if self.strict and not status.ok:
            raise RuntimeError(f"job {job.num} {status}: see {job.run_dir}/stderr.log")
        return status.value

    def _start_ranks(self, job: Job, env) -> dict[str, str]:
        """The job's tool as ranks of the allocation, each Slurm task through slurm_rank.py: one rank per task
        (srun), or one torchrun per node that starts the node's ranks (torchrun, after the tool's interpreter); one
        failing task ends the others (--kill-on-bad-exit). Every rank meets at the first node, on a port from the
        job id."""
        self._planned = job.spec
        addr, port = env.hostnames[0], 20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000
        argv, per_node = job.spec.argv, self.tasks_per_node
        if job.distributed == "torchrun":
            head = len(job.spec.interpreter.prefix)
            argv = (*argv[:head], "-m", "torch.distributed.run", f"--nnodes={self.nodes}",
                    f"--nproc-per-node={per_node}", "--rdzv-backend=c10d", f"--rdzv-endpoint={addr}:{port}",
                    f"--rdzv-id={os.environ.get('SLURM_JOB_ID', '0')}", *argv[head:])
            per_node = 1
        job.spec = replace(job.spec, argv=(
            "srun", "--kill-on-bad-exit=1", f"--nodes={self.nodes}", f"--ntasks={self.nodes * per_node}",
            f"--ntasks-per-node={per_node}", sys.executable, str(RANK_SCRIPT), str(job.run_dir), str(per_node), "--",
            *argv))
        return {"MASTER_ADDR": addr, "MASTER_PORT": str(port)}

    def _ranks(self, job: Job) -> list[dict]:
        """Each Slurm task's node, exit code and logs as it wrote them (rank<k>.json; with torchrun, one per node); one
        that wrote none (it never started, or was killed with its node) with no node and no exit code."""
        count = self.nodes * (1 if job.distributed == "torchrun" else self.tasks_per_node)
        ranks = []
        for k in range(count):
            try:
                ranks.append(json.loads((job.run_dir / f"rank{k}.json").read_text()))
            except (OSError, ValueError):
                ranks.append({"rank": k, "node": "unknown", "exit_code": None, "stdout": f"rank{k}.stdout.log",
                              "stderr": f"rank{k}.stderr.log"})
        return ranks

    def checkpoint(self, *args, **kwargs):
        # the same rule as submitit: a signal late in the time limit is the limit, earlier it is a preemption
        walltime = time.time() - self._started
        limit = self.timeout_min * 60
        if walltime >= min(limit * 0.8, limit - 600):
            self._until_the_limit()
        if self._job is not None:
            self._job.stop(Status.PREEMPTED)
        self._finish(status=Status.PREEMPTED)
        if self._planned is not None:  # the requeued task wraps it again
            self._job.spec = self._planned
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

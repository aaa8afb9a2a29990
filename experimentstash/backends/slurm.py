"""The Slurm backend (`hydra/launcher=stash_slurm`): the jobs of a launch as Slurm job arrays, through submitit.

As few arrays as the cluster allows: one, unless the launch has more jobs than its MaxArraySize (read from
`scontrol show config`). Each task runs its job exactly as locally (Runner: the pinned tool as a subprocess,
run.json and logs in its run dir on the shared filesystem). The submitting process follows every array with
one sacct call per poll, backing off from 1 s to 30 s, and keeps sweep.json true.
"""

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

from .. import StashError

# Slurm's final states that say more than the job's own record: Slurm ended it
SLURM_VERDICT = {
    "TIMEOUT": "timeout", "DEADLINE": "timeout", "CANCELLED": "cancelled", "PREEMPTED": "preempted",
    "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
}
SLURM_ACTIVE = {"PENDING": "pending", "REQUEUED": "pending", "CONFIGURING": "pending", "RUNNING": "running",
                "COMPLETING": "running", "SUSPENDED": "running"}
POLL_FIRST, POLL_MAX = 1.0, 30.0


@dataclass
class Options:
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


def executor_parameters(opts: Options) -> dict:
    """Our option names -> submitit's SlurmExecutor parameters."""
    params = {
        "partition": opts.partition, "time": opts.timeout_min, "cpus_per_task": opts.cpus_per_task,
        "gpus_per_node": opts.gpus_per_node, "account": opts.account, "qos": opts.qos,
        "constraint": opts.constraint, "exclude": opts.exclude,
        "additional_parameters": dict(opts.additional_parameters or {}), "setup": list(opts.setup or []),
        "signal_delay_s": opts.signal_delay_s, "array_parallelism": opts.array_parallelism,
        "mem": f"{opts.mem_gb}GB" if opts.mem_gb is not None else None,
    }
    return {k: v for k, v in params.items() if v is not None}


def check_reachable() -> None:
    """Fail before anything is written when Slurm cannot take the arrays."""
    if shutil.which("sbatch") is None:
        raise StashError("hydra/launcher=stash_slurm needs Slurm, but `sbatch` is not on PATH on this machine.")
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise StashError(f"Slurm does not answer (`scontrol ping`: {err}). Nothing was submitted.") from None
    if ping.returncode != 0 or "UP" not in ping.stdout:
        said = (ping.stdout + ping.stderr).strip().splitlines()
        raise StashError(
            f"The Slurm controller is not reachable (`scontrol ping`: {said[-1] if said else 'no answer'}). "
            "Nothing was submitted."
        )


@lru_cache(maxsize=1)
def max_array_size() -> int:
    """The cluster's MaxArraySize: an array's task indices must stay below it (Slurm's default: 1001)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return max(1, int(value.strip()))
    return 1001


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def sacct_states(arrays: list[str]) -> dict[str, str] | None:
    """Slurm's state of each `<array id>_<task>` of these arrays, in one sacct call (None when sacct cannot
    answer: records gone, no Slurm)."""
    arrays = sorted({a for a in arrays if a and a.isdigit()}, key=int)
    if not arrays or shutil.which("sacct") is None:
        return None
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(arrays)],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    states = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.partition("|")
        for one in _array_tasks(job_id):
            states[one] = state.split()[0] if state else "UNKNOWN"
    return states


def _array_tasks(job_id: str) -> list[str]:
    """sacct shows pending tasks together: `123_[0-3%2]` -> 123_0 ... 123_3."""
    if "_[" not in job_id:
        return [job_id]
    array, _, spec = job_id.partition("_[")
    tasks = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            tasks += [f"{array}_{i}" for i in range(int(first), int(last or first) + 1)]
    return tasks


def merged_status(record_status: str | None, slurm_state: str | None) -> str:
    """One status from what the task recorded and what Slurm says (a requeued task is still going)."""
    if slurm_state in SLURM_VERDICT:
        return SLURM_VERDICT[slurm_state]
    if slurm_state in SLURM_ACTIVE:
        return SLURM_ACTIVE[slurm_state]
    if record_status in ("pending", "running", "lost", None):
        if slurm_state in ("COMPLETED", "FAILED"):
            return "failed"  # ended without a final record of its own
        return record_status or "pending"
    return record_status


def _array_of(job_id: str | None) -> str:
    return (job_id or "").split("_")[0]


class Backend:
    def __init__(self, options: Options, stash):
        self.options = options
        self.stash = stash

    @property
    def waits(self) -> bool:
        return self.options.wait

    @staticmethod
    def validate(opts: Options) -> None:
        if opts.timeout_min <= 0:
            raise StashError(f"hydra.launcher.timeout_min={opts.timeout_min}: give a positive number of minutes.")
        if opts.signal_delay_s >= opts.timeout_min * 60:
            raise StashError(
                f"hydra.launcher.signal_delay_s={opts.signal_delay_s} is not shorter than timeout_min="
                f"{opts.timeout_min} minutes: the job would be signalled at once. Lower signal_delay_s."
            )
        if opts.array_parallelism < 1:
            raise StashError(f"hydra.launcher.array_parallelism={opts.array_parallelism}: give at least 1.")

    def job_fields(self) -> dict:
        return {"slurm_job_id": None, "slurm_state": None}

    def job_timeout(self) -> float | None:
        return None  # Slurm's time limit ends the task

    def preflight(self) -> None:
        check_reachable()

    # --- submitting -----------------------------------------------------------------------------------------
    def run(self, sweep, planned, facts) -> None:
        jobs = self.submit(sweep, planned, facts)
        if self.options.wait:
            self.follow(sweep, planned, jobs)

    def submit(self, sweep, planned, facts) -> list:
        """Submit the jobs as arrays of at most MaxArraySize tasks; submitit's jobs in the order of `planned`."""
        import submitit

        from .slurm_task import NodeTask

        executor = submitit.SlurmExecutor(folder=sweep.dir / ".submitit", max_num_timeout=0)
        executor.update_parameters(job_name=f"stash-{sweep.id}", **executor_parameters(self.options))
        task = NodeTask(self.stash.root, float(sweep.base.stash.grace), self.options.timeout_min)
        submitted = []
        for part in chunks(planned, max_array_size()):
            specs = [p.spec for p in part]
            try:
                jobs = executor.map_array(task, specs, [facts.pins[s.tool.name] for s in specs],
                                          [facts.stash] * len(specs), [facts.sha[s.experiment_file] for s in specs])
            except Exception as err:  # sbatch refused
                self._refused(sweep, err, submitted)
            arrays = sweep.record.backend_state.setdefault("arrays", [])
            arrays.append(_array_of(jobs[0].job_id))
            for p, job in zip(part, jobs):
                sweep.update(p.num, slurm_job_id=job.job_id)
            submitted += jobs
            sweep.write(force=True)
        return submitted

    def _refused(self, sweep, err: Exception, submitted: list) -> None:
        said = str(err).strip().splitlines()
        if submitted:  # the arrays before this one run: cancel them, the sweep is all or nothing
            subprocess.run(["scancel", *sorted({_array_of(j.job_id) for j in submitted})], capture_output=True)
        elif all(job["status"] == "pending" and not job.get("slurm_job_id") for job in sweep.jobs.values()):
            shutil.rmtree(sweep.dir, ignore_errors=True)  # nothing of this sweep was submitted: leave nothing
        raise StashError(f"sbatch refused the job array: {said[-1] if said else err}") from None

    # --- following ------------------------------------------------------------------------------------------
    def follow(self, sweep, planned, jobs) -> None:
        """Wait for the tasks, keeping sweep.json true; Ctrl-C cancels every array."""
        from ..execute import Interrupted
        from ..invocation import console
        from ..records import Status

        waiting = {p.num: (p, job) for p, job in zip(planned, jobs)}
        arrays = sorted({_array_of(job.job_id) for job in jobs})
        pause, last = POLL_FIRST, None
        try:
            while waiting:
                states = sacct_states(arrays) or {}
                for num, (p, job) in list(waiting.items()):
                    status = self.update_job(sweep, num, p.spec.run_dir, states.get(job.job_id))
                    if Status(status).final:
                        del waiting[num]
                sweep.tick()
                changed = states != last
                last = states
                pause = POLL_FIRST if changed else min(pause * 1.5, POLL_MAX)
                deadline = time.monotonic() + pause
                while waiting and time.monotonic() < deadline:
                    time.sleep(0.2)
                    sweep.tick()
        except Interrupted as stop:
            console.print(f"\n{stop}: cancelling the arrays' tasks", highlight=False)
            subprocess.run(["scancel", *arrays], capture_output=True)
            for num, (p, _) in waiting.items():
                sweep.update(num, status=Status.INTERRUPTED)
                _mark(p.spec.run_dir, lambda r: r.status == Status.RUNNING, status=Status.INTERRUPTED)
            raise

    def update_job(self, sweep, num: int, run_dir: Path, slurm_state: str | None) -> str:
        """Bring one job's sweep.json entry (and its run.json, when Slurm ended it) up to date."""
        from ..records import Status, read_run_if_any

        record = read_run_if_any(run_dir) if slurm_state not in ("PENDING", "REQUEUED", None) else None
        status = merged_status(record.status.value if record else None, slurm_state)
        fields_ = {"status": status, "slurm_state": slurm_state}
        if record is not None:
            fields_.update(exit_code=record.exit_code, duration_s=record.duration_s)
            sweep.results[num] = record.result
            if Status(status).final and record.status.value != status:  # Slurm ended it: the record says so too
                _mark(run_dir, lambda r: True, status=Status(status), slurm_state=slurm_state)
        if Status(status).final and sweep.jobs[num]["status"] != status and sweep.progress:
            sweep.update(num, **fields_)
            sweep.progress.ended(sweep.jobs[num], sweep.stash.root)
        else:
            sweep.update(num, **fields_)
        return status

    def refresh(self, sweep, records) -> str | None:
        """Slurm's word for every job (`status`, `rerun`); a note when Slurm's records cannot be had."""
        jobs = list(sweep.jobs.values())
        states = sacct_states(sweep.record.backend_state.get("arrays") or [_array_of(j.get("slurm_job_id"))
                                                                            for j in jobs])
        missing = states is None or any(j.get("slurm_job_id") not in states for j in jobs)
        for job in jobs:
            slurm_state = (states or {}).get(job.get("slurm_job_id") or "")
            record = records.get(job["num"])
            status = job["status"] if record is not None else (record and record.status.value)
            sweep.update(job["num"], status=merged_status(status, slurm_state), slurm_state=slurm_state)
        return "Slurm has no record of some jobs: their status is what run.json says." if missing else None

    def follow_hint(self, sweep) -> None:
        from ..invocation import console

        rel = os.path.relpath(sweep.dir, sweep.stash.root)
        ids = sweep.record.backend_state.get("arrays") or []
        kind = "array" if len(ids) == 1 else f"{len(ids)} arrays"
        console.print(
            f"Submitted {len(sweep.jobs)} jobs as Slurm {kind} {', '.join(ids)}. Follow them with:\n"
            f"  experimentstash status {rel}\n  squeue -j {','.join(ids)}",
            highlight=False,
        )


def _mark(run_dir: Path, when, **fields) -> None:
    """Update the run.json of a task from outside it (Slurm ended it), when `when(record)` holds."""
    from ..records import read_run_if_any, write_json

    record = read_run_if_any(run_dir)
    if record is None or not when(record):
        return
    for key, value in fields.items():
        if hasattr(record, key):
            setattr(record, key, value)
        else:
            record.extra[key] = value
    if record.ended_at is None:
        from ..records import now_iso

        record.ended_at = now_iso()
    write_json(run_dir / "run.json", record.to_dict())

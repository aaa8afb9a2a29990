"""A sweep on Slurm: every job of a launch becomes one task of ONE job array, submitted through submitit.

Each task runs the job exactly as locally (Runner: the pinned tool as a subprocess, run.json and logs in its run
dir on the shared filesystem). The submitting process follows the array with sacct and keeps sweep.json true.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import submitit
from hydra_plugins.experimentstash_launcher.config import StashSlurmLauncherConf

from . import StashError
from .execute import Interrupted, Runner, raise_on_signals
from .invocation import console, current, override_key
from .job import JobSpec
from .pins import StashState, ToolPin
from .record import FINAL, RUN_FILE, now_iso, read_json, read_result, write_json
from .sweep import LocalSweep

# Slurm's final states that say more than the job's own record: Slurm ended it
SLURM_VERDICT = {
    "TIMEOUT": "timeout", "DEADLINE": "timeout", "CANCELLED": "cancelled", "PREEMPTED": "preempted",
    "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
}
SLURM_OPTIONS = [name for name in StashSlurmLauncherConf.__dataclass_fields__ if name != "_target_"]
SLURM_ACTIVE = {"PENDING": "pending", "REQUEUED": "pending", "CONFIGURING": "pending", "RUNNING": "running",
                "COMPLETING": "running", "SUSPENDED": "running"}


def slurm_options(options: dict, machine: dict, given: set[str]) -> StashSlurmLauncherConf:
    """The launcher's options: the command line, then configs/meta(.local).yaml `slurm:`, then the defaults."""
    merged = {k: v for k, v in options.items() if k != "_target_"}
    merged.update({k: v for k, v in machine.items() if k not in given})
    unknown = sorted(set(merged) - set(SLURM_OPTIONS))
    if unknown:
        raise StashError(f"Unknown Slurm option '{unknown[0]}' (known: {', '.join(SLURM_OPTIONS)}).")
    opts = StashSlurmLauncherConf(**merged)
    if not opts.timeout_min or opts.timeout_min <= 0:
        raise StashError(f"hydra.launcher.timeout_min={opts.timeout_min}: give a positive number of minutes.")
    if opts.signal_delay_s >= opts.timeout_min * 60:
        raise StashError(
            f"hydra.launcher.signal_delay_s={opts.signal_delay_s} is not shorter than timeout_min="
            f"{opts.timeout_min} minutes: the job would be signalled at once. Lower signal_delay_s."
        )
    if opts.array_parallelism < 1:
        raise StashError(f"hydra.launcher.array_parallelism={opts.array_parallelism}: give at least 1.")
    return opts


def executor_parameters(opts: StashSlurmLauncherConf) -> dict:
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
    """Fail before anything is written when Slurm cannot take the array."""
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


def sacct_states(job_ids: list[str]) -> dict[str, str] | None:
    """Slurm's state of each `<array id>_<task>` (None when sacct cannot answer: records gone, no Slurm)."""
    arrays = sorted({j.split("_")[0] for j in job_ids if j})
    if not arrays or shutil.which("sacct") is None:
        return None
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(arrays)],
                             capture_output=True, text=True, timeout=30)
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
        tasks += [f"{array}_{i}" for i in range(int(first), int(last or first) + 1)]
    return tasks


def merged_status(record: dict | None, slurm_state: str | None) -> str:
    """One status from what the task recorded and what Slurm says (a requeued task is still going)."""
    if slurm_state in SLURM_VERDICT:
        return SLURM_VERDICT[slurm_state]
    if slurm_state in SLURM_ACTIVE:
        return SLURM_ACTIVE[slurm_state]
    if record and record["status"] in FINAL:
        return record["status"]
    if slurm_state in ("COMPLETED", "FAILED"):
        return "failed"  # ended without a final record of its own
    return record["status"] if record else "pending"


class NodeTask(submitit.helpers.Checkpointable):
    """What one array task runs on its node. Preempted: ends the tool, records `preempted`, requeues itself."""

    def __init__(self, root: Path, grace: float, timeout_min: int):
        self.root = root
        self.grace = grace
        self.timeout_min = timeout_min
        self._runner: Runner | None = None
        self._spec: JobSpec | None = None
        self._started = 0.0
        self._run_file: Path | None = None

    def __getstate__(self):
        return {"root": self.root, "grace": self.grace, "timeout_min": self.timeout_min}

    def __setstate__(self, state):
        self.__init__(**state)

    def __call__(self, spec: JobSpec, pin: ToolPin, stash: StashState, experiment_sha: str):
        self._started = time.time()
        self._spec = spec
        self._run_file = spec.run_dir / RUN_FILE
        previous = _keep_preempted_attempts(spec.run_dir)
        env = submitit.JobEnvironment()
        extra = {"slurm_job_id": env.job_id, "node": socket.gethostname(), "requeued": len(previous),
                 "previous_attempts": previous}
        self._runner = Runner(self.root, grace=self.grace, ignore_signals=(submitit.JobEnvironment._usr_sig(),))
        record = self._runner.run(spec, pin, stash, experiment_sha, extra=extra)
        return record["status"]

    def checkpoint(self, *args, **kwargs):
        # the same rule as submitit: a signal late in the time limit is the limit, earlier it is a preemption
        walltime = time.time() - self._started
        limit = self.timeout_min * 60
        if walltime >= min(limit * 0.8, limit - 600):
            self._until_the_limit()
        if self._runner is not None:
            self._runner.stop_all("preempted")
        self._mark(status="preempted")
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
            self._mark(status="succeeded" if code == 0 else "failed", exit_code=code,
                       result=read_result(self._spec))
            os._exit(0 if code == 0 else 1)
        self._mark(status="timeout")
        while True:
            time.sleep(60)

    def _mark(self, **fields) -> None:
        if self._run_file is not None and self._run_file.is_file():
            record = read_json(self._run_file)
            record.update(ended_at=now_iso(), duration_s=round(time.time() - self._started, 3), **fields)
            write_json(self._run_file, record)


def _keep_preempted_attempts(run_dir: Path) -> list[str]:
    """A requeued task finds its earlier attempt's run dir: keep it beside, as <run dir>.preempted<k>."""
    if run_dir.exists():
        k = 1
        while run_dir.with_name(f"{run_dir.name}.preempted{k}").exists():
            k += 1
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.preempted{k}"))
    return sorted(p.name for p in run_dir.parent.glob(f"{run_dir.name}.preempted*"))


def submit(sweep, planned, facts) -> list:
    """Submit the jobs as one array; returns submitit's jobs in the order of `planned`."""
    opts: StashSlurmLauncherConf = sweep.options
    executor = submitit.SlurmExecutor(folder=sweep.dir / ".submitit", max_num_timeout=0)
    executor.update_parameters(job_name=f"stash-{sweep.id}", **executor_parameters(opts))
    task = NodeTask(sweep.stash.root, float(sweep.base.stash.grace), opts.timeout_min)
    specs = [spec for spec, _, _ in planned]
    try:
        jobs = executor.map_array(
            task, specs, [facts["pins"][s.tool.name] for s in specs], [facts["stash"]] * len(specs),
            [facts["sha"][s.experiment_file] for s in specs],
        )
    except Exception as err:  # sbatch refused: nothing was submitted
        raise StashError(f"sbatch refused the job array: {str(err).strip().splitlines()[-1]}") from None
    return jobs


def follow(sweep, planned, jobs) -> None:
    """Wait for the array's tasks, keeping sweep.json and the progress display true; Ctrl-C cancels them."""
    from .report import Progress

    progress = Progress(sweep.id, len(planned))
    waiting = {spec.sweep["num"]: (spec, job) for (spec, _, _), job in zip(planned, jobs)}
    restore = raise_on_signals()
    try:
        with progress:
            while waiting:
                states = sacct_states([job.job_id for _, job in waiting.values()]) or {}
                for num, (spec, job) in list(waiting.items()):
                    status = update_job(sweep, num, spec.run_dir, states.get(job.job_id))
                    if status in FINAL:
                        del waiting[num]
                        progress.ended(sweep.jobs[num], sweep.stash.root)
                progress.show(sweep.jobs.values())
                sweep.write()
                if waiting:
                    time.sleep(2)
    except Interrupted as stop:
        console.print(f"\n{stop}: cancelling the array's tasks", highlight=False)
        subprocess.run(["scancel", *sorted({job.job_id.split("_")[0] for job in jobs})], capture_output=True)
        for num, (spec, _) in waiting.items():
            sweep.update(num, status="interrupted")
            run_file = spec.run_dir / RUN_FILE
            if run_file.is_file():
                record = read_json(run_file)
                if record["status"] not in FINAL:
                    record.update(status="interrupted", ended_at=now_iso())
                    write_json(run_file, record)
        sweep.write(force=True)
        raise SystemExit(128 + stop.signum) from None
    finally:
        restore()
        sweep.write(force=True)


def update_job(sweep, num: int, run_dir: Path, slurm_state: str | None) -> str:
    """Bring one job's sweep.json entry (and its run.json, when Slurm ended it) up to date."""
    run_file = run_dir / RUN_FILE
    record = read_json(run_file) if run_file.is_file() else None
    status = merged_status(record, slurm_state)
    fields_ = {"status": status, "slurm_state": slurm_state}
    if record:
        fields_.update(exit_code=record["exit_code"], duration_s=record["duration_s"])
        sweep.results[num] = record.get("result")
        if status in FINAL and record["status"] != status:  # Slurm ended it: the record says so too
            record.update(status=status, slurm_state=slurm_state, ended_at=record["ended_at"] or now_iso())
            write_json(run_file, record)
    sweep.update(num, **fields_)
    return status


def refresh_from_slurm(root: Path, jobs: list[dict]) -> tuple[list[dict], str | None]:
    """Each job's status from its run.json and Slurm; a note when Slurm's records cannot be had."""
    states = sacct_states([j.get("slurm_job_id") for j in jobs])
    missing = states is None or any(j.get("slurm_job_id") not in states for j in jobs)
    note = "Slurm has no record of some jobs: their status is what run.json says." if missing else None
    refreshed = []
    for job in jobs:
        run_file = root / job["run_dir"] / RUN_FILE
        record = read_json(run_file) if run_file.is_file() else None
        slurm_state = (states or {}).get(job.get("slurm_job_id") or "")
        refreshed.append({**job, "status": merged_status(record, slurm_state), "slurm_state": slurm_state})
    return refreshed, note


def follow_hint(sweep) -> None:
    rel = os.path.relpath(sweep.dir, sweep.stash.root)
    ids = sorted({j["slurm_job_id"].split("_")[0] for j in sweep.jobs.values() if j.get("slurm_job_id")})
    console.print(
        f"Submitted {len(sweep.jobs)} jobs as Slurm array {', '.join(ids)}. Follow it with:\n"
        f"  experimentstash status {rel}\n  squeue -j {','.join(ids)}",
        highlight=False,
    )


class SlurmSweep(LocalSweep):
    backend = "slurm"

    def parse_options(self, options: dict) -> StashSlurmLauncherConf:
        given = {override_key(w)[len("hydra.launcher."):] for w in current.argv
                 if override_key(w).startswith("hydra.launcher.")}
        return slurm_options(options, self.stash.slurm, given)

    def preflight(self) -> None:
        check_reachable()

    def run(self, planned, facts) -> None:
        try:
            jobs = submit(self, planned, facts)
        except StashError:
            if all(job["status"] == "pending" and not job.get("slurm_job_id") for job in self.jobs.values()):
                shutil.rmtree(self.dir, ignore_errors=True)  # nothing of this sweep was submitted: leave nothing
            raise
        for (spec, _, _), job in zip(planned, jobs):
            self.update(spec.sweep["num"], slurm_job_id=job.job_id)
        self.write(force=True)
        if self.options.wait:
            follow(self, planned, jobs)
        else:
            follow_hint(self)

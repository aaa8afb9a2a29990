"""The Slurm backend (`hydra/launcher=stash_slurm`): the jobs of a launch as Slurm job arrays, through submitit.

As few arrays as the cluster allows: one, unless the launch has more jobs than its MaxArraySize (read from
`scontrol show config`). Each task runs its job exactly as locally (Runner: the pinned tool as a subprocess,
run.json and logs in its run dir on the shared filesystem). The submitting process follows every array with
one sacct call per poll (squeue when the cluster keeps no accounting), backing off from 1 s to 30 s while
nothing changes, and keeps sweep.json true. Every array of a sweep has the job name `stash-<sweep id>`.
"""

import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from functools import lru_cache

from .. import Interrupted, StashError
from ..environ import environ
from ..records import RunRecord, Status, now_iso, read_run_if_any
from .base import FINISHER, Backend, Job, Launch, Sweep
from .options import SlurmOptions

# Slurm's final states that say more than the job's own record: Slurm ended it
SLURM_VERDICT = {
    "TIMEOUT": "timeout", "DEADLINE": "timeout", "CANCELLED": "cancelled", "PREEMPTED": "preempted",
    "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
}
SLURM_ACTIVE = {"PENDING": "pending", "REQUEUED": "pending", "CONFIGURING": "pending", "RUNNING": "running",
                "COMPLETING": "running", "SUSPENDED": "running"}
# what sacct is asked: each task's state, and what it used (the task's line and its steps' lines)
SACCT_FIELDS = "JobID,State,TotalCPU,ReqMem,AllocCPUS,Timelimit,Elapsed,MaxRSS,TRESUsageInMax"
GONE = "GONE"  # not in squeue (which forgets ended jobs): the task ended, its run.json tells how
POLL_FIRST, POLL_MAX = 1.0, 30.0
WRITE_EVERY = 1.0  # seconds between two progress lines while the arrays are submitted
CANCEL_WAIT = 60.0  # seconds to wait for cancelled tasks to end (Slurm's KillWait: 30 s by default)


def executor_parameters(opts: SlurmOptions) -> dict:
    """Our option names -> submitit's SlurmExecutor parameters."""
    params = {
        "partition": opts.partition, "time": opts.timeout_min, "cpus_per_task": opts.cpus_per_task,
        "gpus_per_node": opts.gpus_per_node, "account": opts.account, "qos": opts.qos,
        "constraint": opts.constraint, "exclude": opts.exclude,
        "additional_parameters": dict(opts.additional_parameters or {}), "setup": list(opts.setup or []),
        "signal_delay_s": opts.signal_delay_s, "array_parallelism": opts.array_parallelism,
        # whole MiB: sbatch refuses a fraction (mem_gb=2 arrives as 2.0)
        "mem": f"{math.ceil(opts.mem_gb * 1024)}M" if opts.mem_gb is not None else None,
        **rank_parameters(opts),
    }
    return {k: v for k, v in params.items() if v is not None}


def throttle(opts: SlurmOptions, previous: str | None) -> dict:
    """max_running=K without a process that stays alive: each array runs at most K tasks at once (%K), and starts
    only once the launch's previous array has ended (afterany), so that no two arrays run at once."""
    params = {"array_parallelism": min(opts.array_parallelism, opts.max_running)}
    if previous is not None:
        params["dependency"] = f"afterany:{previous}"
    return params


def rank_parameters(opts: SlurmOptions) -> dict:
    """A job of several ranks is one allocation whose one batch process (not one per task, as submitit does by
    default) starts the ranks itself with srun (slurm_task.py); the signal before the time limit goes to that
    process (B:), which ends the ranks and requeues the job when it is a preemption."""
    gpus = {"gpus_per_task": opts.gpus_per_task} if opts.gpus_per_task else {}
    if opts.nodes == 1 and opts.tasks_per_node == 1:
        return gpus
    from submitit.slurm.slurm import SlurmJobEnvironment

    return {"nodes": opts.nodes, "ntasks_per_node": opts.tasks_per_node, "use_srun": False, **gpus,
            "additional_parameters": {"signal": f"B:{SlurmJobEnvironment.USR_SIG}@{opts.signal_delay_s}",
                                      **dict(opts.additional_parameters or {})}}


def batch_python(opts: SlurmOptions) -> str | None:
    """A job of several ranks: its batch script execs python, which so is the process the signal before the time
    limit reaches (B:); None: submitit's own command."""
    return None if opts.nodes == 1 and opts.tasks_per_node == 1 else f"exec {shlex.quote(sys.executable)}"


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


def check_options(opts: SlurmOptions) -> None:
    """`sbatch --test-only` with the launch's options: a partition, account, qos or limit that the cluster refuses
    stops the sweep before anything is written or submitted."""
    from submitit.slurm.slurm import _make_sbatch_string  # the very script submitit submits, with `true` to run

    script = _make_sbatch_string(command="true", folder=os.devnull, job_name="stash-check",
                                 **executor_parameters(opts))
    try:
        out = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise StashError(f"Slurm does not answer (`sbatch --test-only`: {err}). Nothing was submitted.") from None
    if out.returncode != 0:
        said = out.stderr.strip().splitlines()
        raise StashError(f"Slurm refuses these hydra.launcher options (`sbatch --test-only`: "
                         f"{said[-1] if said else 'exit code ' + str(out.returncode)}). Nothing was submitted.")


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


def task_states(ids: list[str], name: str, used: dict | None = None) -> dict[str, str | None] | None:
    """Slurm's state of each of these tasks (`<array id>_<task>`, or the job id of a one-job launch) in one call:
    sacct (None for a task it has no record of yet), or squeue when sacct cannot answer (a cluster without
    accounting), where a task it no longer lists (jobs named `name`) has ended: GONE. None when neither answers.
    Given `used`, the same sacct call fills it with what each task that ended used (run.json's resources.slurm)."""
    ids = [i for i in ids if i]
    arrays = sorted({_array_of(i) for i in ids if _array_of(i).isdigit()}, key=int)
    if not arrays:
        return None
    rows = _ask(["sacct", "-n", "-P", "-o", SACCT_FIELDS, "-j", ",".join(arrays)])
    if rows is not None:
        known, figures = accounting(rows)
        if used is not None:
            used.update({i: figures[i] for i in ids if i in figures})
        return states_of(ids, known)
    rows = _ask(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", f"--name={name}"])
    if rows is None:
        return None
    known = {one: _state(state) for job_id, state, *_ in (r + [""] for r in rows) for one in _array_tasks(job_id)}
    return {i: known.get(i, GONE) for i in ids}


def states_of(ids: list[str], known: dict[str, str]) -> dict[str, str | None]:
    """Each task's state from sacct's (accounting()); None for a task it has no line of yet. An array cancelled
    before any task started is one line under the array's id; any other line under that id is one task whose index
    the accounting does not know yet (it lags under load), which says nothing of the array's other tasks."""
    return {i: known.get(i, "CANCELLED" if known.get(_array_of(i)) == "CANCELLED" else None) for i in ids}


def _ask(command: list[str]) -> list[list[str]] | None:
    """The lines of sacct or squeue, split at `|`; None when the command cannot answer."""
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [[part.strip() for part in line.split("|")] for line in out.stdout.splitlines() if line.strip()]


def _state(word: str) -> str:
    return word.split()[0] if word else "UNKNOWN"  # "CANCELLED by 1000" -> CANCELLED


def accounting(rows: list[list[str]]) -> tuple[dict[str, str], dict[str, dict]]:
    """sacct's lines (SACCT_FIELDS) as each task's state and, for each task that ended, its figures: from the
    task's line (its CPU time, requests, limit and time taken), and from its steps' lines (`<task>.batch`,
    `<task>.0`, ...: the largest memory of one step)."""
    states, figures = {}, {}
    for job_id, state, total_cpu, req_mem, cpus, limit, elapsed, max_rss, tres, *_ in (r + [""] * 9 for r in rows):
        task, dot, _ = job_id.partition(".")
        if not dot:
            for one in _array_tasks(task):
                states[one] = _state(state)
            figures[task] = {"total_cpu_s": _seconds(total_cpu), "req_mem_bytes": _request(req_mem, cpus),
                             "alloc_cpus": int(cpus) if cpus.isdigit() else None, "timelimit_s": _seconds(limit),
                             "elapsed_s": _seconds(elapsed)}
        elif task in figures:
            found = figures[task]
            for key, value in (("max_rss_bytes", _bytes(max_rss)), ("max_gpu_memory_bytes", _gpu_memory(tres))):
                if value is not None:
                    found[key] = max(found.get(key) or 0, value)
    return states, {task: {k: v for k, v in found.items() if v is not None} for task, found in figures.items()
                    if task in states and states[task] not in SLURM_ACTIVE}


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def _bytes(text: str) -> int | None:
    """sacct's memory (117436K, 1.50G, 0) in bytes; None for nothing or what is not one."""
    number = text.rstrip("KMGTP")
    try:
        value = float(number)
    except ValueError:
        return None
    return int(value * _UNITS[text[len(number):][:1]]) if value >= 0 and math.isfinite(value) else None


def _request(text: str, cpus: str) -> int | None:
    """ReqMem in bytes for the whole task: older Slurm says per CPU (`c`) or per node (`n`; a task has one)."""
    per_cpu = text.endswith("c")
    value = _bytes(text.rstrip("cn"))
    if value is not None and per_cpu:
        return value * int(cpus) if cpus.isdigit() else None
    return value


def _gpu_memory(tres: str) -> int | None:
    """The GPU memory in TRESUsageInMax (`gres/gpumem=...`, where the cluster tracks it)."""
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpumem":
            return _bytes(value)
    return None


def _seconds(text: str) -> float | None:
    """Slurm's time ([D-][HH:]MM:SS[.mmm]) in seconds; None for UNLIMITED, Partition_Limit or nothing."""
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    try:
        if not 2 <= len(parts) <= 3:
            return None
        seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(parts))) + int(days or 0) * 86400
    except ValueError:
        return None
    return round(seconds, 3) if seconds >= 0 and math.isfinite(seconds) else None


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


def merged_status(status: str | None, slurm_state: str | None) -> str:
    """One status from what the job's records say and what Slurm says (a requeued task is still going)."""
    if status == "interrupted" and slurm_state == "CANCELLED":
        return status  # the launcher's Ctrl-C cancelled it
    if slurm_state in SLURM_VERDICT:
        return SLURM_VERDICT[slurm_state]
    if slurm_state in SLURM_ACTIVE:
        return SLURM_ACTIVE[slurm_state]
    if status in ("pending", "running", "lost", None):
        if slurm_state in ("COMPLETED", "FAILED", GONE):
            return "failed"  # ended without a final record of its own
        return status or "pending"
    return status


def _array_of(job_id: str | None) -> str:
    return (job_id or "").split("_")[0]


class SlurmBackend(Backend):
    Options = SlurmOptions
    follows_needs = True  # Slurm's dependencies: aftercorr task by task, afterok on every job a gather needs
    ranks = True

    def __init__(self, options: SlurmOptions):
        super().__init__(options)
        self.launched: list = []  # (job number, its task id) of the last run(): what follow_hint speaks of
        self.arrays: list[str] = []  # the arrays that run() submitted (sweep.json keeps those of every launch)

    @property
    def waits(self) -> bool:
        return self.options.wait

    @staticmethod
    def validate(opts: SlurmOptions) -> None:
        if opts.timeout_min <= 0:
            raise StashError(f"hydra.launcher.timeout_min={opts.timeout_min}: give a positive number of minutes.")
        if opts.signal_delay_s >= opts.timeout_min * 60:
            raise StashError(
                f"hydra.launcher.signal_delay_s={opts.signal_delay_s} is not shorter than timeout_min="
                f"{opts.timeout_min} minutes: the job would be signalled at once. Lower signal_delay_s."
            )
        if opts.array_parallelism < 1:
            raise StashError(f"hydra.launcher.array_parallelism={opts.array_parallelism}: give at least 1.")
        if opts.max_running is not None and opts.max_running < 1:
            raise StashError(f"hydra.launcher.max_running={opts.max_running}: give at least 1 (or null: no limit).")
        for name in ("nodes", "tasks_per_node", "gpus_per_task"):
            value = getattr(opts, name)
            if value is not None and value < 1:
                raise StashError(f"hydra.launcher.{name}={value}: give at least 1.")

    def job_fields(self) -> dict:
        return {"slurm_job_id": None, "slurm_state": None}

    def preflight(self) -> None:
        check_reachable()
        check_options(self.options)

    # --- submitting -----------------------------------------------------------------------------------------
    def run(self, launch: Launch) -> None:
        submitted: list = []  # (job, its Slurm task id), in the order of launch.jobs
        self.launched, self.arrays = submitted, []
        try:
            self.submit(launch, submitted)
            if self.options.wait:
                self.follow(launch, submitted)
            elif self.arrays:
                submit_finisher(launch, self.options, self.arrays)
        except Interrupted as stop:
            self.interrupt(launch, stop)
            raise

    def submit(self, launch: Launch, submitted: list) -> None:
        """Submit the jobs as arrays of at most MaxArraySize tasks; each array and task id goes to sweep.json."""
        import submitit

        from .slurm_task import NodeTask

        executor = submitit.SlurmExecutor(folder=launch.sweep_dir / ".submitit", max_num_timeout=0,
                                          python=batch_python(self.options))
        params = executor_parameters(self.options)
        executor.update_parameters(job_name=job_name(launch), **params)
        inside = {job.num for job in launch.jobs}
        follows = any(set(job.needs) & inside for job in launch.jobs)
        # a task whose job did not succeed fails on Slurm too, so that what needs it never starts
        task = NodeTask(launch.stash_root, self.options.timeout_min, strict=follows, nodes=self.options.nodes,
                        tasks_per_node=self.options.tasks_per_node)
        arrays = launch.state.setdefault("arrays", [])
        groups = stage_groups(launch.jobs) if follows else [launch.jobs]
        parts = [part for group in groups for part in chunks(group, max_array_size())]
        index = {job.num: i for group in groups for i, job in enumerate(group)}  # each job's place in its group
        submitted_as: dict[int, tuple[str, str]] = {}  # job number -> (its task id, its array)
        written = time.monotonic()
        for k, part in enumerate(parts):
            extra = dependency(part, inside, index, submitted_as) if follows else {}
            if self.options.max_running is not None:
                limit = throttle(self.options, self.arrays[-1] if self.arrays else None)
                executor.update_parameters(array_parallelism=limit["array_parallelism"])
                if "dependency" in limit:  # both must hold: sbatch reads a comma as "and"
                    extra["dependency"] = ",".join(filter(None, [limit["dependency"], extra.get("dependency")]))
            if extra or follows:
                executor.update_parameters(additional_parameters={**params.get("additional_parameters", {}), **extra})
            try:
                tasks = executor.map_array(task, part)
            except Interrupted:
                raise
            except Exception as err:  # sbatch refused
                self._refused(launch, submitted, err, f"array {k + 1} of {len(parts)}")
            arrays.append(_array_of(tasks[0].job_id))
            self.arrays.append(arrays[-1])
            for job, submitted_task in zip(part, tasks):
                launch.update(job.num, slurm_job_id=submitted_task.job_id)
                submitted.append((job, submitted_task.job_id))
                submitted_as[job.num] = (submitted_task.job_id, arrays[-1])
            if time.monotonic() - written >= WRITE_EVERY:  # the progress line, not after each of thousands of arrays
                launch.tick()
                written = time.monotonic()

    def _refused(self, launch: Launch, submitted: list, err: Exception, which: str) -> None:
        """sbatch refused an array (its options passed `sbatch --test-only`): the launch is all or nothing."""
        said = str(err).strip().splitlines()
        before = "Nothing was submitted"
        if submitted:
            failed = cancel(job_name(launch))
            before = f"The {len(submitted)} jobs submitted before it were " + (
                f"NOT cancelled ({failed})" if failed else "cancelled")
        for job in launch.jobs:
            launch.cancelled(job.num)
        raise StashError(
            f"sbatch refused {which} ({said[-1] if said else err}). {before}; the launch's jobs are recorded "
            f"`cancelled`: `experimentstash rerun {os.path.relpath(launch.sweep_dir, launch.stash_root)}` submits "
            "them again."
        )

    # --- following ------------------------------------------------------------------------------------------
    def follow(self, launch: Launch, submitted: list) -> None:
        """Wait for the tasks, keeping sweep.json true: one sacct call per poll, the pause between two polls
        growing by a fifth, from 1 s up to 30 s, while nothing changes."""
        waiting = {job.num: (job, task_id) for job, task_id in submitted}
        name = job_name(launch)
        pause, last = POLL_FIRST, None
        while waiting:
            used: dict = {}
            states = task_states([task_id for _, task_id in waiting.values()], name, used) or {}
            for num, (job, task_id) in list(waiting.items()):
                if self.update_job(launch, job, states.get(task_id), used=used.get(task_id)).final:
                    del waiting[num]
            launch.tick()
            pause = POLL_FIRST if states != last else min(pause * 1.2, POLL_MAX)
            last = states
            deadline = time.monotonic() + pause
            while waiting and time.monotonic() < deadline:
                time.sleep(0.2)
                launch.tick()

    def interrupt(self, launch: Launch, stop: Interrupted) -> None:
        """Ctrl-C: cancel every array of the sweep and wait for its tasks to end; every job that had started and
        not ended before is recorded `interrupted` (sweep.json and its run.json), one that never started
        `cancelled`."""
        from ..output import console

        stopped_at = now_iso()
        name = job_name(launch)
        console.print(f"\n{stop}: cancelling the sweep's Slurm tasks", highlight=False)
        failed = cancel(name)
        if failed:
            console.print(f"scancel failed ({failed}): tasks may still run, see `squeue --name={name}`.",
                          highlight=False)
        else:
            wait_until_ended(name)
        for job in launch.jobs:
            if launch.entries[job.num].status.final:
                continue
            record = read_run_if_any(job.run_dir)
            if record is None:
                launch.cancelled(job.num)
            elif record.status.final and record.ended_at and record.ended_at < stopped_at:
                self.update_job(launch, job, None, record)  # it ended on its own before
            else:
                launch.ended(job.num, record, Status.INTERRUPTED)

    def update_job(self, launch: Launch, job: Job, slurm_state: str | None, record: RunRecord | None = None,
                   used: dict | None = None) -> Status:
        """Bring one job up to date from its run.json and Slurm's word (with `used`: what it used, sacct's figures
        for run.json's resources.slurm); its status."""
        if record is None and slurm_state not in ("PENDING", "REQUEUED", None):
            record = read_run_if_any(job.run_dir)
        status = Status(merged_status(record.status.value if record else None, slurm_state))
        if status == Status.CANCELLED and record is None and job.needs and not launch.stopping:
            launch.ended(job.num, None, status, slurm_state=slurm_state, reason="upstream failed")
        elif status.final:
            launch.ended(job.num, record, status, slurm_state=slurm_state, used=used)
        else:
            launch.update(job.num, status=status, slurm_state=slurm_state)
        return status

    # --- later: `status`, `rerun`, wait=false -----------------------------------------------------------------
    def refresh(self, sweep: Sweep, statuses: dict[int, Status]) -> tuple[dict, str | None]:
        """Slurm's word on every submitted job (`status`, `rerun`), merged with what its record says (`statuses`),
        and a note when Slurm's records cannot be had."""
        submitted = {num: entry.extra.get("slurm_job_id") for num, entry in sweep.entries.items()
                     if isinstance(entry.extra.get("slurm_job_id"), str)}
        used: dict = {}
        states = task_states(list(submitted.values()), job_name(sweep), used) or {}
        verdicts = {}
        for num, task_id in submitted.items():
            own = statuses.get(num, sweep.entries[num].status)
            verdicts[num] = (Status(merged_status(own.value, states.get(task_id))),
                             {"slurm_state": states.get(task_id), "used": used.get(task_id)})
        notes = [finisher_note(sweep)]
        if any(states.get(i) is None for i in submitted.values()):
            notes.insert(0, "Slurm has no record of some jobs: their status is what run.json says.")
        return verdicts, "\n".join(note for note in notes if note) or None

    def before_rerun(self, sweep: Sweep, nums: list[int]) -> None:
        """Never two attempts of one job at once: no rerun while Slurm still has a task of the sweep (squeue, which
        knows a task as soon as it is submitted; sacct may not yet)."""
        left = queued(job_name(sweep))
        if left and all(line.split()[-1] == "COMPLETING" for line in left):  # ending: Slurm cleans up after them
            wait_until_ended(job_name(sweep))
            left = queued(job_name(sweep))
        if left is None:
            raise StashError("Slurm does not say (squeue) whether tasks of this sweep are still queued or running: "
                             "rerun when it answers, so that no job runs twice at once.")
        final = finisher_id(sweep)
        tasks = [line for line in left if line.split()[0] != final]
        if tasks:
            raise StashError(
                f"{len(tasks)} task(s) of this sweep are still pending or running on Slurm ({', '.join(tasks[:3])}"
                f"{', ...' if len(tasks) > 3 else ''}). Wait for them (`experimentstash status "
                f"{os.path.relpath(sweep.sweep_dir, sweep.stash_root)}`) or cancel them (`scancel --name="
                f"{job_name(sweep)}`), then rerun."
            )
        if len(tasks) < len(left):  # only the earlier launch's final job is left: the rerun ends the sweep instead
            subprocess.run(["scancel", final], capture_output=True, timeout=60)
            sweep.state.pop(FINISHER, None)

    def follow_hint(self, sweep: Sweep) -> str | None:
        pending = [job for job, _ in self.launched if sweep.entries[job.num].status == Status.PENDING]
        if not pending:  # interrupted while submitting: nothing to follow, the table says it
            return None
        ids = self.arrays
        shown = ", ".join(ids) if len(ids) <= 4 else f"{ids[0]}, {ids[1]}, ..., {ids[-1]}"
        kind = f"array {shown}" if len(ids) == 1 else f"{len(ids)} arrays ({shown})"
        jobs = "1 job" if len(pending) == 1 else f"{len(pending)} jobs"
        final = finisher_id(sweep)
        then = (f"\nWhen they end, the final Slurm job {final} brings the records in line, ends the tracker runs and "
                "sends the notification.") if final else ""
        return (f"Submitted {jobs} as Slurm {kind}. Follow them with:\n"
                f"  experimentstash status {os.path.relpath(sweep.sweep_dir, sweep.stash_root)}\n"
                f"  squeue --name={job_name(sweep)}{then}")


FINISHER_MINUTES = 10  # the time limit of a sweep's final job: it reads records, asks sacct once and sends a message


def submit_finisher(launch: Launch, opts: SlurmOptions, arrays: list[str]) -> None:
    """wait=false: one small final job that runs when every array of the launch has ended, whatever their end
    (afterany), and does what a waiting launcher does at its end (launch.finisher()); its id goes to sweep.json.
    Its environment (a notification URL may be a secret) reaches it through sbatch, never through a file."""
    import submitit

    from ..output import warn

    work = launch.finisher()
    if work is None:
        return
    call, env = work
    executor = submitit.SlurmExecutor(folder=launch.sweep_dir / ".submitit", max_num_timeout=0)
    given = {"partition": opts.partition, "account": opts.account, "qos": opts.qos, "setup": list(opts.setup or [])}
    executor.update_parameters(job_name=job_name(launch), time=FINISHER_MINUTES, cpus_per_task=1,
                               additional_parameters={"dependency": "afterany:" + ":".join(arrays)},
                               **{k: v for k, v in given.items() if v})
    try:
        with environ(env):  # sbatch hands this process's environment to the job
            job = executor.submit(call)
    except Interrupted:
        raise
    except Exception as err:  # sbatch refused: the jobs run all the same
        said = str(err).strip().splitlines()
        warn(f"the sweep's final job was not submitted ({said[-1] if said else err}): `experimentstash status "
             f"{os.path.relpath(launch.sweep_dir, launch.stash_root)}` brings its records in line once it ends.")
        return
    launch.state[FINISHER] = {"job_id": job.job_id}


def finisher_id(sweep: Sweep) -> str | None:
    """The Slurm job id of the sweep's final job (wait=false), as sweep.json has it."""
    done = sweep.state.get(FINISHER)
    job_id = done.get("job_id") if isinstance(done, dict) else None
    return job_id if isinstance(job_id, str) else None


def finisher_note(sweep: Sweep) -> str | None:
    """For `status`: whether the sweep's final job ran, from what it wrote to sweep.json, else from Slurm."""
    job_id = finisher_id(sweep)
    if job_id is None:
        return None
    done = sweep.state[FINISHER]
    if isinstance(done.get("ended_at"), str):
        return (f"The sweep's final Slurm job {job_id} ran at {done['ended_at']}: the records were brought in line, "
                f"notification: {done.get('notified')}.")
    state = (task_states([job_id], job_name(sweep)) or {}).get(job_id)
    if state in SLURM_ACTIVE or state is None:
        return (f"The sweep's final Slurm job {job_id} waits for the sweep's jobs to end "
                f"(Slurm: {state or 'no record yet'}).")
    return (f"The sweep's final Slurm job {job_id} did not finish the sweep (Slurm: {state}): this `status` brought "
            "the records in line.")


def stage_groups(jobs: list[Job]) -> list[list[Job]]:
    """The jobs of a launch by pipeline stage (a job that is no stage: a group of its own kind), in order: each
    group is submitted as arrays after the groups it needs."""
    groups: dict = {}
    for job in jobs:
        stage = getattr(job.spec, "stage", None) or {}
        groups.setdefault((stage.get("pipeline"), stage.get("stage")), []).append(job)
    return list(groups.values())


def dependency(part: list[Job], inside: set[int], index: dict[int, int],
               submitted_as: dict[int, tuple[str, str]]) -> dict:
    """sbatch's dependency of one array of a stage. Task by task (aftercorr) when each job needs the job at its own
    place of one upstream array (a chain's stage after the one before); else afterok on what the array's jobs need:
    a whole array by its id, else its tasks (a gather stage, a rerun's stages). A dependency that can never be met
    cancels the task."""
    needs = [[n for n in job.needs if n in inside] for job in part]
    if not any(needs):
        return {}
    upstream = {submitted_as[n[0]][1] for n in needs if len(n) == 1}
    if len(upstream) == 1 and all(len(n) == 1 and index[n[0]] == index[job.num] for job, n in zip(part, needs)):
        return {"dependency": f"aftercorr:{upstream.pop()}", "kill_on_invalid_dep": "yes"}
    needed = {n for ns in needs for n in ns}
    by_array: dict[str, list[int]] = {}
    for num, (_, array) in submitted_as.items():
        by_array.setdefault(array, []).append(num)
    whole = [array for array, nums in by_array.items() if set(nums) <= needed]
    tasks = sorted(submitted_as[n][0] for n in needed if submitted_as[n][1] not in whole)
    return {"dependency": "afterok:" + ":".join([*whole, *tasks]), "kill_on_invalid_dep": "yes"}


def job_name(sweep: Sweep) -> str:
    """The Slurm job name of every array of a sweep."""
    return f"stash-{sweep.sweep_id}"


def cancel(name: str) -> str | None:
    """scancel every task of the jobs with this name (one sweep's arrays) of this user; what went wrong, if anything."""
    try:
        out = subprocess.run(["scancel", f"--name={name}", f"--user={os.getuid()}"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    said = (out.stdout + out.stderr).strip().splitlines()
    return (said[-1] if said else f"exit code {out.returncode}") if out.returncode != 0 else None


def queued(name: str) -> list[str] | None:
    """`<task id> <state>` of every task of the jobs with this name (one sweep's arrays) that Slurm has not
    finished with; None when squeue cannot answer."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", f"--name={name}", "-o", "%i %T"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines() if out.returncode == 0 else None


def wait_until_ended(name: str, limit: float = CANCEL_WAIT) -> None:
    """Until Slurm has finished with every task of the jobs with this name (their processes are gone), at most
    `limit` seconds."""
    deadline = time.monotonic() + limit
    while queued(name) and time.monotonic() < deadline:
        time.sleep(0.5)

"""The sweep core: plan every job, inspect pins once per tool, keep sweep.json true, rerun, results for Hydra.

Where the jobs run is a backend's business (experimentstash/backends/): the core hands it the planned jobs and
hears back through job_started() / job_ended() / update(). The core names no backend.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from . import StashError, backends
from .execute import Interrupted, raise_on_signals
from .invocation import console, current
from .fingerprint import configs_digest, of_job, succeeded_runs
from .job import JobSpec, base_config, plan_job, reuses, split_job
from .pins import NO_GIT_WARNING, CheckoutWatch, StashState, ToolPin, apply_policy, inspect
from .procs import owner_alive, run_processes, terminate
from .records import (SWEEP_FILE, Reserve, RunRecord, Status, SweepRecord, encode_sweep, is_disk_full,
                      inside, job_dir_name, job_run_dir, now_iso, read_run_if_any, write_json, write_text)
from .registry import Stash
from .summary import Progress, print_summary


@dataclass
class Planned:
    spec: JobSpec
    options: dict  # this job's stash.* options
    words: list[str]  # its whole override list: what `rerun` replays

    @property
    def num(self) -> int:
        return self.spec.sweep["num"]


@dataclass
class Facts:
    """Looked up once per sweep: the stash's state, each tool's pin, each experiment file's sha256."""

    stash: StashState
    pins: dict[str, ToolPin]
    sha: dict[Path, str] = field(default_factory=dict)
    watches: dict[str, CheckoutWatch] = field(default_factory=dict)  # files the runs write into each checkout


class Sweep:
    """One sweep dir with its sweep.json; launch() may be called more than once (optimizing sweepers)."""

    def __init__(self, stash: Stash, sweep_dir: Path, backend: str, options, given: list[str],
                 command_line: list[str], base, record: SweepRecord | None = None):
        self.stash = stash
        self.dir = sweep_dir
        self.base = base
        self.backend_name = backend
        self.backend = backends.backend_class(backend)(options, stash)
        self.record = record or SweepRecord(
            id=sweep_dir.name, created_at=now_iso(), backend=backend, command_line=list(command_line),
            launcher=backends.options_dict(options), given=sorted(given), jobs=[])
        self.id = self.record.id
        self.jobs: dict[int, dict] = {job["num"]: job for job in self.record.jobs}
        self.results: dict[int, object] = {}  # parsed result file of each job that ran
        self.records: dict[int, RunRecord] = {}  # each job's run.json, as refresh() last read it
        self._lines: dict[int, str] = {}  # each job's entry encoded as one JSON line, until it changes
        self._lock = threading.Lock()
        self._dirty = False
        self._reserve: Reserve | None = None
        self.progress: Progress | None = None
        self.tracking = None  # trackers.Tracking, when a job reports to W&B or MLflow

    @property
    def options(self):
        return self.backend.options

    # --- planning -------------------------------------------------------------------------------------------
    def plan(self, numbered) -> list[Planned]:
        """Plan every (job number, override list) before anything starts; the first bad job stops them all."""
        planned, prepared = [], {}
        for num, words in numbered:
            try:
                tool, experiment, options, tool_words = split_job(words, self.base)
                run_dir = self.dir / job_dir_name(num, str(tool), str(experiment))
                timeout = options["timeout"] if options["timeout"] is not None else self.backend.job_timeout()
                spec = plan_job(self.stash, tool, experiment, tool_words, run_dir, f"{self.id}_{num}",
                                timeout=timeout, sweep={"id": self.id, "num": num}, prepared=prepared,
                                tracker=options["tracker"])
            except StashError as err:
                raise StashError(f"Job {num} ({' '.join(words)}): {err} Nothing was started.") from None
            planned.append(Planned(spec, options, list(words)))
        return planned

    def inspect(self, planned: list[Planned]) -> Facts:
        """Pins once per tool per sweep; the pin policy may refuse the whole sweep before anything starts."""
        tools = list({p.spec.tool.name: p.spec.tool for p in planned}.values())
        state, pins = inspect(self.stash.root, tools)
        if state.commit is None and state.dirty is None:
            console.print(f"[yellow]warning:[/] {NO_GIT_WARNING.format(root=self.stash.root)}", markup=True)
        warn = lambda text: console.print(f"[yellow]warning:[/] {escape(text)}", markup=True, highlight=False)
        facts = Facts(state, pins, watches={t.name: CheckoutWatch(self.stash.root, t, pins[t.name], warn) for t in tools})
        warned = set()
        configs = {t.name: configs_digest(self.stash.root, t.name, state) for t in tools}
        for p in planned:
            name = p.spec.tool.name
            warning = apply_policy(p.spec.tool, pins[name], p.options["pin"])  # per job: its policy
            if warning and name not in warned:
                warned.add(name)
                console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
            if p.spec.experiment_file not in facts.sha:
                facts.sha[p.spec.experiment_file] = _sha256(p.spec.experiment_file)
            p.spec = replace(p.spec, fingerprint=of_job(p.spec, pins[name], state, configs[name]))
        return facts

    def reusable(self, planned: list[Planned]) -> dict[int, object]:
        """Job number -> the earlier run it reuses: one that succeeded with the same fingerprint (stash.reuse)."""
        wanted = [p for p in planned if reuses(p.spec, p.options)]
        if not wanted:
            return {}
        earlier = succeeded_runs(self.stash.root)
        return {p.num: earlier[p.spec.fingerprint.digest] for p in wanted if p.spec.fingerprint.digest in earlier}

    # --- sweep.json -----------------------------------------------------------------------------------------
    def _entry(self, p: Planned) -> dict:
        return {
            "num": p.num, "tool": p.spec.tool.name, "experiment": p.spec.experiment,
            "overrides": list(p.spec.overrides), "run_dir": os.path.relpath(p.spec.run_dir, self.stash.root),
            "status": Status.PENDING.value, "exit_code": None, "duration_s": None,
            "launch_overrides": list(p.words), **self.backend.job_fields(),
        }

    def update(self, num: int, **fields) -> None:
        with self._lock:
            was = self.jobs[num].get("status")
            self.jobs[num].update({k: (v.value if isinstance(v, Status) else v) for k, v in fields.items()})
            self._lines.pop(num, None)
            self._dirty = True
            now = self.jobs[num].get("status")
        if self.tracking and now != was and Status(now).final:  # however it ended: its tracker run ends too
            self.tracking.ended(num, Status(now), self.results.get(num))

    def job_started(self, num: int) -> None:
        self.update(num, status=Status.RUNNING)

    def job_ended(self, num: int, record: RunRecord) -> None:
        self.results[num] = record.result
        self.update(num, status=record.status, exit_code=record.exit_code, duration_s=record.duration_s)
        if self.progress:
            self.progress.ended(self.jobs[num], self.stash.root)

    def write(self, force: bool = False) -> None:
        """sweep.json with one line per job; only the jobs that changed are encoded again, and the lock is
        held for that alone, so job threads never wait for the file (a sweep may have thousands of jobs).
        A full disk leaves the last good sweep.json and tries again next time; the last write has the reserve."""
        with self._lock:
            if not (self._dirty or force):
                return
            self._dirty = False
            for num, job in self.jobs.items():
                if num not in self._lines:
                    self._lines[num] = json.dumps(job)
            lines = [self._lines[num] for num in sorted(self.jobs)]
        self.record.jobs = [self.jobs[n] for n in sorted(self.jobs)]
        try:
            write_text(self.dir / SWEEP_FILE, encode_sweep(self.record.head(), lines))
        except OSError as err:
            if not is_disk_full(err):
                raise
            self._dirty = True

    def tick(self) -> None:
        """Called by a backend while it waits: the progress line and sweep.json kept true."""
        if self.progress:
            self.progress.show(self.jobs.values())
        self.write()

    # --- running --------------------------------------------------------------------------------------------
    def launch(self, numbered, keep_attempts: bool = False, table: bool = True) -> list[Planned]:
        """Plan, inspect, claim the sweep dir and run the jobs with the backend; then the table and the counts
        (one line instead of the table when an optimizing sweeper launches batch after batch)."""
        planned = self.plan(numbered)
        facts = self.inspect(planned)
        reused = self.reusable(planned)
        to_run = [p for p in planned if p.num not in reused]
        if to_run:
            self.backend.preflight()
        self._track(to_run, facts)
        if keep_attempts:
            _keep_earlier_attempts(to_run)
        try:
            self._claim(len(planned))
        except StashError:
            if self.tracking:
                self.tracking.discard()
            raise
        for p in planned:
            self.jobs[p.num] = self._entry(p)
            self._lines.pop(p.num, None)
            if p.num in reused:
                earlier = reused[p.num]
                self.jobs[p.num].update(status=Status.REUSED.value, exit_code=earlier.record.exit_code,
                                        reused_from=os.path.relpath(earlier.folder, self.stash.root))
                self.results[p.num] = earlier.record.result
        if reused:
            console.print(f"{len(reused)} of {len(planned)} jobs reuse earlier runs with the same fingerprint "
                          "(stash.reuse).", highlight=False)
        self.write(force=True)
        signum = None
        submitted_only = False
        restore = raise_on_signals()
        try:
            with Progress(self.id, len(to_run)) as self.progress:
                if to_run:
                    self.backend.run(self, to_run, facts)
            submitted_only = not self.backend.waits
        except Interrupted as stop:
            signum = stop.signum
        finally:
            restore()
            self.progress = None
            self._release()
            if self.tracking:
                self.tracking.close(over=not submitted_only)
        jobs = [self.jobs[n] for n in sorted(self.jobs)]
        if not table:
            batch = Counter(self.jobs[p.num]["status"] for p in planned)
            console.print(f"batch of {len(planned)} jobs: " + ", ".join(f"{n} {s}" for s, n in batch.most_common()),
                          highlight=False)
        elif self.backend.waits or not to_run:
            print_summary(self.stash.root, self.dir, jobs)
        else:
            self.backend.follow_hint(self)
        if signum is not None:
            raise SystemExit(128 + signum)
        for p in planned:
            status = Status(self.jobs[p.num]["status"])
            current.worse(1 if status.final and not status.ok else 0)
        return planned

    def _track(self, planned: list[Planned], facts: Facts) -> None:
        """The trackers' variables in every job that reports to W&B or MLflow (trackers.py: imported only then)."""
        self.tracking = None
        if all(p.spec.tracker == "none" for p in planned):
            return
        from .trackers import Tracking

        overrides = {n: job["overrides"] for n, job in self.jobs.items()}  # names tell this job from the sweep's others
        overrides.update({p.num: p.spec.overrides for p in planned})
        self.tracking = Tracking(self.stash.root, {p.num: p.spec for p in planned}, facts.pins, facts.stash, self,
                                 overrides.values())
        for p in planned:
            p.spec = self.tracking.specs[p.num]

    def _claim(self, new_jobs: int) -> None:
        """A new sweep takes its sweep dir by creating sweep.json, which fails when another sweep holds it; space
        for the last write of sweep.json is set aside (about 600 bytes a job)."""
        path = self.dir / SWEEP_FILE
        if self._reserve is None:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                if not self.jobs:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                self._reserve = Reserve(self.dir, max(Reserve.SIZE, 2 * _size(path), 600 * (len(self.jobs) + new_jobs)))
            except FileExistsError:
                raise StashError(
                    f"{self.dir} holds a sweep already ({SWEEP_FILE}): a sweep dir is never overwritten. Use "
                    f"`experimentstash rerun {self.dir}` for its jobs that did not succeed, or choose another "
                    "hydra.sweep.dir."
                ) from None
            except OSError as err:
                raise StashError(f"Cannot write the sweep dir {self.dir}: {err.strerror}. Make it writable (or free "
                                 "space) and run again; nothing was started.") from None

    def _release(self) -> None:
        """Give back the reserved space for the last write of sweep.json."""
        if self._reserve:
            self._reserve.release()
            self._reserve = None
        self.write(force=True)

    # --- what Hydra gets back -------------------------------------------------------------------------------
    def job_return(self, p: Planned):
        from hydra.core.utils import JobReturn, JobStatus

        ret = JobReturn(overrides=list(p.words), working_dir=str(p.spec.run_dir), task_name=p.spec.tool.name)
        status = Status(self.jobs[p.num]["status"])
        if not status.final:  # submitted, not waited for
            ret.status = JobStatus.COMPLETED
            return ret
        if not status.ok:
            ret.status = JobStatus.FAILED
            ret.return_value = RuntimeError(f"job {p.num} {status}: see {p.spec.run_dir}/stderr.log")
            return ret
        ret.status = JobStatus.COMPLETED
        ret.return_value = _objective(self.results.get(p.num), p.options.get("objective"), p.spec)
        if isinstance(ret.return_value, Exception):
            ret.status = JobStatus.FAILED
        return ret

    # --- the state of every job, from the records and the backend ---------------------------------------------
    def refresh(self) -> str | None:
        """Bring every job up to date from its run.json and the backend; a run whose owner is gone is `lost`.
        Returns a note when the backend could not say everything (Slurm's records gone)."""
        records = {}
        for num, job in self.jobs.items():
            if job.get("reused_from"):  # the earlier run it reuses: its result is this job's
                earlier = read_run_if_any(inside(self.stash.root, job["reused_from"], "sweep.json reused_from"))
                self.results[num] = earlier.result if earlier else None
                continue
            record = read_run_if_any(job_run_dir(self.dir, job))
            if record is None:
                continue
            records[num] = record
            status = record.status
            if status == Status.RUNNING and owner_alive(record.owner) is False:
                status = Status.LOST
            self.update(num, status=status, exit_code=record.exit_code, duration_s=record.duration_s)
            self.results[num] = record.result
        self.records = records
        note = self.backend.refresh(self, records)
        for num, record in records.items():  # the run.json of a lost run says so too
            if self.jobs[num]["status"] == Status.LOST and record.status == Status.RUNNING:
                record.status = Status.LOST
                _rewrite(job_run_dir(self.dir, self.jobs[num]), record)
        return note


def _rewrite(run_dir: Path, record: RunRecord) -> None:
    try:
        write_json(run_dir / "run.json", record.to_dict())
    except OSError:
        pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _objective(result, key, spec: JobSpec):
    """What the job returns to Hydra: the result file, or the value(s) named by stash.objective."""
    if not key:
        return result
    if not isinstance(result, dict):
        return RuntimeError(f"job {spec.sweep['num']}: no result file ({spec.tool.result}) to take '{key}' from")
    keys = list(key) if isinstance(key, (list, tuple)) or OmegaConf.is_list(key) else [key]
    missing = [k for k in keys if k not in result]
    if missing:
        return RuntimeError(f"job {spec.sweep['num']}: '{missing[0]}' is not in {spec.tool.result}")
    values = [result[k] for k in keys]
    return values[0] if len(values) == 1 else values


def _keep_earlier_attempts(planned: list[Planned]) -> None:
    """A job run again keeps its earlier attempt's run dir beside it, as <run dir>.attempt<k>."""
    for p in planned:
        if p.spec.run_dir.exists():
            attempt = 1
            while p.spec.run_dir.with_name(f"{p.spec.run_dir.name}.attempt{attempt}").exists():
                attempt += 1
            p.spec.run_dir.rename(p.spec.run_dir.with_name(f"{p.spec.run_dir.name}.attempt{attempt}"))


def open_sweep(stash: Stash, sweep_dir: Path) -> Sweep:
    """An existing sweep, from its validated sweep.json, with its recorded backend and options."""
    record = SweepRecord.read(sweep_dir)
    try:
        options = backends.recorded_options(record.backend, record.launcher)
    except StashError as err:
        raise StashError(f"{sweep_dir / SWEEP_FILE}: field 'launcher': {err} The record is damaged.") from None
    return Sweep(stash, sweep_dir, record.backend, options, record.given, record.command_line, base_config(), record)


def rerun(stash: Stash, sweep_dir: Path) -> int:
    """Re-launch the jobs of a sweep that did not succeed, into the same sweep dir, with the same overrides."""
    sweep = open_sweep(stash, sweep_dir)
    sweep.refresh()  # sweep.json may be behind if its launcher was killed
    todo = [job for job in sweep.jobs.values() if not Status(job["status"]).ok]
    if not todo:
        sweep.write(force=True)
        console.print(f"Every job of {sweep_dir.name} succeeded: nothing to rerun.", highlight=False)
        return 0
    sweep.backend.before_rerun(sweep, todo)
    if _wait_for_earlier_attempts(sweep, todo):
        sweep.refresh()  # what the other launcher left: done, or still to do
        todo = [job for job in sweep.jobs.values() if not Status(job["status"]).ok]
        if not todo:
            sweep.write(force=True)
            console.print(f"Every job of {sweep_dir.name} succeeded: nothing to rerun.", highlight=False)
            return 0
    sweep.record.reruns.append({"at": now_iso(), "jobs": [job["num"] for job in todo]})
    sweep.launch([(job["num"], job["launch_overrides"]) for job in sorted(todo, key=lambda j: j["num"])],
                 keep_attempts=True)
    return current.exit_code


def _wait_for_earlier_attempts(sweep: Sweep, todo: list[dict]) -> bool:
    """Never two attempts of one job at once: wait for an attempt whose launcher still runs it, and end what a
    dead launcher left of one. True when it waited."""
    waited = False
    for job in todo:
        run_dir = job_run_dir(sweep.dir, job)
        record = read_run_if_any(run_dir)
        if record is None:
            continue
        if record.status == Status.RUNNING and owner_alive(record.owner):
            console.print(f"job {job['num']} is still running (pid {record.owner['pid']} on this host): waiting "
                          "for it to end before its rerun.", highlight=False)
            while owner_alive(record.owner) and (again := read_run_if_any(run_dir)) and again.status == Status.RUNNING:
                time.sleep(1)
            waited = True
        left = run_processes(record.id, anywhere=True)
        if left:
            console.print(f"job {job['num']}: ending {len(left)} process(es) its earlier attempt left running.",
                          highlight=False)
            terminate(left, float(sweep.base["stash"]["grace"]))
    return waited


def new_sweep(config: DictConfig, composed_options) -> Sweep:
    """The sweep of a Hydra multirun: its backend from the hydra/launcher choice, its options from the command
    line (as Hydra recorded it) over this machine's defaults in meta.yaml."""
    from .invocation import override_key

    backend = backends.for_launcher(config.hydra.runtime.choices.get("hydra/launcher"))
    prefix = "hydra.launcher."
    given = {override_key(w)[len(prefix):].split(".")[0] for w in config.hydra.overrides.hydra
             if override_key(w).startswith(prefix)}
    stash = Stash.load(current.root)
    plain = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in composed_options.items()}
    options = backends.resolve_options(backend, plain, given, stash.machine.get(backend, {}))
    # a relative hydra.sweep.dir is relative to where the command was typed, as in Hydra
    return Sweep(stash, Path(config.hydra.sweep.dir).absolute(), backend, options, sorted(given),
                 current.argv, config)

"""The sweep core: plan every job, inspect pins once per tool, keep sweep.json true, rerun, results for Hydra.

Where the jobs run is a backend's business (experimentstash/backends/): the core hands it a Launch (backends/
base.py), the narrow view of one launch, and hears back through it. The core names no backend.

sweep.json is kept true by a writer of its own while jobs run: a change is on disk within WRITE_GAP seconds,
and the file is written at most once per WRITE_GAP however fast jobs end (a killed launcher leaves it at most
that far behind; `status` and `rerun` bring it up to date from the run records).
"""

from __future__ import annotations

import fcntl
import gc
import os
import socket
import threading
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.text import Text

from .. import Interrupted, StashError, backends
from ..backends import base
from ..fingerprint import with_upstream
from ..index import Index
from ..output import console, plain, say, warn, warn_skipped
from ..overrides import override_key, replaced
from ..owner import owner_alive
from ..records import (LOCK_FILE, RUN_FILE, SWEEP_FILE, BadRecord, JobEntry, Missing, RerunEntry, Reserve, RunDirError,
                      RunRecord, Status, SweepRecord, check_writable, encode_sweep, folder_problem, is_disk_full,
                      is_signed, job_dir_name, job_run_dir, move_aside, now_iso, read_run, to_json, write_run,
                      write_text)
from ..registry import Stash
from ..reuse import GONE, Chooser, check_run, earlier_runs
from ..views.summary import Progress, print_summary
from .facts import Facts, gather
from .invocation import current
from .launcher_options import resolve
from .notify import ENV as NOTIFY_ENV
from .notify import Notifier, hide_urls, without_urls
from .pipeline import LINK_KEYS, expand_chains, recorded_link, upstream_of
from .plan import JobSpec, base_config, plain_base, plan_job, reuses, split_job
from .rerun_options import rerun_options
from .run import PlannedJob
from .supervise import Runner, raise_on_signals, run_processes, terminate

WRITE_GAP = 0.5  # seconds: sweep.json is written at most this often while jobs run, and at most this far behind


@dataclass
class Planned:
    spec: JobSpec
    options: dict  # this job's stash.* options
    words: list[str]  # its whole override list: what `rerun` replays
    link: dict | None = None  # a pipeline's stage: its pipeline, chain, stage and the jobs it needs (pipeline.py)

    @property
    def num(self) -> int:
        return self.spec.sweep["num"]


class Sweep(base.Sweep):
    """One sweep dir with its sweep.json; launch() may be called more than once (optimizing sweepers)."""

    def __init__(self, stash: Stash, sweep_dir: Path, backend: str, options, given: list[str],
                 command_line: list[str], config, record: SweepRecord | None = None, profile: str | None = None):
        self.stash = stash
        self.dir = sweep_dir
        self.base = config
        self.backend = backends.create(backend, options)
        self.record = record or SweepRecord(
            id=sweep_dir.name, created_at=now_iso(), backend=backend, command_line=list(command_line),
            launcher=backends.options_dict(options), given=sorted(given), jobs=[], profile=profile)
        # of the options its jobs run with (a rerun's may differ)
        self.given, self.profile = list(given), profile if record is None else record.profile
        self.id = self.record.id
        self.jobs: dict[int, JobEntry] = {job.num: job for job in self.record.jobs}
        self.results: dict[int, object] = {}  # parsed result file of each job that ran
        self.records: dict[int, RunRecord] = {}  # each job's run.json, as last read or written
        # run.json rewrites refresh() found, until commit(), each with whether it is signed
        self._deferred: dict[int, tuple[RunRecord, bool]] | None = None
        self._lines: dict[int, str] = {}  # each job's entry encoded as one JSON line, until it changes
        self._lock = threading.Lock()
        self._dirty = False
        self._changed = threading.Event()  # wakes the writer of sweep.json
        self._unwatched: list[tuple[int, RunRecord, object]] = []  # jobs ended whose checkout is still to be looked at
        self._reserve: Reserve | None = None
        self._lock_fd: int | None = None  # the sweep's lock file, while this process launches
        self.progress: Progress | None = None
        self.tracking = None  # trackers.Tracking, when a job reports to W&B or MLflow
        self.facts: Facts | None = None  # looked up by the first launch, kept for the next ones
        self.earlier: Index | None = None  # the index of the stash's records, for stash.reuse
        self.notifier: Notifier | None = None  # where the sweep's end is told (notify: or stash.notify)

    # --- what a backend sees of it (base.Sweep) ---------------------------------------------------------------
    @property
    def sweep_id(self) -> str:
        return self.id

    @property
    def sweep_dir(self) -> Path:
        return self.dir

    @property
    def stash_root(self) -> Path:
        return self.stash.root

    @property
    def state(self) -> dict:
        return self.record.backend_state

    @property
    def entries(self) -> dict[int, JobEntry]:
        return self.jobs

    @property
    def grace(self) -> float:
        return float(self.base["stash"]["grace"])

    # --- planning -------------------------------------------------------------------------------------------
    def plan(self, numbered) -> list[Planned]:
        """Plan every (job number, override list) before anything starts; the first bad job stops them all."""
        planned, prepared, base = [], {}, plain_base(self.base)
        try:
            jobs = expand_chains(self.stash, base, self.dir, numbered)
        except StashError as err:
            raise StashError(f"{err} Nothing was started.") from None
        chained = {num: link for num, _, link in jobs if link}
        if chained and self.jobs:  # an optimizing sweeper's next batch would number its jobs anew
            raise StashError("A pipeline is swept by the stash sweeper (the default): other sweepers launch batch "
                             "after batch, and a pipeline's stages are numbered once. Nothing was started.")
        links = {num: recorded_link(job, self.dir / SWEEP_FILE)  # a rerun's stages
                 for num, job in self.jobs.items() if "stage" in job.extra}
        links.update(chained)
        launcher = {"backend": self.record.backend, "options": backends.options_dict(self.backend.options),
                    "given": list(self.given), "profile": self.profile}  # each run.json: what it was launched with
        for num, words, _ in jobs:
            link = links.get(num)
            if link and not self.backend.follows_needs:
                raise StashError(f"The {self.record.backend} backend cannot run a pipeline's stages one after "
                                 "another yet: run it with the local backend (hydra/launcher=stash).")
            try:
                tool, experiment, options, tool_words = split_job(words, base)
                run_dir = self.dir / job_dir_name(num, str(tool), str(experiment))
                timeout = options["timeout"] if options["timeout"] is not None else self.backend.job_timeout()
                spec = plan_job(self.stash, tool, experiment, tool_words, run_dir, f"{self.id}_{num}",
                                timeout=timeout, sweep={"id": self.id, "num": num}, prepared=prepared,
                                tracker=options["tracker"])
                if options["distributed"] and not self.backend.ranks:
                    raise StashError(f"stash.distributed={options['distributed']}: the {self.record.backend} backend "
                                     "runs each job as one process; run it on Slurm (hydra/launcher=stash_slurm).")
            except StashError as err:
                raise StashError(f"Job {num} ({' '.join(hide_urls(words))}): {err} Nothing was started.") from None
            spec = replace(spec, launcher=launcher)
            if link:
                spec = replace(spec, stage={"pipeline": link["pipeline"], "stage": link["stage"],
                                            "upstream": [self._run_id(n) for n in upstream_of(links, num)]})
            planned.append(Planned(spec, options, list(words), link))
        return planned

    def _run_id(self, num: int) -> str:
        """The run id of a job: its record's, when it has run (or reused an earlier run)."""
        record = self.records.get(num)
        return record.id if record else f"{self.id}_{num}"

    def inspect(self, planned: list[Planned]) -> Facts:
        """Pins once per tool per sweep; the pin policy may refuse the whole sweep before anything starts."""
        self.facts, specs = gather(self.stash.root, [(p.spec, p.options) for p in planned], warn, self.facts)
        for p, spec in zip(planned, specs):
            p.spec = spec
        self._stand_on_upstream(planned)
        return self.facts

    def _stand_on_upstream(self, planned: list[Planned]) -> None:
        """A stage's fingerprint takes its upstream stages' fingerprints (fingerprint.with_upstream): upstream
        first, as job numbers go. An upstream job outside this launch (a rerun's) has its record's."""
        by_num = {p.num: p for p in planned}
        for p in sorted(planned, key=lambda p: p.num):
            if not p.link:
                continue
            upstream = {}
            for need in p.link["needs"]:
                if need in by_num:
                    folder, fingerprint = by_num[need].spec.run_dir, by_num[need].spec.fingerprint
                    upstream[str(folder)] = fingerprint.digest if fingerprint else None
                elif need in self.jobs:
                    record = self.records.get(need)
                    folder = job_run_dir(self.stash.root, self.dir, self.jobs[need])
                    upstream[str(folder)] = record and record.fingerprint
            p.spec = replace(p.spec, fingerprint=with_upstream(p.spec.fingerprint, upstream))

    def _repoint(self, planned: list[Planned], reused: dict[int, object]) -> None:
        """The stages after a reused one read the earlier run's dir, and record its id among their upstream."""
        moved = {str(p.spec.run_dir): str(reused[p.num].folder) for p in planned if p.num in reused}
        if not moved:
            return
        ids = {f"{self.id}_{num}": found.record.id for num, found in reused.items()}
        for p in planned:
            if p.link and p.num not in reused:
                stage = {**p.spec.stage, "upstream": [ids.get(i, i) for i in p.spec.stage["upstream"]]}
                p.spec = replace(p.spec, overrides=tuple(replaced(p.spec.overrides, moved)),
                                 argv=tuple(replaced(p.spec.argv, moved)), stage=stage)
                p.words = replaced(p.words, moved)

    def reusable(self, planned: list[Planned]) -> dict[int, object]:
        """Job number -> the earlier run (runs.Found) it reuses: one that succeeded with the same fingerprint and
        passes reuse's checks (stash.reuse); one line says why jobs with earlier runs run again."""
        wanted = [p for p in planned if reuses(p.spec, p.options) and p.spec.fingerprint]
        if not wanted:
            return {}
        if self.earlier is None:  # opened (and brought up to date) once per sweep
            self.earlier = earlier_runs(self.stash.root)
        chooser = Chooser(self.stash.root, self.earlier)
        reused = {p.num: found for p in wanted if (found := chooser.choose(p.spec))}
        if line := chooser.line():
            console.print(Text(plain(line)), highlight=False)
        return reused

    # --- sweep.json -----------------------------------------------------------------------------------------
    def _entry(self, p: Planned) -> JobEntry:
        entry = JobEntry.new(
            self.backend.job_fields(), num=p.num, tool=p.spec.tool.name, experiment=p.spec.experiment,
            overrides=list(p.spec.overrides), run_dir=os.path.relpath(p.spec.run_dir, self.stash.root),
            status=Status.PENDING, exit_code=None, duration_s=None, ended_at=None,
            launch_overrides=without_urls(p.words))
        if p.link:
            entry.update(**{key: p.link[key] for key in LINK_KEYS})
        return entry

    def update(self, num: int, **fields) -> None:
        if "status" in fields:
            fields["status"] = Status(fields["status"])
        with self._lock:
            job = self.jobs[num]
            was = job.status
            if not job.update(**fields):
                return
            self._lines.pop(num, None)
            self._dirty = True
            now = job.status
        self._changed.set()
        if now != was and now.final:  # however it ended: its line, and its tracker run ends too
            if self.progress:
                self.progress.ended(job, self.stash.root)
            if self.tracking:
                self.tracking.ended(num, now, self.records.get(num))
            if self.notifier:
                self.notifier.first_failure(job, self.id, warn)

    def agree(self, num: int, record: RunRecord | None, status: Status | str, used: dict | None = None,
              **fields) -> None:
        """The one place that brings a job's run.json and its sweep.json entry into agreement. `status` is the
        job's status from everything known: its record's own word, `lost` when the record's owner is gone, the
        backend's (Slurm's CANCELLED, TIMEOUT, ...). When it is final and run.json says otherwise, run.json is
        rewritten with it, an end time when it had none, and `fields` (slurm_state); the sweep.json entry then
        carries the record's status, exit code, duration and end time, and `fields`. `used`: what the backend
        says the job used (Slurm's accounting), kept in run.json's resources.slurm once the job has ended."""
        status = Status(status)
        # an earlier attempt's reason (upstream failed) is not this one's
        stale = {"reason": None} if self.jobs[num].extra.get("reason") and "reason" not in fields else {}
        if record is not None:
            settled = status.final and record.status != status
            measured = status.final and used is not None and (record.resources or {}).get("slurm") != used
            if settled or measured:
                signed = is_signed(self.stash.root, record)  # a record that was not this stash's stays unsigned
                if settled:
                    record.status = status
                    record.ended_at = record.ended_at or now_iso()
                    record.extra.update(fields)
                if measured:
                    record.resources = {**(record.resources or {}), "slurm": used}
                self._rewrite(num, record, signed)
            self.records[num] = record
            self.results[num] = record.result
            fields.update(exit_code=record.exit_code, duration_s=record.duration_s, ended_at=record.ended_at)
        self.update(num, status=status, **fields, **stale)

    def _rewrite(self, num: int, record: RunRecord, signed: bool) -> None:
        """Write a job's settled record; while refresh() is at work, only once commit() has checked every write."""
        if self._deferred is not None:
            self._deferred[num] = record, signed
            return
        run_dir = job_run_dir(self.stash.root, self.dir, self.jobs[num])
        try:
            write_run(self.stash.root, run_dir, record, signed)
        except OSError as err:
            warn(f"cannot write {run_dir / RUN_FILE} ({err.strerror}): it does not say {record.status} yet; "
                 "`experimentstash status` writes it later.")

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
                    self._lines[num] = to_json(job.to_dict())
            lines = [self._lines[num] for num in sorted(self.jobs)]
        try:
            write_text(self.dir / SWEEP_FILE, encode_sweep(self.record.head(), lines))
        except OSError as err:
            if not is_disk_full(err):
                raise
            self._dirty = True

    def tick(self) -> None:
        """Called by a backend while it waits: the progress line."""
        if self.progress:
            self.progress.show(self.jobs.values())

    def _keep_written(self, stop: threading.Event) -> None:
        """sweep.json while jobs run: within WRITE_GAP of a change, and at most once per WRITE_GAP; and the look at
        the tools' checkouts for the jobs that ended meanwhile."""
        while not stop.is_set():
            self._changed.wait()
            self._changed.clear()
            try:
                self.write()
            except OSError:  # tried again at the next change, and the last time (in the main thread) at the end
                self._dirty = True
            self.look_at_checkouts()
            stop.wait(WRITE_GAP)

    def watch_later(self, num: int, record: RunRecord, watch) -> None:
        """A job ended: what it wrote into its tool's checkout is looked at with the other jobs that end meanwhile."""
        with self._lock:
            self._unwatched.append((num, record, watch))

    def look_at_checkouts(self) -> None:
        """One `git status` per tool for every job that ended since the last look: paths new to the checkout are
        recorded for the first of them to end (run.json's tool_touched), as a look after each job would."""
        with self._lock:
            ended, self._unwatched = self._unwatched, []
        by_watch: dict[int, list] = {}
        for item in ended:
            by_watch.setdefault(id(item[2]), []).append(item)
        for items in by_watch.values():
            num, record, watch = items[0]
            new = watch.new_in(watch.scan())
            if new:
                record.tool_touched = new
                self._rewrite(num, record, True)

    # --- running --------------------------------------------------------------------------------------------
    def launch(self, numbered, keep_attempts: bool = False, table: bool = True) -> list[Planned]:
        """Plan, inspect, claim the sweep dir and run the jobs with the backend; then the table and the counts
        (one line instead of the table when an optimizing sweeper launches batch after batch)."""
        planned = self.plan(numbered)
        self.notifier = Notifier.for_sweep(self.stash, [p.options for p in planned])
        facts = self.inspect(planned)
        reused = self.reusable(planned)
        self._repoint(planned, reused)
        to_run = [p for p in planned if p.num not in reused]
        if to_run:
            self.backend.preflight()
        problem = folder_problem(self.dir)
        if problem:
            raise StashError(f"hydra.sweep.dir: {problem}. Choose another hydra.sweep.dir; nothing was started.")
        self._track(to_run, facts)
        try:
            if keep_attempts:  # a job run again keeps its earlier attempt's run dir beside it
                for p in to_run:
                    move_aside(p.spec.run_dir, "attempt")
            self._claim(len(planned))
        except StashError:
            if self.tracking:
                self.tracking.discard()
            raise
        for p in planned:
            self.jobs[p.num] = self._entry(p)
            self._lines.pop(p.num, None)
            if p.num in reused:  # its run dir is the earlier run's: where its record and result are
                earlier = reused[p.num]
                where = os.path.relpath(earlier.folder, self.stash.root)
                self.jobs[p.num].update(status=Status.REUSED, exit_code=earlier.record.exit_code,
                                        run_dir=where, reused_from=where)
                self.results[p.num] = earlier.record.result
        if reused:
            console.print(f"{len(reused)} of {len(planned)} jobs reuse earlier runs with the same fingerprint "
                          "(stash.reuse).", highlight=False)
        self.write(force=True)
        # what start-up made (Hydra's configs, the plan) lives as long as the process: the collector no longer walks
        # it, neither while jobs start and end (a full collection holds every job thread up) nor at exit
        gc.freeze()
        signum = None
        submitted_only = False
        runner = Runner(self.grace)
        launch = SweepLaunch(self, [self._job(p, facts, runner) for p in to_run], runner)
        stop_writing = threading.Event()
        writer = threading.Thread(target=self._keep_written, args=(stop_writing,), daemon=True)
        writer.start()
        restore = raise_on_signals()
        try:
            with Progress(self.id, len(to_run)) as self.progress:
                if to_run:
                    self.backend.run(launch)
            submitted_only = not self.backend.waits
        except Interrupted as stop:
            signum = stop.signum
            launch.stop()  # whatever the backend did: nothing of this process goes on
        finally:
            restore()
            stop_writing.set()
            self._changed.set()
            writer.join()
            self.look_at_checkouts()
            self.progress = None
            self._release()
        jobs = [self.jobs[n] for n in sorted(self.jobs)]
        if not table:
            batch = Counter(self.jobs[p.num].status.value for p in planned)
            console.print(f"batch of {len(planned)} jobs: " + ", ".join(f"{n} {s}" for s, n in batch.most_common()),
                          highlight=False)
        elif self.backend.waits or not to_run or not (hint := self.backend.follow_hint(self)):
            print_summary(self.stash.root, self.dir, jobs)
        else:
            console.print(Text(plain(hint)), highlight=False)
        if self.tracking:  # after the table: whatever the tracker does, the user has seen the sweep's outcome
            signum = self.tracking.close(over=not submitted_only) or signum
        if self.notifier and table and signum is None and not submitted_only:
            for problem in self.notifier.sweep_ended(self.stash.root, self.dir, self.id, jobs):
                warn(problem)
        if signum is not None:
            raise Interrupted(signum)
        for p in planned:
            status = self.jobs[p.num].status
            current.worse(1 if status.final and not status.ok else 0)
        return planned

    def _job(self, p: Planned, facts: Facts, runner: Runner) -> PlannedJob:
        """A job as its backend gets it: its run carries its pin, the stash's state, its experiment's sha256,
        the watch on its tool's checkout and its tracker run."""
        name = p.spec.tool.name
        job = PlannedJob(p.num, p.spec, self.stash.root, facts.pins[name], facts.stash,
                         facts.sha[p.spec.experiment_file], self.grace, watch=facts.watches.get(name),
                         tracking=self.tracking, runner=runner, distributed=p.options["distributed"])
        job.needs = tuple(p.link["needs"]) if p.link else ()
        return job

    def _track(self, planned: list[Planned], facts: Facts) -> None:
        """The trackers' variables in every job that reports to W&B or MLflow (trackers.py: imported only then)."""
        self.tracking = None
        if all(p.spec.tracker == "none" for p in planned):
            return
        from .trackers import Tracking

        overrides = {n: job.overrides for n, job in self.jobs.items()}  # names tell this job from the sweep's others
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
                    try:
                        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                    except FileExistsError:
                        raise StashError(
                            f"{self.dir} holds a sweep already ({SWEEP_FILE}): a sweep dir is never overwritten. Use "
                            f"`experimentstash rerun {self.dir}` for its jobs that did not succeed, or choose another "
                            "hydra.sweep.dir.") from None
                self.lock()
                self._reserve = Reserve(self.dir, max(Reserve.SIZE, 2 * _size(path), 600 * (len(self.jobs) + new_jobs)))
            except OSError as err:
                raise StashError(f"Cannot write the sweep dir {self.dir}: {err.strerror}. Make it writable (or free "
                                 "space) and run again; nothing was started.") from None

    def lock(self, wait: bool = False) -> bool:
        """Hold the sweep's lock while this process launches its jobs (an flock: it goes with the process, however
        it ends). Another launcher of the same sweep (`rerun`) waits for it, saying so, with `wait`; without, False
        when the lock is held elsewhere."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                return False
            holder = os.pread(fd, 200, 0).decode(errors="replace").split() or ["?"]
            where = f"pid {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "")
            console.print(Text(f"another launcher ({plain(where)}) is running jobs of this sweep: waiting for it to "
                               "end, so that no job runs twice at once."), highlight=False)
            restore = raise_on_signals()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            finally:
                restore()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        """Give the sweep's lock back: a process that only looks at the sweep holds it no longer than a write."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _release(self) -> None:
        """Give back the reserved space for the last write of sweep.json."""
        if self._reserve:
            self._reserve.release()
            self._reserve = None
        self.write(force=True)

    # --- what Hydra gets back -------------------------------------------------------------------------------
    def job_return(self, p: Planned):
        from hydra.core.utils import JobReturn, JobStatus

        ret = JobReturn(overrides=list(p.words), working_dir=str(self.stash.root / self.jobs[p.num].run_dir),
                        task_name=p.spec.tool.name)
        status = self.jobs[p.num].status
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
    def refresh(self) -> list[str]:
        """Bring every job up to date from its run.json and the backend (a run whose owner is gone is `lost`);
        what must be written is written by commit(). A reused job takes the earlier run's record, while that run
        is there and passes reuse's checks; else it is `lost`, with a note. Returns the notes to show (those jobs;
        the backend's when it could not say everything, e.g. Slurm's records gone)."""
        self._deferred = {}
        records, statuses, notes, bad = {}, {}, [], []

        def record_of(run_dir: Path) -> RunRecord | None:
            try:
                return read_run(run_dir)
            except Missing:  # a job that never started
                return None
            except BadRecord as err:
                bad.append(err)
                return None

        folders = _names(self.dir)  # one listing, not a look for each job that never started
        for num, job in self.jobs.items():
            if job.reused_from:  # the earlier run it stands on: read, never rewritten from here
                self._reused(num, job, notes)
                continue
            if folders is not None and job_dir_name(num, job.tool, job.experiment) not in folders:
                continue
            record = record_of(job_run_dir(self.stash.root, self.dir, job))
            if record is None:
                continue
            records[num] = record
            gone = record.status == Status.RUNNING and owner_alive(record.owner) is False
            statuses[num] = Status.LOST if gone else record.status
        warn_skipped(self.stash.root, bad)
        verdicts, note = self.backend.refresh(self, statuses)
        for num in sorted(set(records) | set(verdicts)):
            status, fields = verdicts.get(num) or (statuses[num], {})
            self.agree(num, records.get(num), status, **fields)
        return notes + ([note] if note else [])

    def _reused(self, num: int, job: JobEntry, notes: list[str]) -> None:
        """A reused job from the earlier run it stands on: its record and result while that run is there and passes
        reuse's checks; else the job is `lost` (for `rerun`), and a note says so."""
        tool = self.stash.tools.get(job.tool)
        record, why = check_run(self.stash.root, job_run_dir(self.stash.root, self.dir, job), job.tool,
                                tool.result if tool else None)
        if why is None:
            self.records[num], self.results[num] = record, record.result
            self.update(num, status=Status.REUSED)
            return
        self.records.pop(num, None)
        self.results[num] = None
        self.update(num, status=Status.LOST)
        what = "is gone" if why == GONE else f"no longer passes reuse's checks ({why})"
        notes.append(f"job {num} reused {job.reused_from}, which {what}: it is lost, and "
                     "`experimentstash rerun` runs it.")

    def commit(self) -> bool:
        """Write what refresh() found: each run.json that must change, then sweep.json. Every write is tried first,
        so that one that cannot be done stops the command (a StashError naming the file) with nothing changed.
        False, with nothing written, while another launcher holds the sweep's lock: that one keeps them true."""
        rewrites, self._deferred = self._deferred or {}, None
        if not rewrites and not self._dirty:
            return True
        run_dirs = {num: job_run_dir(self.stash.root, self.dir, self.jobs[num]) for num in rewrites}
        for path in [self.dir / SWEEP_FILE, *(folder / RUN_FILE for folder in run_dirs.values())]:
            check_writable(path)
        if not self.lock():
            return False
        for num, (record, signed) in rewrites.items():
            write_run(self.stash.root, run_dirs[num], record, signed)
        self.write(force=True)
        return True


def _names(folder: Path) -> set[str] | None:
    """The names in a folder, or None when it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries}
    except OSError:
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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


def open_sweep(stash: Stash, sweep_dir: Path, holding: Sweep | None = None) -> Sweep:
    """An existing sweep, from its validated sweep.json, with its recorded backend and options (read again by the
    process `holding` its lock, which keeps it)."""
    record = SweepRecord.read(sweep_dir)
    try:
        options = backends.recorded_options(record.backend, record.launcher)
    except StashError as err:
        field = "launcher" if record.backend in backends.names() else "backend"
        raise StashError(f"{sweep_dir / SWEEP_FILE}: field '{field}': {err} The record is damaged.") from None
    sweep = Sweep(stash, sweep_dir, record.backend, options, record.given, record.command_line, base_config(), record)
    if holding is not None:
        sweep._lock_fd, holding._lock_fd = holding._lock_fd, None
    return sweep


def rerun(stash: Stash, sweep_dir: Path, words: list[str] = ()) -> int:
    """Re-launch the jobs of a sweep that did not succeed, into the same sweep dir, with the same overrides and the
    launcher options `words` give (hydra.launcher.*, stash.timeout, stash.profile) over the last attempt's."""
    sweep = open_sweep(stash, sweep_dir)
    retry = rerun_options(stash, sweep.record, list(words))
    check_writable(sweep.dir / SWEEP_FILE)
    sweep.lock(wait=True)  # never two attempts of one job at once: a launcher still at work is waited for
    sweep = open_sweep(stash, sweep_dir, sweep)  # what that launcher left
    retry = rerun_options(stash, sweep.record, list(words))  # over its last attempt, if it made one
    sweep.refresh()  # sweep.json may be behind if its launcher was killed
    todo = [job for job in sweep.jobs.values() if not job.status.ok]
    if not todo:
        sweep.commit()
        console.print(Text(f"Every job of {plain(sweep_dir.name)} succeeded: nothing to rerun."), highlight=False)
        return 0
    sweep.backend.before_rerun(sweep, [job.num for job in todo])
    for job in todo:  # each earlier attempt is moved aside: checked before the first is (a reused job has none)
        attempt = job_run_dir(sweep.stash.root, sweep.dir, job)
        if not job.reused_from and attempt.exists():
            check_writable(attempt / RUN_FILE)
    sweep.commit()
    _end_leftovers(sweep, todo)
    sweep.backend = backends.create(sweep.record.backend, retry.options)
    sweep.given, sweep.profile = retry.given, retry.profile
    if retry.timeout:
        for job in todo:
            job.launch_overrides = [w for w in job.launch_overrides if override_key(w) != "stash.timeout"]
            job.launch_overrides.append(retry.timeout)
    sweep.record.reruns.append(RerunEntry(at=now_iso(), jobs=[job.num for job in todo], overrides=list(words),
                                          launcher=backends.options_dict(retry.options), profile=retry.profile))
    sweep.launch([(job.num, job.launch_overrides) for job in sorted(todo, key=lambda j: j.num)],
                 keep_attempts=True)
    return current.exit_code


class Finish:
    """The end of a sweep nobody waits for (Slurm with wait=false), as a backend sends it to the machine that runs
    it once every job of the launch has ended (it pickles: two paths)."""

    def __init__(self, root: Path, sweep_dir: Path):
        self.root = Path(root)
        self.sweep_dir = Path(sweep_dir)

    def __call__(self) -> str:
        return finish(self.root, self.sweep_dir)


def finish(root: Path, sweep_dir: Path) -> str:
    """What a waiting launcher does at the end of a sweep: sweep.json and every run.json in line with the backend (as
    `status` does), the MLflow runs ended (the jobs' and the sweep's), the notification sent; what it did goes to
    sweep.json (backend_state.finisher), which `status` reads. Returns whether the notification went out."""
    from .trackers import settle

    stash = Stash.load(root)
    sweep = open_sweep(stash, sweep_dir)
    for note in sweep.refresh():
        say(note)
    sweep.commit()
    for line in settle(stash, sweep):
        say(line)
    notified = "nobody"
    try:
        notifier = Notifier.for_sweep(stash, [], given=os.environ.get(NOTIFY_ENV))
    except StashError as err:  # settings changed since the launch: the records are in line all the same
        notifier, notified = None, f"not sent: {str(err).removesuffix(' Nothing was started.')}"
    if notifier:
        problems = notifier.sweep_ended(stash.root, sweep.dir, sweep.id, [sweep.jobs[n] for n in sorted(sweep.jobs)])
        for problem in problems:
            say(f"warning: {problem}")
        notified = "not delivered" if problems else "sent"
    if sweep.lock():  # else a launcher of this sweep at work (`rerun`) keeps sweep.json
        sweep.state.setdefault(base.FINISHER, {}).update(ended_at=now_iso(), notified=notified)
        sweep.write(force=True)
    return notified


def _end_leftovers(sweep: Sweep, todo: list[JobEntry]) -> None:
    """End what a launcher that died without its keeper left of the jobs' earlier attempts (their processes carry
    the job's run id)."""
    left = run_processes({f"{sweep.id}_{job.num}" for job in todo}, anywhere=True)
    if left:
        console.print(f"ending {len(left)} process(es) that earlier attempts left running.", highlight=False)
        terminate(left, sweep.grace)


def new_sweep(config: DictConfig, composed_options) -> Sweep:
    """The sweep of a Hydra multirun: its backend from the hydra/launcher choice, its options from the command
    line (as Hydra recorded it) over this machine's defaults in meta.yaml."""
    backend = backends.for_launcher(config.hydra.runtime.choices.get("hydra/launcher"))
    prefix = "hydra.launcher."
    given = {override_key(w)[len(prefix):].split(".")[0] for w in config.hydra.overrides.hydra
             if override_key(w).startswith(prefix)}
    stash = Stash.load(current.root)
    plain = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in composed_options.items()}
    profile = config.stash.get("profile")
    options = resolve(stash, backend, plain, given, profile)
    # a relative hydra.sweep.dir is relative to where the command was typed, as in Hydra
    return Sweep(stash, Path(config.hydra.sweep.dir).absolute(), backend, options, sorted(given),
                 hide_urls(current.argv), config, profile=profile)


class SweepLaunch(base.Launch):
    """One launch of a sweep as its backend sees it (backends/base.py): the jobs to run, and the ways to report."""

    def __init__(self, sweep: Sweep, jobs: list[PlannedJob], runner: Runner):
        self._sweep = sweep
        self._runner = runner
        self.jobs = jobs
        self.grace = sweep.grace
        self.sweep_id, self.sweep_dir, self.stash_root = sweep.id, sweep.dir, sweep.stash.root
        self.state = sweep.record.backend_state
        self.entries = sweep.jobs

    @property
    def stopping(self) -> bool:
        return self._runner.stopping

    def run(self, job: PlannedJob, env: dict[str, str] | None = None) -> Status:
        if self.stopping:
            self.cancelled(job.num)
            return Status.CANCELLED
        try:
            record = job.run_unwatched(lambda: self.started(job.num), env)
        except RunDirError as err:  # this job's folder cannot be written (a full disk): it did not run
            self.ended(job.num, None, Status.FAILED, error=str(err))
            console.print(Text.assemble((f"job {job.num} failed to start:", "red"), f" {plain(str(err))}"))
            return Status.FAILED
        if record is None:
            self.cancelled(job.num)
            return Status.CANCELLED
        if job.watch is not None:
            self._sweep.watch_later(job.num, record, job.watch)
        self.ended(job.num, record)
        return self.entries[job.num].status

    def started(self, num: int) -> None:
        self._sweep.update(num, status=Status.RUNNING)

    def ended(self, num: int, record: RunRecord | None, status: Status | None = None, **fields) -> None:
        self._sweep.agree(num, record, status or record.status, **fields)

    def cancelled(self, num: int, reason: str | None = None) -> None:
        self._sweep.update(num, status=Status.CANCELLED, **({"reason": reason} if reason else {}))

    def update(self, num: int, **fields) -> None:
        if "status" in fields and Status(fields["status"]).final:
            raise ValueError(f"job {num}: a final status ({fields['status']}) is reported by ended() or cancelled()")
        self._sweep.update(num, **fields)

    def tick(self) -> None:
        self._sweep.tick()

    def stop(self, reason: Status = Status.INTERRUPTED) -> None:
        self._runner.stop_all(reason)

    def finisher(self) -> tuple[Finish, dict[str, str]]:
        notifier = self._sweep.notifier
        return Finish(self.stash_root, self.sweep_dir), notifier.env() if notifier else {}

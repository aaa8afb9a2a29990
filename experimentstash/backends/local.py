"""The local backend: the sweep's jobs in a pool of this machine's processes (`hydra/launcher=stash`).

What a backend implements (the core calls nothing else):
- `Options`: a dataclass of its `hydra.launcher.*` options (typing types, defaults for all); `Backend.validate()`
  checks their values together;
- `Backend(options, stash)` with `waits` (does run() return when every job has ended?), `job_fields()` (its own
  fields of a job in sweep.json, with their defaults), `job_timeout()`, `preflight()` (outside-world checks, before
  anything is written), `run(sweep, planned, facts)` (runs or submits the jobs, reporting through
  `sweep.job_started / job_ended / agree / update / tick`, and making each job's tracker run just before its tool
  starts, `sweep.tracking.prepare(num)`; on Ctrl-C it ends its jobs, records them `interrupted` and lets the
  Interrupted exception through), `refresh(sweep, statuses)` (for `status` and `rerun`: given what the run records
  say, what it knows better, {job number: (status, its own fields)}, and a note or None; the core gives both to
  `sweep.agree`), `before_rerun(sweep, jobs)` (raises a StashError when those jobs cannot be run again yet) and
  `follow_hint(sweep)` (for backends that do not wait). The default backend also gives `foreground_env()`: what a
  single run gets of its options.
"""

import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import List, Optional

from .. import StashError


@dataclass
class Options:
    max_parallel: Optional[int] = None  # jobs at once; default: the number of CPUs
    fail_fast: bool = False  # end the sweep at the first job that does not succeed
    timeout: Optional[float] = None  # seconds per job (stash.timeout wins when both are set)
    gpus: Optional[List[str]] = None  # device ids to share out; default: CUDA_VISIBLE_DEVICES
    gpus_per_job: int = 0  # devices each job gets as its own CUDA_VISIBLE_DEVICES


def visible_devices(options: Options) -> list[str]:
    if options.gpus is not None:
        return list(options.gpus)
    return [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]


class DevicePool:
    """GPU ids handed out to running jobs; a job waits for free devices rather than sharing them."""

    def __init__(self, ids: list[str]):
        self._order = {d: i for i, d in enumerate(ids)}
        self._free = list(ids)
        self._cond = threading.Condition()

    def acquire(self, count: int, stopped) -> list[str] | None:
        with self._cond:
            while len(self._free) < count:
                if stopped():
                    return None
                self._cond.wait(0.2)
            taken, self._free = self._free[:count], self._free[count:]
            return taken

    def release(self, ids: list[str]) -> None:
        with self._cond:
            self._free = sorted(self._free + ids, key=self._order.get)
            self._cond.notify_all()


class Backend:
    waits = True

    def __init__(self, options: Options, stash):
        self.options = options
        self.stash = stash

    @staticmethod
    def validate(o: Options) -> None:
        if o.max_parallel is not None and o.max_parallel < 1:
            raise StashError(f"hydra.launcher.max_parallel={o.max_parallel}: give a whole number of at least 1.")
        if o.timeout is not None and o.timeout <= 0:
            raise StashError(f"hydra.launcher.timeout={o.timeout}: give a positive number of seconds (or null).")
        if o.gpus_per_job < 0:
            raise StashError(f"hydra.launcher.gpus_per_job={o.gpus_per_job}: give 0 or more.")

    def job_fields(self) -> dict:
        return {}

    def job_timeout(self) -> float | None:
        return self.options.timeout

    def preflight(self) -> None:
        """This machine's devices: checked when jobs are about to run (a recorded sweep opens anywhere)."""
        devices = visible_devices(self.options)
        if self.options.gpus_per_job > len(devices):
            raise StashError(
                f"hydra.launcher.gpus_per_job={self.options.gpus_per_job} but only {len(devices)} device(s) to share "
                f"out ({', '.join(devices) or 'none'}): set hydra.launcher.gpus=[0,1,...] or CUDA_VISIBLE_DEVICES."
            )

    def foreground_env(self) -> dict[str, str]:
        """A single run's devices, as a job of a sweep gets them (preflight() checked there are enough)."""
        devices = visible_devices(self.options)[:self.options.gpus_per_job]
        return {"CUDA_VISIBLE_DEVICES": ",".join(devices)} if devices else {}

    def refresh(self, sweep, statuses) -> tuple[dict, str | None]:
        return {}, None

    def before_rerun(self, sweep, jobs) -> None:
        pass  # an attempt still running here is waited for by the core

    def follow_hint(self, sweep) -> None:
        pass

    def run(self, sweep, planned, facts) -> None:
        from rich.text import Text

        from ..display import plain
        from ..execute import Interrupted, Runner, RunDirError
        from ..invocation import console
        from ..records import Status

        opts = self.options
        runner = Runner(self.stash.root, grace=float(sweep.base["stash"]["grace"]))
        devices = DevicePool(visible_devices(opts))

        def one(p) -> None:
            gpus = devices.acquire(opts.gpus_per_job, lambda: runner.stopping) if opts.gpus_per_job else []
            if runner.stopping or gpus is None:
                sweep.update(p.num, status=Status.CANCELLED)
                return
            spec = replace(p.spec, env={**p.spec.env, "CUDA_VISIBLE_DEVICES": ",".join(gpus)}) if gpus else p.spec
            try:
                record = runner.run(spec, facts.pins[spec.tool.name], facts.stash, facts.sha[spec.experiment_file],
                                    on_start=lambda _: sweep.job_started(p.num), watch=facts.watches.get(spec.tool.name),
                                    prepare=sweep.tracking.prepare(p.num) if sweep.tracking else None)
            except RunDirError as err:  # this job's folder cannot be written (a full disk): it did not run
                sweep.update(p.num, status=Status.FAILED, error=str(err))
                console.print(Text.assemble((f"job {p.num} failed to start:", "red"), f" {plain(str(err))}"))
                record = None
            finally:
                devices.release(gpus)
            if record is not None:
                sweep.job_ended(p.num, record)
            status = Status(sweep.jobs[p.num]["status"])
            if opts.fail_fast and not status.ok and not runner.stopping:
                console.print(f"fail_fast: job {p.num} {status}, ending the sweep", highlight=False)
                runner.stop_all(Status.INTERRUPTED)

        workers = opts.max_parallel or os.cpu_count() or 1
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        futures = [pool.submit(one, p) for p in planned]
        try:
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                sweep.tick()
        except BaseException as stop:  # Ctrl-C, or anything that stops the wait: no job goes on without us
            if isinstance(stop, Interrupted):
                console.print(f"\n{stop}: ending every running job", highlight=False)
            runner.stop_all(Status.INTERRUPTED)
            wait(futures)
            raise
        finally:
            pool.shutdown(wait=True)
        for future in futures:  # a job's thread that failed (not the tool: the launcher's own error)
            if future.exception() is not None:
                raise future.exception()

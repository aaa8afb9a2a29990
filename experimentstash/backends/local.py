"""The local backend: the sweep's jobs in a pool of this machine's processes (`hydra/launcher=stash`), and the
options single runs take (its devices)."""

import heapq
import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .. import Interrupted, StashError
from ..records import Status
from .base import Backend, Launch
from .options import LocalOptions


def visible_devices(options: LocalOptions) -> list[str]:
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


class LocalBackend(Backend):
    Options = LocalOptions
    follows_needs = True

    @staticmethod
    def validate(o: LocalOptions) -> None:
        if o.max_parallel is not None and o.max_parallel < 1:
            raise StashError(f"hydra.launcher.max_parallel={o.max_parallel}: give a whole number of at least 1.")
        if o.timeout is not None and o.timeout <= 0:
            raise StashError(f"hydra.launcher.timeout={o.timeout}: give a positive number of seconds (or null).")
        if o.gpus_per_job < 0:
            raise StashError(f"hydra.launcher.gpus_per_job={o.gpus_per_job}: give 0 or more.")

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

    def run(self, launch: Launch) -> None:
        from ..output import console  # rich: imported when a sweep runs, not by a single run

        opts = self.options
        devices = DevicePool(visible_devices(opts))

        def one(job) -> Status:
            gpus = devices.acquire(opts.gpus_per_job, lambda: launch.stopping) if opts.gpus_per_job else []
            if gpus is None:
                launch.cancelled(job.num)
                return Status.CANCELLED
            try:
                status = launch.run(job, {"CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else None)
            finally:
                devices.release(gpus)
            if opts.fail_fast and not status.ok and not launch.stopping:
                console.print(f"fail_fast: job {job.num} {status}, ending the sweep", highlight=False)
                launch.stop()
            return status

        workers = opts.max_parallel or os.cpu_count() or 1
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        order = Needs(launch.jobs)
        queue: list = []  # jobs that may start, lowest number first: a chain's next stage before later chains
        futures: dict = {}

        def start(jobs, running: set) -> None:
            """Queue `jobs`; start queued ones while a worker is free (`running`: the futures not seen ended)."""
            for job in jobs:
                heapq.heappush(queue, (job.num, job))
            while queue and len(running) < workers:
                _, job = heapq.heappop(queue)
                future = pool.submit(one, job)
                futures[future] = job.num
                running.add(future)

        try:
            pending: set = set()
            start(order.ready(), pending)
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:  # a job that succeeded lets those that need it start; any other cancels them
                    ok = future.exception() is None and future.result().ok
                    ready, cancelled = order.ended(futures[future], ok)
                    for num in cancelled:
                        launch.cancelled(num, None if launch.stopping else "upstream failed")
                    start(ready, pending)
                launch.tick()
        except BaseException as stop:  # Ctrl-C, or anything that stops the wait: no job goes on without us
            if isinstance(stop, Interrupted):
                console.print(f"\n{stop}: ending every running job", highlight=False)
            launch.stop()
            wait(futures)
            raise
        finally:  # never started: the launch stopped before their turn, or before what they need ended
            for num in sorted([num for num, _ in queue] + order.waiting()):
                launch.cancelled(num)
            pool.shutdown(wait=True)
        for future in futures:  # a job's thread that failed (not the tool: the launcher's own error)
            if future.exception() is not None:
                raise future.exception()


class Needs:
    """Which jobs of a launch may start: those whose needs (Job.needs, within the launch) all succeeded."""

    def __init__(self, jobs):
        self._jobs = {job.num: job for job in jobs}
        self._left = {job.num: set(job.needs) & set(self._jobs) for job in jobs}
        self._after: dict[int, list[int]] = {}
        for job in jobs:
            for need in self._left[job.num]:
                self._after.setdefault(need, []).append(job.num)
        self._open = {num for num, left in self._left.items() if left}  # neither started nor cancelled

    def ready(self) -> list:
        return [job for num, job in self._jobs.items() if not self._left[num]]

    def ended(self, num: int, ok: bool) -> tuple[list, list[int]]:
        """(the jobs that may start now, those cancelled because one they need, directly or not, did not succeed)."""
        ready, cancelled, todo = [], [], [(num, ok)]
        while todo:
            num, ok = todo.pop()
            for after in self._after.get(num, ()):
                if after not in self._open:
                    continue
                if not ok:
                    self._open.discard(after)
                    cancelled.append(after)
                    todo.append((after, False))
                    continue
                self._left[after].discard(num)
                if not self._left[after]:
                    self._open.discard(after)
                    ready.append(self._jobs[after])
        return ready, sorted(cancelled)

    def waiting(self) -> list[int]:
        """The jobs that never started and were never cancelled (the launch stopped before their needs ended)."""
        return sorted(self._open)

"""A sweep on this machine: plan every job, then run them in parallel, each its own subprocess and record."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from . import StashError
from .execute import Interrupted, Runner, raise_on_signals
from .invocation import console, current
from .job import JobSpec, plan_job, split_job
from .pins import apply_policy, inspect_tool, stash_state
from .record import FINAL, RUN_FILE, SWEEP_FILE, SWEEP_SCHEMA, now_iso, read_json, sha256, write_text
from .registry import Stash
from .report import Progress, print_summary

@dataclass(frozen=True)
class LaunchOptions:
    max_parallel: int
    fail_fast: bool = False
    timeout: float | None = None
    gpus: tuple[str, ...] = ()
    gpus_per_job: int = 0

    @classmethod
    def from_config(cls, options: dict) -> "LaunchOptions":
        max_parallel = options.get("max_parallel")
        max_parallel = (os.cpu_count() or 1) if max_parallel is None else max_parallel
        if not isinstance(max_parallel, int) or max_parallel < 1:
            raise StashError(f"hydra.launcher.max_parallel={max_parallel}: give a whole number of at least 1.")
        timeout = options.get("timeout")
        if timeout is not None and timeout <= 0:
            raise StashError(f"hydra.launcher.timeout={timeout}: give a positive number of seconds (or null).")
        per_job = options.get("gpus_per_job") or 0
        if per_job < 0:
            raise StashError(f"hydra.launcher.gpus_per_job={per_job}: give 0 or more.")
        gpus = options.get("gpus")
        if gpus is None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
            gpus = [g for g in visible.split(",") if g.strip()]
        gpus = tuple(str(g) for g in gpus)
        if per_job > len(gpus):
            raise StashError(
                f"hydra.launcher.gpus_per_job={per_job} but only {len(gpus)} device(s) to share out "
                f"({', '.join(gpus) or 'none'}): set hydra.launcher.gpus=[0,1,...] or CUDA_VISIBLE_DEVICES."
            )
        return cls(max_parallel, bool(options.get("fail_fast")), timeout, gpus, per_job)


class DevicePool:
    """GPU ids handed out to running jobs; a job waits for free devices rather than sharing them."""

    def __init__(self, ids: tuple[str, ...]):
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


def job_dir_name(num: int, tool: str, experiment: str) -> str:
    return f"{num}_{tool}_{experiment.replace('/', '-')}"


class LocalSweep:
    """One sweep dir with its sweep.json; launch() may be called more than once (optimizing sweepers)."""

    backend = "local"

    def __init__(self, stash: Stash, sweep_dir: Path, base: DictConfig, options: dict):
        self.stash = stash
        self.dir = sweep_dir
        self.id = sweep_dir.name
        self.base = base
        self.raw_options = options
        self.options = self.parse_options(options)
        self.jobs: dict[int, dict] = {}  # sweep.json's job entries by number
        self.created_at = now_iso()
        self.command_line = list(current.argv)
        self.reruns: list[dict] = []
        self.results: dict[int, object] = {}  # parsed result file of each job that ran
        self._lines: dict[int, str] = {}  # each job's entry encoded as one JSON line, until it changes
        self._lock = threading.Lock()
        self._dirty = False

    def parse_options(self, options: dict):
        return LaunchOptions.from_config(options)

    def preflight(self) -> None:
        """Checks that need the outside world, made before anything is written."""

    @classmethod
    def create(cls, config: DictConfig, options: dict) -> "LocalSweep":
        stash = Stash.load(current.root)
        plain = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in options.items()}
        # a relative hydra.sweep.dir is relative to where the command was typed, as in Hydra
        return cls(stash, Path(config.hydra.sweep.dir).absolute(), config, plain)

    # --- planning -------------------------------------------------------------------------------------------
    def plan(self, numbered) -> list[tuple[JobSpec, dict, list[str]]]:
        """Plan every (job number, override list) before anything starts; the first bad job stops them all."""
        extra = [] if current.tool_overrides_expanded else current.tool_overrides
        planned, prepared = [], {}
        for num, words in numbered:
            words = [*words, *extra]
            try:
                tool, experiment, options, tool_words = split_job(words, self.base)
                run_dir = self.dir / job_dir_name(num, str(tool), str(experiment))
                timeout = options["timeout"] if options["timeout"] is not None else getattr(self.options, "timeout", None)
                spec = plan_job(self.stash, tool, experiment, tool_words, run_dir, f"{self.id}_{num}",
                                timeout=timeout, sweep={"id": self.id, "num": num}, prepared=prepared)
            except StashError as err:
                raise StashError(f"Job {num} ({' '.join(words)}): {err} Nothing was started.") from None
            planned.append((spec, options, words))
        return planned

    def _inspect(self, planned) -> dict:
        """Pins once per tool per sweep; the pin policy may refuse the whole sweep before anything starts."""
        facts = {"stash": stash_state(self.stash.root), "pins": {}, "sha": {}}
        for spec, options, _ in planned:
            first = spec.tool.name not in facts["pins"]
            if first:
                facts["pins"][spec.tool.name] = inspect_tool(self.stash.root, spec.tool)
            warning = apply_policy(spec.tool, facts["pins"][spec.tool.name], options["pin"])  # per job: its policy
            if warning and first:  # warned once per tool
                console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
            if spec.experiment_file not in facts["sha"]:
                facts["sha"][spec.experiment_file] = sha256(spec.experiment_file)
        return facts

    # --- sweep.json -----------------------------------------------------------------------------------------
    def _entry(self, spec: JobSpec, words: list[str]) -> dict:
        return {
            "num": spec.sweep["num"], "tool": spec.tool.name, "experiment": spec.experiment,
            "overrides": list(spec.overrides), "run_dir": os.path.relpath(spec.run_dir, self.stash.root),
            "status": "pending", "exit_code": None, "duration_s": None, "slurm_job_id": None,
            "launch_overrides": list(words),  # what `rerun` replays
        }

    def update(self, num: int, **fields) -> None:
        with self._lock:
            self.jobs[num].update(fields)
            self._lines.pop(num, None)
            self._dirty = True

    def write(self, force: bool = False) -> None:
        """sweep.json with one line per job; only the jobs that changed are encoded again, and the lock is
        held for that alone, so job threads never wait for the file (a sweep may have thousands of jobs)."""
        with self._lock:
            if not (self._dirty or force):
                return
            self._dirty = False
            for num, job in self.jobs.items():
                if num not in self._lines:
                    self._lines[num] = json.dumps(job)
            lines = [self._lines[num] for num in sorted(self.jobs)]
        head = json.dumps({
            "schema": SWEEP_SCHEMA, "id": self.id, "created_at": self.created_at, "backend": self.backend,
            "command_line": self.command_line, "launcher": self.raw_options, "reruns": self.reruns,
        }, indent=2)
        write_text(self.dir / SWEEP_FILE, head[:-2] + ',\n  "jobs": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n")

    # --- running --------------------------------------------------------------------------------------------
    def launch(self, job_overrides, first_num: int) -> list[JobReturn]:
        """Hydra's entry: run these jobs, numbered from first_num, and return what each job returns to Hydra."""
        numbered = list(enumerate(job_overrides, start=first_num))
        planned = self.launch_numbered(numbered)
        return [self._job_return(spec, options, words) for spec, options, words in planned]

    def launch_numbered(self, numbered, before_start=None) -> list:
        planned = self.plan(numbered)
        facts = self._inspect(planned)
        self.preflight()
        if before_start:
            before_start(planned)
        self.dir.mkdir(parents=True, exist_ok=True)
        for spec, _, words in planned:
            self.jobs[spec.sweep["num"]] = self._entry(spec, words)
            self._lines.pop(spec.sweep["num"], None)
        self.write(force=True)
        self.run(planned, facts)
        print_summary(self.stash.root, self.dir, [self.jobs[n] for n in sorted(self.jobs)])
        for spec, _, _ in planned:
            status = self.jobs[spec.sweep["num"]]["status"]
            current.worse(1 if status in FINAL and status != "succeeded" else 0)
        return planned

    def run(self, planned, facts) -> None:
        opts = self.options
        runner = Runner(self.stash.root, grace=float(self.base.stash.grace))
        devices = DevicePool(opts.gpus)
        progress = Progress(self.id, len(planned))

        def one(spec: JobSpec) -> None:
            num = spec.sweep["num"]
            gpus = devices.acquire(opts.gpus_per_job, lambda: runner.stopping) if opts.gpus_per_job else []
            if runner.stopping or gpus is None:
                self.update(num, status="cancelled")
                return
            if gpus:
                spec = replace(spec, env={**spec.env, "CUDA_VISIBLE_DEVICES": ",".join(gpus)})
            try:
                record = runner.run(spec, facts["pins"][spec.tool.name], facts["stash"],
                                    facts["sha"][spec.experiment_file],
                                    on_start=lambda _: self.update(num, status="running"))
            finally:
                devices.release(gpus)
            self.results[num] = record["result"]
            self.update(num, status=record["status"], exit_code=record["exit_code"], duration_s=record["duration_s"])
            progress.ended(self.jobs[num], self.stash.root)
            if opts.fail_fast and record["status"] != "succeeded" and not runner.stopping:
                console.print(f"fail_fast: job {num} {record['status']}, ending the sweep", highlight=False)
                runner.stop_all("interrupted")

        restore = raise_on_signals()
        pool = ThreadPoolExecutor(max_workers=opts.max_parallel, thread_name_prefix="job")
        futures = [pool.submit(one, spec) for spec, _, _ in planned]
        signum = None
        try:
            with progress:
                pending = set(futures)
                while pending:
                    _, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                    progress.show(self.jobs.values())
                    self.write()
        except Interrupted as stop:
            signum = stop.signum
            console.print(f"\n{stop}: ending every running job", highlight=False)
            runner.stop_all("interrupted")
            wait(futures)
        finally:
            pool.shutdown(wait=True)
            restore()
            self.write(force=True)
            for future in futures:
                if future.exception() is not None and not isinstance(future.exception(), Interrupted):
                    raise future.exception()
        if signum is not None:
            print_summary(self.stash.root, self.dir, [self.jobs[n] for n in sorted(self.jobs)])
            raise SystemExit(128 + signum)

    def _job_return(self, spec: JobSpec, options: dict, words) -> JobReturn:
        ret = JobReturn(overrides=list(words), working_dir=str(spec.run_dir), task_name=spec.tool.name)
        status = self.jobs[spec.sweep["num"]]["status"]
        if status not in FINAL:  # submitted, not waited for
            ret.status = JobStatus.COMPLETED
            return ret
        if status != "succeeded":
            ret.status = JobStatus.FAILED
            ret.return_value = RuntimeError(f"job {spec.sweep['num']} {status}: see {spec.run_dir}/stderr.log")
            return ret
        ret.status = JobStatus.COMPLETED
        ret.return_value = _objective(self.results.get(spec.sweep["num"]), options.get("objective"), spec)
        if isinstance(ret.return_value, Exception):
            ret.status = JobStatus.FAILED
        return ret


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


def read_sweep(sweep_dir: Path) -> dict:
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        raise StashError(f"{sweep_dir} is not a sweep dir: it holds no {SWEEP_FILE}. Give a folder under multirun/.")
    data = read_json(path)
    if data.get("schema", 0) > SWEEP_SCHEMA:
        raise StashError(f"{path} has schema {data['schema']}, newer than this experimentstash reads ({SWEEP_SCHEMA}).")
    return data


def sweep_class(backend: str):
    if backend == "slurm":
        from .slurm import SlurmSweep

        return SlurmSweep
    return LocalSweep


def base_config() -> DictConfig:
    """The launcher's defaults (tool, experiment, stash.*) without Hydra, for replaying recorded jobs."""
    cfg = OmegaConf.load(Path(__file__).parent / "conf" / "stash.yaml")
    return OmegaConf.create({"tool": cfg.tool, "experiment": cfg.experiment, "stash": cfg.stash})


def rerun(root: Path, sweep_dir: Path) -> int:
    """Re-launch the jobs of a sweep that did not succeed, into the same sweep dir, with the same overrides."""
    data = read_sweep(sweep_dir)
    data["jobs"] = refresh_statuses(root, data)  # sweep.json may be behind if its launcher was killed
    todo = [job for job in data["jobs"] if job["status"] != "succeeded"]
    still = [str(job["num"]) for job in todo if job["status"] == "running"]
    if still:
        console.print(f"warning: job(s) {', '.join(still)} were recorded as running: their launcher ended "
                      "without finishing them, so they run again.", highlight=False)
    stash = Stash.load(root)
    sweep = sweep_class(data["backend"])(stash, sweep_dir, base_config(), data["launcher"])
    sweep.id, sweep.created_at, sweep.command_line = data["id"], data["created_at"], data["command_line"]
    sweep.jobs = {job["num"]: job for job in data["jobs"]}
    sweep.reruns = [*data.get("reruns", []), {"at": now_iso(), "jobs": [job["num"] for job in todo]}]
    if not todo:
        console.print(f"Every job of {sweep_dir.name} succeeded: nothing to rerun.", highlight=False)
        return 0
    current.tool_overrides_expanded = True  # the recorded overrides hold the tool's already

    def keep_earlier_attempts(planned):
        for spec, _, _ in planned:
            attempt = 1
            while spec.run_dir.with_name(f"{spec.run_dir.name}.attempt{attempt}").exists():
                attempt += 1
            if spec.run_dir.exists():
                spec.run_dir.rename(spec.run_dir.with_name(f"{spec.run_dir.name}.attempt{attempt}"))

    sweep.launch_numbered([(job["num"], job["launch_overrides"]) for job in todo], keep_earlier_attempts)
    return current.exit_code


def refresh_statuses(root: Path, data: dict) -> list[dict]:
    """sweep.json's jobs, each brought up to date from its run.json (true even if the launcher was killed)."""
    jobs = []
    for job in data["jobs"]:
        run_file = root / job["run_dir"] / RUN_FILE
        if run_file.is_file():
            record = read_json(run_file)
            job = {**job, "status": record["status"], "exit_code": record["exit_code"],
                   "duration_s": record["duration_s"]}
        jobs.append(job)
    return jobs

"""One run of one job: its record at the start (status running), its run dir, its tool run by the Runner
(launch/supervise.py), and its record at the end, which is always final."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..backends.base import Job
from ..owner import owner
from ..pins import StashState, ToolPin
from ..records import (EXPERIMENT_COPY, PATCH_FILE, RUN_FILE, BadRecord, Reserve, RunDirError, RunRecord, Status,
                       now_iso, read_limited, recorded_path, redact, write_run)
from ..results import run_outputs
from .plan import JobSpec
from .supervise import Runner, append


def exit_code_for(status: Status, code: int | None, signum: int | None = None) -> int:
    """The launcher's exit code for one run, shell style (128 + signal for a killed process)."""
    if status == Status.TIMEOUT:
        return 124
    if status == Status.INTERRUPTED:
        return 128 + (signum or signal.SIGINT)
    if status.ok:
        return 0
    if code is None:
        return 1
    return 128 - code if code < 0 else code


def env_record(spec: JobSpec) -> dict:
    interp = spec.interpreter
    record = {"kind": interp.kind, "python": None, "executable": interp.executable,
              "lock_file": None, "lock_sha256": None}
    if interp.kind == "current":
        record["python"] = platform.python_version()
    elif interp.kind == "python":
        record["python"] = interp.version()
    else:
        venv = Path(spec.env.get("UV_PROJECT_ENVIRONMENT") or spec.tool.path / ".venv")
        record["uv"] = interp.executable
        record["executable"], record["python"] = _venv_python(venv)
    if interp.lock_file is not None:
        record["lock_file"] = os.path.relpath(interp.lock_file, spec.tool.path)
        record["lock_sha256"] = interp.lock_sha256()
    record["variables"] = {k: redact(v) for k, v in spec.env.items()}  # the tool gets them whole, records never
    return record


def _venv_python(venv: Path) -> tuple[str | None, str | None]:
    cfg = venv / "pyvenv.cfg"
    version = None
    try:
        text = read_limited(cfg, 1 << 16, follow=True).decode(errors="replace")
    except BadRecord:
        text = ""
    if text:
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version_info", "version"):
                version = value.strip()
    python = venv / "bin" / "python"
    return (str(python) if python.exists() else None), version


def start_record(spec: JobSpec, root: Path, pin: ToolPin, stash: StashState, experiment_sha: str) -> RunRecord:
    """The record of a run at its start (status running)."""
    return RunRecord(
        id=spec.id, status=Status.RUNNING, tool=spec.tool.name, experiment=spec.experiment,
        experiment_file=spec.experiment_file.relative_to(root).as_posix()
        if spec.experiment_file.is_relative_to(root) else spec.experiment_file.name,
        experiment_sha256=experiment_sha, overrides=list(spec.overrides),
        tool_commit=pin.commit, tool_pinned_commit=pin.pinned, tool_kind=pin.kind, tool_dirty=pin.dirty,
        tool_diff=PATCH_FILE if pin.patch else None, tool_untracked=list(pin.untracked),
        stash_commit=stash.commit, stash_dirty=stash.dirty, env=env_record(spec),
        command=[redact(word) for word in spec.argv],  # the tool gets them whole, records never
        cwd=recorded_path(root, spec.cwd), run_dir=recorded_path(root, spec.run_dir),
        host=socket.gethostname(), started_at=now_iso(), logs={"stdout": "stdout.log", "stderr": "stderr.log"},
        sweep=spec.sweep, owner=owner(), fingerprint=spec.fingerprint.digest if spec.fingerprint else None,
        fingerprint_parts=spec.fingerprint.parts if spec.fingerprint else None, launcher=spec.launcher,
        **(spec.stage or {}),
    )


def prepare_run_dir(root: Path, spec: JobSpec, pin: ToolPin, record: RunRecord) -> Reserve:
    """The run dir with the experiment's copy, tool.diff, the running record and the space reserve; all or nothing."""
    try:
        spec.run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise RunDirError(f"{spec.run_dir} exists already: a run dir is never reused.") from None
    except OSError as err:
        raise RunDirError(f"Cannot create the run dir {spec.run_dir}: {err.strerror}. "
                          "Make the folder writable (or free space) and run again.") from None
    try:
        reserve = Reserve(spec.run_dir)
        shutil.copyfile(spec.experiment_file, spec.run_dir / EXPERIMENT_COPY)  # what `reproduce` runs again
        if pin.patch:
            (spec.run_dir / PATCH_FILE).write_bytes(pin.patch)
        write_run(root, spec.run_dir, record)
        return reserve
    except OSError as err:
        shutil.rmtree(spec.run_dir, ignore_errors=True)
        raise RunDirError(f"Cannot write the run dir {spec.run_dir}: {err.strerror}. "
                          "Free space or make it writable and run again; nothing was run.") from None


def run_job(runner: Runner, root: Path, spec: JobSpec, pin: ToolPin, stash: StashState, experiment_sha: str, *,
            stream: bool = False, on_start=None, extra: dict | None = None, watch=None,
            prepare=None) -> RunRecord | None:
    """Run one job to its end with `runner` and return its final record (also in run_dir/run.json); None, with no
    run dir made, when the runner is stopping (Ctrl-C, fail-fast) before the job started.

    `on_start()` is called once its tool runs; `extra` adds fields to the record (a Slurm task's job id and node,
    what a reproduction reproduces); `watch` (pins.CheckoutWatch) records the files the run wrote into the tool's
    checkout; `prepare(record)`, called with the record of the run's start just before its run dir is written,
    returns variables to add to the tool's environment (a tracker's run, made with the run's own start time).
    RunDirError when the run dir cannot be written: nothing was started."""
    if runner.stopping:
        return None
    record = start_record(spec, root, pin, stash, experiment_sha)
    for key, value in (extra or {}).items():
        if key in RunRecord.__dataclass_fields__ and key != "extra":
            setattr(record, key, value)
        else:
            record.extra[key] = value
    added = prepare(record) if prepare else None
    if added:
        spec = replace(spec, env={**spec.env, **added})
        record.env["variables"].update({k: redact(v) for k, v in added.items()})
    reserve = prepare_run_dir(root, spec, pin, record)
    start = time.monotonic()
    try:
        # unbuffered: a write that fails (a full disk) fails at once, never later at close()
        out = open(spec.run_dir / "stdout.log", "wb", buffering=0)
        err = open(spec.run_dir / "stderr.log", "wb", buffering=0)
    except OSError as error:
        reserve.release()
        return _finish(root, spec, record, Status.FAILED, None, start, note=f"cannot open the logs: {error}")
    with out, err:
        done = runner.execute(spec.argv, spec.cwd, {**os.environ, **spec.env}, out, err, run_id=spec.id,
                              timeout=spec.timeout, stream=stream, on_start=on_start and (lambda: on_start(record)))
    if done is None or done.code is None:
        reserve.release()
        if done is None:  # stopped between its run dir and its start
            return _finish(root, spec, record, Status.INTERRUPTED, None, start)
        return _finish(root, spec, record, Status.FAILED, None, start, note=done.error)
    record.resources = done.resources
    if watch is not None:
        record.tool_touched = watch.after_run()
    reserve.release()
    done.save_lost_tails()
    status = done.reason or (Status.SUCCEEDED if done.code == 0 else Status.FAILED)
    note = f"the disk was full: {done.lost} bytes of output could not be written to the logs" if done.lost else None
    return _finish(root, spec, record, status, done.code, start, done.ended, note=note)


def _finish(root: Path, spec: JobSpec, record: RunRecord, status: Status, code: int | None, start: float,
            ended: float | None = None, note: str | None = None) -> RunRecord:
    record.status = status
    record.exit_code = code
    record.ended_at = now_iso()
    record.duration_s = round((ended or time.monotonic()) - start, 3)
    outputs = run_outputs(spec.run_dir, spec.tool.result, spec.tool.history)
    record.result, record.history = outputs["result"], outputs["history"]
    if note:
        append(spec.run_dir / "stderr.log", f"experimentstash: {note}\n".encode())
    note = "; ".join(filter(None, [note, outputs.get("note")]))  # the files' notes: in the record only
    if note:
        record.extra["note"] = note
    if spec.interpreter.kind == "uv":  # uv may have created the environment during the run
        record.env = env_record(spec)
    try:
        write_run(root, spec.run_dir, record)
    except OSError as err:
        # the record on disk still says running; the owner (this process) ends, so readers show it as lost
        print(f"experimentstash: cannot write the final record {spec.run_dir / RUN_FILE}: {err.strerror}",
              file=sys.stderr)
    return record


class PlannedJob(Job):
    """A job of a launch as its backend gets it (backends/base.py Job): its run carries the tool's pin, the stash's
    state, the experiment's sha256, the watch on the tool's checkout and its tracker run. In the launching process
    its tool runs under the launch's Runner (Ctrl-C and fail-fast end it with the others); pickled and run
    elsewhere (a Slurm task), under a Runner of its own."""

    def __init__(self, num: int, spec: JobSpec, root: Path, pin: ToolPin, state: StashState, sha: str, grace: float,
                 watch=None, tracking=None, runner: Runner | None = None, distributed: str | None = None):
        self.num, self.spec, self.run_dir = num, spec, spec.run_dir
        self.distributed = distributed
        self.root, self.pin, self.state, self.sha, self.grace, self.watch = root, pin, state, sha, grace, watch
        self._prepare = tracking.prepare(num) if tracking else None  # its MLflow run, made as its tool starts
        self._child = tracking.child(num) if tracking else None  # the same, as plain data for elsewhere
        self._runner = runner

    def __getstate__(self) -> dict:
        """What crosses to another machine: no Runner, no launch-bound tracker hook (the plain child run goes)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_runner", "_prepare")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _runner=None, _prepare=None)

    def run(self, on_start=None, *, env=None, extra=None, ignore_signals=()) -> RunRecord | None:
        return self._run(on_start, env, extra, ignore_signals, self.watch)

    def run_unwatched(self, on_start=None, env=None) -> RunRecord | None:
        """run(), leaving the look at the tool's checkout to the sweep core, which makes one for many jobs."""
        return self._run(on_start, env, None, (), None)

    def _run(self, on_start, env, extra, ignore_signals, watch) -> RunRecord | None:
        if self._runner is None:
            self._runner = Runner(self.grace, ignore_signals)
        prepare = self._prepare
        if prepare is None and self._child is not None:
            from .trackers import prepare_elsewhere

            prepare = prepare_elsewhere(self._child)
        spec = replace(self.spec, env={**self.spec.env, **env}) if env else self.spec
        return run_job(self._runner, self.root, spec, self.pin, self.state, self.sha, extra=extra, watch=watch,
                       prepare=prepare, on_start=on_start and (lambda _record: on_start()))

    def stop(self, reason: Status = Status.INTERRUPTED) -> None:
        if self._runner is not None:
            self._runner.stop(self.spec.id, reason)

    def wait(self) -> int | None:
        return self._runner.wait_unreaped(self.spec.id) if self._runner is not None else None

"""Run JobSpecs as subprocesses: own process group, log files, timeout, stop on request."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .job import JobSpec
from .pins import StashState, ToolPin
from .record import EXPERIMENT_COPY, PATCH_FILE, RUN_FILE, env_record, now_iso, read_result, run_record, write_json


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the launcher."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill, a closed terminal or ssh


def raise_on_signals():
    """Turn STOP_SIGNALS into Interrupted in the main thread; returns a function restoring the old handlers."""

    def handler(signum, _frame):
        # a second signal during the clean-up must not cut it short
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    return lambda: [signal.signal(s, h) for s, h in old.items()]


def run_in_foreground(runner: "Runner", job) -> tuple[dict, int | None]:
    """Run `job()` (a Runner.run call) in a thread; Ctrl-C or SIGTERM ends it through the runner.

    Returns (the job's record, or {} when it did not get to start; the signal that stopped it, or None)."""
    outcome: dict = {}
    done = threading.Event()  # not Thread.join: a join cut short by a signal may return before the thread ends

    def run() -> None:
        try:
            outcome.update(job())
        finally:
            done.set()

    restore = raise_on_signals()
    signum = None
    try:
        threading.Thread(target=run, daemon=True).start()
        done.wait()
    except Interrupted as stop:
        signum = stop.signum
        runner.stop_all()
        done.wait()
    finally:
        restore()
    return outcome, signum


def exit_code_for(status: str, code: int | None, signum: int | None = None) -> int:
    """The launcher's exit code for one run, shell style (128 + signal for a killed process)."""
    if status == "timeout":
        return 124
    if status == "interrupted":
        return 128 + (signum or signal.SIGINT)
    if code is None:
        return 1
    return 128 - code if code < 0 else code


class Runner:
    """Starts jobs in their own process groups and can end them all (TERM, then KILL after `grace` seconds)."""

    def __init__(self, root: Path, grace: float = 5.0, ignore_signals: tuple[int, ...] = ()):
        self.root = root
        self.grace = grace
        # signals the tools start with ignored (on Slurm: submitit's preemption signal, not meant for the tool)
        self.ignore_signals = ignore_signals
        self.stopping = False
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen] = {}
        self._reasons: dict[int, str] = {}

    def _end_group(self, proc: subprocess.Popen, reason: str) -> None:
        with self._lock:
            if proc.pid not in self._procs or proc.pid in self._reasons:
                return
            self._reasons[proc.pid] = reason
        _signal_group(proc.pid, signal.SIGTERM)
        timer = threading.Timer(self.grace, _signal_group, (proc.pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    def _ignore_signals(self) -> None:
        for sig in self.ignore_signals:
            signal.signal(sig, signal.SIG_IGN)

    def pids(self) -> list[int]:
        with self._lock:
            return list(self._procs)

    def stop_all(self, reason: str = "interrupted") -> None:
        """End every running job and start no new one; returns once all have ended or been killed."""
        with self._lock:
            self.stopping = True
            procs = list(self._procs.values())
        for proc in procs:
            self._end_group(proc, reason)
        deadline = time.monotonic() + self.grace + 1
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.02)

    def run(self, spec: JobSpec, pin: ToolPin, stash: StashState, experiment_sha: str, *, stream: bool = False,
            on_start=None, extra: dict | None = None) -> dict:
        """Run one job to its end and return its final record (also in run_dir/run.json).

        `extra` adds fields to the record (a Slurm task's job id and node)."""
        spec.run_dir.mkdir(parents=True, exist_ok=False)
        shutil.copyfile(spec.experiment_file, spec.run_dir / EXPERIMENT_COPY)  # what `reproduce` runs again
        if pin.patch:
            (spec.run_dir / PATCH_FILE).write_bytes(pin.patch)
        record = {**run_record(spec, self.root, pin, stash, experiment_sha), **(extra or {})}
        write_json(spec.run_dir / RUN_FILE, record)
        start = time.monotonic()
        out_path, err_path = spec.run_dir / "stdout.log", spec.run_dir / "stderr.log"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            with self._lock:
                proc = None
                if not self.stopping:
                    try:
                        proc = subprocess.Popen(
                            spec.argv, cwd=spec.cwd, env={**os.environ, **spec.env},
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if stream else out,
                            stderr=subprocess.PIPE if stream else err,
                            start_new_session=True,  # own process group: ended as a whole
                            preexec_fn=self._ignore_signals if self.ignore_signals else None,
                        )
                    except OSError as error:  # the interpreter cannot be started: the job failed, say why
                        err.write(f"experimentstash: cannot start {spec.argv[0]}: {error}\n".encode())
                        return self._finish(spec, record, "failed", None, start)
                    self._procs[proc.pid] = proc
            if proc is None:
                return self._finish(spec, record, "interrupted", None, start)
            if on_start:
                on_start(record)
            tees = [_tee(proc.stdout, out, sys.stdout), _tee(proc.stderr, err, sys.stderr)] if stream else []
            timer = None
            if spec.timeout:
                timer = threading.Timer(spec.timeout, self._end_group, (proc, "timeout"))
                timer.daemon = True
                timer.start()
            code = proc.wait()
            ended = time.monotonic()
            if timer:
                timer.cancel()
            with self._lock:
                reason = self._reasons.pop(proc.pid, None)
                del self._procs[proc.pid]
            # nothing the job started may outlive it (nor hold its output open)
            _end_leftovers(proc.pid, 0 if reason else min(self.grace, 2.0))
            for tee in tees:
                tee.join(timeout=10)
        status = reason or ("succeeded" if code == 0 else "failed")
        return self._finish(spec, record, status, code, start, ended)

    def _finish(self, spec: JobSpec, record: dict, status: str, code: int | None, start: float,
                ended: float | None = None) -> dict:
        record.update(
            status=status,
            exit_code=code,
            ended_at=now_iso(),
            duration_s=round((ended or time.monotonic()) - start, 3),
            result=read_result(spec),
        )
        if spec.interpreter.kind == "uv":  # uv may have created the environment during the run
            record["env"] = env_record(spec)
        write_json(spec.run_dir / RUN_FILE, record)
        return record


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _end_leftovers(pgid: int, grace: float) -> None:
    """End what is left of a finished job's process group: TERM, then KILL after `grace` seconds."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return  # the group is gone: the usual case
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


def _tee(pipe, log, terminal) -> threading.Thread:
    """Copy a child's output to its log file and to the terminal as it comes."""
    sink = getattr(terminal, "buffer", terminal)

    def copy():
        for chunk in iter(lambda: pipe.read1(65536), b""):
            log.write(chunk)
            log.flush()
            sink.write(chunk)
            sink.flush()
        pipe.close()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


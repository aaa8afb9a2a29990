"""Run JobSpecs as subprocesses: own process group, log files, timeout, stop on request, a record that ends final.

What can go wrong around a run and what the Runner does about it:
- the launcher's stdout or stderr is closed, full or slow: the terminal copy is dropped, the logs get every byte;
- the disk fills: the tool's output is still read (the tool never blocks on it), the last lines of its stderr
  are kept in memory, and the space reserved at the start is given back for the final record and those lines;
- the tool leaves processes behind, in its group or outside it (setsid): they are ended when the run ends.
"""

from __future__ import annotations

import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from . import StashError
from .job import JobSpec
from .pins import StashState, ToolPin
from .procs import RUN_ID_VARIABLE, STOP_SIGNALS, owner, run_processes, terminate
from .records import (EXPERIMENT_COPY, MAX_RESULT_BYTES, PATCH_FILE, RUN_FILE, BadRecord, Missing, Reserve,
                      RunRecord, Status, now_iso, open_regular, read_json, read_limited, recorded_path, redact, write_run)

TAIL_BYTES = 16 * 1024  # of stderr, kept in memory for when the log cannot take it


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP reached the launcher."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_on_signals():
    """Turn STOP_SIGNALS into Interrupted in the main thread, once; returns a function restoring the old handlers."""
    once = threading.Lock()

    def handler(signum, _frame):
        if not once.acquire(blocking=False):
            return  # the same stop twice (the terminal's and the keeper's copy): one clean-up
        for sig in STOP_SIGNALS:  # a second signal during the clean-up must not cut it short
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    return lambda: [signal.signal(s, h) for s, h in old.items()]


def run_in_foreground(runner: "Runner", job) -> tuple[RunRecord | None, int | None]:
    """Run `job()` (a Runner.run call) in a thread; Ctrl-C or SIGTERM ends it through the runner.

    Returns (the job's record, or None when it did not get to start; the signal that stopped it, or None)."""
    outcome: list = []
    errors: list = []
    done = threading.Event()  # not Thread.join: a join cut short by a signal may return before the thread ends

    def run() -> None:
        try:
            outcome.append(job())
        except BaseException as err:  # shown in the main thread (a StashError: exit 2)
            errors.append(err)
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
    if errors:
        raise errors[0]
    return (outcome[0] if outcome else None), signum


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
        fingerprint_parts=spec.fingerprint.parts if spec.fingerprint else None,
    )


class RunDirError(StashError):
    """The run dir or its first files cannot be written: nothing ran."""


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
        self._reasons: dict[int, Status] = {}

    def _end_group(self, proc: subprocess.Popen, reason: Status) -> None:
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

    def stop_all(self, reason: Status = Status.INTERRUPTED) -> None:
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
            on_start=None, extra: dict | None = None, watch=None, prepare=None) -> RunRecord:
        """Run one job to its end and return its final record (also in run_dir/run.json).

        `extra` adds fields to the record (a Slurm task's job id and node, what a reproduction reproduces);
        `watch` (pins.CheckoutWatch) records the files the run wrote into the tool's checkout; `prepare(record)`,
        called with the record of the run's start just before its run dir is written, returns variables to add
        to the tool's environment (a tracker's run, made with the run's own start time).
        RunDirError when the run dir cannot be written: nothing was started."""
        record = start_record(spec, self.root, pin, stash, experiment_sha)
        for key, value in (extra or {}).items():
            if key in RunRecord.__dataclass_fields__ and key != "extra":
                setattr(record, key, value)
            else:
                record.extra[key] = value
        added = prepare(record) if prepare else None
        if added:
            spec = replace(spec, env={**spec.env, **added})
            record.env["variables"].update({k: redact(v) for k, v in added.items()})
        reserve = prepare_run_dir(self.root, spec, pin, record)
        env = {**os.environ, **spec.env, RUN_ID_VARIABLE: spec.id}
        start = time.monotonic()
        try:
            # unbuffered: a write that fails (a full disk) fails at once, never later at close()
            out = open(spec.run_dir / "stdout.log", "wb", buffering=0)
            err = open(spec.run_dir / "stderr.log", "wb", buffering=0)
        except OSError as error:
            reserve.release()
            return self._finish(spec, record, Status.FAILED, None, start, note=f"cannot open the logs: {error}")
        with out, err:
            with self._lock:
                proc = None
                if not self.stopping:
                    try:
                        proc = subprocess.Popen(
                            spec.argv, cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if stream else out, stderr=subprocess.PIPE,
                            start_new_session=True,  # own process group: ended as a whole
                            preexec_fn=self._ignore_signals if self.ignore_signals else None,
                        )
                    except (OSError, ValueError) as error:  # cannot be started (ValueError: a NUL in an
                        # argument): the job failed, say why
                        reserve.release()
                        return self._finish(spec, record, Status.FAILED, None, start,
                                            note=f"cannot start {spec.argv[0]}: {error}")
                    self._procs[proc.pid] = proc
            if proc is None:
                reserve.release()
                return self._finish(spec, record, Status.INTERRUPTED, None, start)
            if on_start:
                on_start(record)
            copies = [Copy(proc.stderr, err, sys.stderr if stream else None)]
            if stream:
                copies.append(Copy(proc.stdout, out, sys.stdout))
            timer = None
            if spec.timeout:
                timer = threading.Timer(spec.timeout, self._end_group, (proc, Status.TIMEOUT))
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
            self._end_leftovers(proc.pid, spec.id, 0 if reason else min(self.grace, 2.0))
            for copy in copies:
                copy.join()
        if watch is not None:
            record.tool_touched = watch.after_run()
        reserve.release()
        for copy in copies:
            copy.save_lost_tail()
        status = reason or (Status.SUCCEEDED if code == 0 else Status.FAILED)
        lost = sum(c.unsaved for c in copies)
        note = f"the disk was full: {lost} bytes of output could not be written to the logs" if lost else None
        return self._finish(spec, record, status, code, start, ended, note=note)

    def _end_leftovers(self, pgid: int, run_id: str, grace: float) -> None:
        """End what is left of a finished job: its process group, and processes that left it but carry its id."""
        left = _group_alive(pgid)
        if left:
            _signal_group(pgid, signal.SIGTERM)
        others = run_processes(run_id)
        if others:
            terminate(others, grace)
        if left:
            deadline = time.monotonic() + grace
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            _signal_group(pgid, signal.SIGKILL)

    def _finish(self, spec: JobSpec, record: RunRecord, status: Status, code: int | None, start: float,
                ended: float | None = None, note: str | None = None) -> RunRecord:
        record.status = status
        record.exit_code = code
        record.ended_at = now_iso()
        record.duration_s = round((ended or time.monotonic()) - start, 3)
        record.result = read_result(spec)
        if note:
            record.extra["note"] = note
            _append(spec.run_dir / "stderr.log", f"experimentstash: {note}\n".encode())
        if spec.interpreter.kind == "uv":  # uv may have created the environment during the run
            record.env = env_record(spec)
        try:
            write_run(self.root, spec.run_dir, record)
        except OSError as err:
            # the record on disk still says running; the owner (this process) ends, so readers show it as lost
            print(f"experimentstash: cannot write the final record {spec.run_dir / RUN_FILE}: {err.strerror}",
                  file=sys.stderr)
        return record


def read_result(spec: JobSpec):
    """The tool's result file (meta.yaml `result:`) parsed, or None when absent, unreadable or outside the run dir."""
    if not spec.tool.result:
        return None
    path = (spec.run_dir / spec.tool.result).resolve()
    if not path.is_relative_to(spec.run_dir.resolve()):
        return None  # a link out of the run dir: not this run's result
    try:
        return read_json(path, MAX_RESULT_BYTES)
    except BadRecord:
        return None


class Copy:
    """Copy a child's output to its log file, and to the terminal when there is one, as it comes.

    The log and the terminal never hold each other up: the terminal gets its copy through a bounded queue on a
    thread of its own, and a closed or stuck terminal only loses its copy. A log that cannot be written (a full
    disk) keeps the last TAIL_BYTES in memory, for save_lost_tail()."""

    def __init__(self, pipe, log, terminal):
        self.pipe, self.log = pipe, log
        self.unsaved = 0
        self._failed = False
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._screen = Screen(terminal) if terminal is not None else None
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        for chunk in iter(lambda: self.pipe.read1(65536), b""):
            if self._screen:
                self._screen.put(chunk)
            if not self._failed:
                chunk = self._write(chunk)
                if not chunk:
                    continue
            self.unsaved += len(chunk)
            self._keep(chunk)
        self.pipe.close()
        if self._screen:
            self._screen.close()

    def _write(self, chunk: bytes) -> bytes:
        """Write to the log; what could not be written (a full disk) is returned."""
        view = memoryview(chunk)
        try:
            while view:
                view = view[self.log.write(view):]
        except OSError:
            self._failed = True
        return bytes(view)

    def _keep(self, chunk: bytes) -> None:
        self._tail.append(chunk)
        self._tail_size += len(chunk)
        while self._tail_size - len(self._tail[0]) >= TAIL_BYTES:
            self._tail_size -= len(self._tail.popleft())

    def join(self) -> None:
        self._thread.join(timeout=10)
        if self._screen:
            self._screen.join()

    def save_lost_tail(self) -> None:
        """After the reserve is given back: the last lines the log could not take, so the tool's message is kept."""
        if self._tail:
            data = b"".join(self._tail)[-TAIL_BYTES:]
            _append(Path(self.log.name), b"\n[experimentstash: output lost to a full disk; its last part:]\n" + data)


class Screen:
    """The terminal copy of one stream: a thread writes it; a full queue or a write error drops it, nothing waits."""

    def __init__(self, terminal):
        self.sink = getattr(terminal, "buffer", terminal)
        self.queue: queue.Queue = queue.Queue(maxsize=256)
        self.broken = False
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def put(self, chunk: bytes) -> None:
        if not self.broken:
            try:
                self.queue.put_nowait(chunk)
            except queue.Full:
                pass  # a slow terminal loses lines, never the tool's time

    def close(self) -> None:
        try:
            self.queue.put(None, timeout=1)
        except queue.Full:
            self.broken = True

    def _write(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.broken:
                continue
            try:
                self.sink.write(chunk)
                self.sink.flush()
            except (OSError, ValueError):  # closed (a pipe into `head`), or gone
                self.broken = True

    def join(self) -> None:
        self.thread.join(timeout=5)  # a stuck terminal: the launcher goes on without it


def _append(path: Path, data: bytes) -> None:
    try:
        with open(path, "ab") as f:
            f.write(data)
    except OSError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def tail(path: Path, lines: int = 10) -> str:
    """The last lines of a log (a regular file of the run dir: a FIFO or a link there is not read)."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except Missing:
        return ""
    except BadRecord as err:
        return f"({path.name} {err.reason}: not shown)"
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])

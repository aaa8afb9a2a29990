"""The one owner of the processes a launch starts: each job's tool in its own process group with its logs, its
timeout, ending them all on request (Ctrl-C, fail-fast, preemption), ending what a finished job left behind, and
the keeper. Nothing else in the package starts, signals or waits for a tool's process.

Linux gives two tools for "nothing a run starts outlives it, nothing outlives the launcher":
- the keeper: the process you start forks the launcher and stays as its parent, marked as the child subreaper
  (PR_SET_CHILD_SUBREAPER): every process the tools leave behind (a double fork, a `setsid` daemon) is
  re-parented to it instead of to init; it reaps them and tells the launcher's sampler what each used
  (launch/resources.py). The launcher gets the keeper's death as SIGTERM (PR_SET_PDEATHSIG), so a
  `kill -9` of the pid you started ends the runs cleanly; a `kill -9` of the launcher itself leaves the keeper,
  which ends every process below it.
- every tool starts with EXPERIMENTSTASH_RUN_ID=<run id> in its environment, which its children inherit: when the
  run ends, the processes below the keeper that carry it are ended too, even when they left its process group.
Elsewhere (macOS) runs are ended through their process group only.

What can go wrong around a run and what the Runner does about it:
- the launcher's stdout or stderr is closed, full or slow: the terminal copy is dropped, the logs get every byte;
- the disk fills: the tool's output is still read (the tool never blocks on it), the last lines of its stderr
  are kept in memory for the caller to save once it has given back its reserved space;
- the tool leaves processes behind, in its group or outside it (setsid): they are ended when the run ends.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .. import Interrupted
from ..owner import LINUX, proc_stat, started
from ..records import Status
from . import resources

RUN_ID_VARIABLE = "EXPERIMENTSTASH_RUN_ID"
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
TAIL_BYTES = 16 * 1024  # of stderr, kept in memory for when the log cannot take it


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# --- signals that stop the launcher ---------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill, a closed terminal or ssh


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


def run_in_foreground(runner: "Runner", job) -> tuple[object, int | None]:
    """Run `job()` (a run of one job with this runner) in a thread; Ctrl-C or SIGTERM ends it through the runner.

    Returns (what job() returned, or None when it did not get to start; the signal that stopped it, or None)."""
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


# --- the keeper -----------------------------------------------------------------------------------------------


_keeper: int | None = None  # the keeper's pid, in the launcher


KEEPER_GRACE = 5.0  # seconds between TERM and KILL for what a dead launcher left


def keep() -> None:
    """Split into keeper (this process, which waits) and launcher (the child, which returns from this call).

    Only on Linux; elsewhere, or when it cannot be set up, the launcher simply goes on in this process."""
    if not LINUX or os.environ.get("EXPERIMENTSTASH_NO_KEEPER"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    keeper = os.getpid()
    reaped, report = os.pipe()  # the keeper tells the launcher's sampler what orphans used (resources.py)
    child = os.fork()
    if child == 0:
        global _keeper
        _keeper = keeper
        os.close(report)
        resources.hear_keeper(reaped)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != keeper:  # the keeper died before the line above
            os.kill(os.getpid(), signal.SIGTERM)
        return
    os.close(reaped)
    os.set_blocking(report, False)  # a report the launcher does not take is dropped: the keeper never waits
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    for sig in STOP_SIGNALS:  # the launcher handles them; Ctrl-C reaches it from the terminal too
        signal.signal(sig, lambda signum, _frame: _forward(child, signum))
    status = _wait_for(child, report)
    end_descendants(os.getpid(), KEEPER_GRACE)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_for(child: int, report: int) -> int:
    """Reap every child (orphans re-parented to us included) until `child` ends; its wait status. Each orphan's
    CPU time (its rusage, with the children it waited for) goes to `report`, with its pid and start, which tell
    the run it belonged to."""
    while True:
        try:
            pid = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT).si_pid
            start = resources.started_at(pid)  # readable until it is reaped
            _, status, rusage = os.wait4(pid, 0)
        except ChildProcessError:
            return 0
        if pid == child:
            return status
        if start is not None:
            try:
                os.write(report, f"{pid} {start} {rusage.ru_utime} {rusage.ru_stime}\n".encode())
            except OSError:
                pass  # the launcher is gone, or does not read: the run keeps the sampled figure


# --- ending what a run left behind ----------------------------------------------------------------------------

def _table() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies left out)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = proc_stat(int(name))
            if fields and fields[0] != "Z":
                parents[int(name)] = int(fields[1])
    return parents


def descendants(root: int, parents: dict[int, int] | None = None) -> list[int]:
    parents = _table() if parents is None else parents
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _carries(pid: int, markers: set[bytes]) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return not markers.isdisjoint(f.read().split(b"\0"))
    except OSError:
        return False


def _children(pid: int) -> list[int] | None:
    """The child processes of `pid` from /proc/<pid>/task/*/children; None where the kernel has no such file."""
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids += map(int, f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None
        except OSError:
            continue
    return kids


def _below(roots: list[int]) -> list[int] | None:
    """Every process below these, walked through the children files (a few reads, not one per process of the
    machine); None where the kernel has no children files."""
    found, todo = [], list(roots)
    while todo:
        kids = _children(todo.pop())
        if kids is None:
            return None
        found += kids
        todo += kids
    return found


def run_processes(run_ids: str | set[str], anywhere: bool = False) -> list[int]:
    """The live processes that carry one of these run ids in their environment: below the keeper, or `anywhere`
    on this machine (what a launcher that died without its keeper left).

    Below the keeper, a finished job's leftovers are orphans it adopted, so only the keeper's children other than
    this launcher are looked at (usually none: one read), not every process of the machine."""
    if not LINUX:
        return []
    if _keeper is None and not anywhere:
        # no keeper: a finished run's leftovers were re-parented away from this process (to init, or an outer
        # subreaper), where only a look at every process finds them; the tools running below it carry other ids
        return []
    markers = {f"{RUN_ID_VARIABLE}={run_id}".encode() for run_id in ({run_ids} if isinstance(run_ids, str) else run_ids)}
    kept = os.getppid() == _keeper
    candidates = None
    if anywhere or not kept:  # the keeper is gone: orphans went to init
        candidates = list(_table())
    else:
        adopted = _children(_keeper)
        if adopted is not None:
            candidates = _below(others := [pid for pid in adopted if pid != os.getpid()])
            candidates = None if candidates is None else others + candidates
    if candidates is None:
        candidates = descendants(_keeper)
    return [pid for pid in candidates if pid != os.getpid() and _carries(pid, markers)]


def terminate(pids: list[int], grace: float) -> None:
    """TERM, then KILL after `grace` seconds what is still there."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if started(p) is not None]
        if pids:
            time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def end_descendants(root: int, grace: float) -> None:
    """End every process below `root`, reaping those that become its children (the keeper's last duty)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return  # no child at all: nothing was left behind (the usual case)
    if LINUX:
        terminate(descendants(root), grace)
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
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


# --- one job's tool -------------------------------------------------------------------------------------------

def _reap(proc: subprocess.Popen, run_id: str) -> dict:
    """Wait for a tool and reap it with os.wait4, whose rusage holds the CPU time of the tool and of every process
    waited for below it; the run's resources. Nothing else reaps a tool: stop_all waits for the returncode set
    here, wait_unreaped only looks."""
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must never wait for a pid it no longer owns
    return resources.finish(run_id, rusage)


@dataclass
class Execution:
    """How a tool's process ended: its exit code (negative: the signal that ended it; None when it could not be
    started, `error` says why), why the runner ended it (timeout, interrupted, preempted), when, and its output
    copies (what a full disk kept from the logs)."""

    code: int | None
    reason: Status | None = None
    ended: float | None = None
    error: str | None = None
    copies: list = field(default_factory=list)
    resources: dict | None = None  # what its process tree used (launch/resources.py)

    @property
    def lost(self) -> int:
        """Bytes of output the logs could not take (a full disk)."""
        return sum(c.unsaved for c in self.copies)

    def save_lost_tails(self) -> None:
        for copy in self.copies:
            copy.save_lost_tail()


class Runner:
    """Starts tools in their own process groups and can end them all (TERM, then KILL after `grace` seconds)."""

    def __init__(self, grace: float = 5.0, ignore_signals: tuple[int, ...] = ()):
        self.grace = grace
        # signals the tools start with ignored (on Slurm: submitit's preemption signal, not meant for the tool)
        self.ignore_signals = ignore_signals
        self.stopping = False
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen] = {}
        self._reasons: dict[int, Status] = {}
        self._runs: dict[str, subprocess.Popen] = {}  # run id -> its tool, while it runs

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

    def stop(self, run_id: str, reason: Status) -> None:
        """End one run's tool (TERM, then KILL after the grace period), if it runs."""
        with self._lock:
            proc = self._runs.get(run_id)
        if proc is not None:
            self._end_group(proc, reason)

    def stop_all(self, reason: Status = Status.INTERRUPTED) -> None:
        """End every running tool and start no new one; returns once all have ended or been killed."""
        with self._lock:
            self.stopping = True
            procs = list(self._procs.values())
        for proc in procs:
            self._end_group(proc, reason)
        deadline = time.monotonic() + self.grace + 1
        while time.monotonic() < deadline and any(p.returncode is None for p in procs):
            time.sleep(0.02)

    def execute(self, argv, cwd: Path, env: dict, out, err, *, run_id: str, timeout: float | None = None,
                stream: bool = False, on_start=None) -> Execution | None:
        """Run one tool to its end: `out` and `err` are its open log files (with `stream`, its output goes to the
        terminal too); `env` is its whole environment, to which its run id is added. `on_start()` is called once
        it runs. None when the runner is stopping: it was not started."""
        with self._lock:
            if self.stopping:
                return None
            try:
                proc = subprocess.Popen(
                    argv, cwd=cwd, env={**env, RUN_ID_VARIABLE: run_id}, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if stream else out, stderr=subprocess.PIPE,
                    start_new_session=True,  # own process group: ended as a whole
                    preexec_fn=self._ignore_signals if self.ignore_signals else None,
                )
            except (OSError, ValueError) as error:  # cannot be started (ValueError: a NUL in an argument)
                return Execution(None, error=f"cannot start {argv[0]}: {error}")
            self._procs[proc.pid] = proc
            self._runs[run_id] = proc
        resources.watch(run_id, proc.pid, env.get("CUDA_VISIBLE_DEVICES"))
        if on_start:
            on_start()
        copies = [Copy(proc.stderr, err, sys.stderr if stream else None)]
        if stream:
            copies.append(Copy(proc.stdout, out, sys.stdout))
        timer = None
        if timeout:
            timer = threading.Timer(timeout, self._end_group, (proc, Status.TIMEOUT))
            timer.daemon = True
            timer.start()
        used = _reap(proc, run_id)
        ended = time.monotonic()
        if timer:
            timer.cancel()
        with self._lock:
            reason = self._reasons.pop(proc.pid, None)
            del self._procs[proc.pid]
            del self._runs[run_id]
        # nothing the job started may outlive it (nor hold its output open)
        self._end_leftovers(proc.pid, run_id, 0 if reason else min(self.grace, 2.0))
        for copy in copies:
            copy.join()
        return Execution(proc.returncode, reason, ended, copies=copies, resources=used)

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

    def wait_unreaped(self, run_id: str) -> int | None:
        """For a signal handler that interrupted the wait for a run's tool: wait until it ends on its own, without
        reaping it (the interrupted wait does that); its exit code, negative for a signal, None when it does not
        run."""
        with self._lock:
            proc = self._runs.get(run_id)
        if proc is None:
            return None
        while (info := os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)) is None:
            time.sleep(0.5)
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


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
            append(Path(self.log.name), b"\n[experimentstash: output lost to a full disk; its last part:]\n" + data)


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


def append(path: Path, data: bytes) -> None:
    """Add to a log, as far as the disk allows."""
    try:
        with open(path, "ab") as f:
            f.write(data)
    except OSError:
        pass

"""Processes: who owns a run, whether that owner still lives, and ending everything a run started.

Linux gives two tools for "nothing a run starts outlives it, nothing outlives the launcher":
- the keeper: the process you start forks the launcher and stays as its parent, marked as the child subreaper
  (PR_SET_CHILD_SUBREAPER): every process the tools leave behind (a double fork, a `setsid` daemon) is
  re-parented to it instead of to init. The launcher gets the keeper's death as SIGTERM (PR_SET_PDEATHSIG), so a
  `kill -9` of the pid you started ends the runs cleanly; a `kill -9` of the launcher itself leaves the keeper,
  which ends every process below it.
- every tool starts with EXPERIMENTSTASH_RUN_ID=<run id> in its environment, which its children inherit: when the
  run ends, the processes below the keeper that carry it are ended too, even when they left its process group.
Elsewhere (macOS) runs are ended through their process group only.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import socket
import sys
import time

RUN_ID_VARIABLE = "EXPERIMENTSTASH_RUN_ID"
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
LINUX = sys.platform.startswith("linux")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if LINUX else 100


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# --- who owns a record ----------------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, ..., starttime at index 19, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None


@functools.cache
def _boot_time() -> float:
    with open("/proc/stat") as f:
        return float(next(line.split()[1] for line in f if line.startswith("btime")))


def started(pid: int) -> float | None:
    """When the process started (seconds since the epoch), None when it does not exist."""
    if LINUX:
        fields = _stat(pid)
        if fields is None or fields[0] == "Z":
            return None
        return round(_boot_time() + int(fields[19]) / _CLOCK_TICKS, 2)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0.0  # no start time to tell a reused pid apart: the pid alone decides


def owner() -> dict:
    """This process as the owner of the records it writes."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started(os.getpid()) or 0.0}


def owner_alive(record_owner: dict | None) -> bool | None:
    """True / False for an owner on this host; None when it cannot be told (another host, no owner recorded)."""
    if not record_owner or record_owner.get("host") != socket.gethostname():
        return None
    began = started(record_owner["pid"])
    if began is None:
        return False
    # the same pid, started at another time, is another process that reuses the number
    return not LINUX or abs(began - float(record_owner.get("started") or 0)) < 2.0


# --- the keeper -----------------------------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill, a closed terminal or ssh


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
    child = os.fork()
    if child == 0:
        global _keeper
        _keeper = keeper
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != keeper:  # the keeper died before the line above
            os.kill(os.getpid(), signal.SIGTERM)
        return
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    for sig in STOP_SIGNALS:  # the launcher handles them; Ctrl-C reaches it from the terminal too
        signal.signal(sig, lambda signum, _frame: _forward(child, signum))
    status = _wait_for(child)
    end_descendants(os.getpid(), KEEPER_GRACE)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_for(child: int) -> int:
    """Reap every child (orphans re-parented to us included) until `child` ends; its wait status."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            return status


# --- ending what a run left behind ----------------------------------------------------------------------------

def _table() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies left out)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
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


def run_processes(run_ids: str | set[str], anywhere: bool = False) -> list[int]:
    """The live processes that carry one of these run ids in their environment: below the keeper (or this
    process), or `anywhere` on this machine (what a launcher that died without its keeper left)."""
    if not LINUX:
        return []
    markers = {f"{RUN_ID_VARIABLE}={run_id}".encode() for run_id in ({run_ids} if isinstance(run_ids, str) else run_ids)}
    kept = _keeper is not None and os.getppid() == _keeper
    if anywhere or (_keeper is not None and not kept):  # the keeper is gone: orphans went to init
        candidates = list(_table())
    else:
        candidates = descendants(_keeper if kept else os.getpid())
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

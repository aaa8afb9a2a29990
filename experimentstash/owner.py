"""Who owns a run record, and whether that owner still lives: a record `running` whose owner is gone is `lost`.

The owner is the launcher process that writes the record: its pid, host and start time (a pid alone may be
reused by another process later)."""

from __future__ import annotations

import functools
import os
import socket
import sys

LINUX = sys.platform.startswith("linux")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if LINUX else 100


def proc_stat(pid: int) -> list[str] | None:
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
        fields = proc_stat(pid)
        if fields is None or fields[0] == "Z":
            return None
        return round(_boot_time() + int(fields[19]) / CLOCK_TICKS, 2)
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

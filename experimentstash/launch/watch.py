"""`status --watch`: a sweep followed until it ends, from its records and its backend (one sacct per poll on Slurm),
as a live view on a terminal and as plain lines otherwise; each failure is shown with its log as it happens."""

from __future__ import annotations

import signal
import time
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..output import output, plain_lines
from ..registry import Stash
from ..views.summary import FAILED, counts_line, print_failure
from ..views.watch import live_view, running, started_line
from .sweep import Sweep, open_sweep

POLL = 2.0  # seconds between two looks at the records and the backend


def watch(stash: Stash, sweep_dir: Path) -> Sweep | None:
    """Follow the sweep until every job has ended (or no launcher is at work on jobs that only it would start), showing
    its notes and failures as they come; the sweep as it ended. None after Ctrl-C, which ends the watch, never the
    sweep."""
    out = output(width=None if Console().is_terminal else 200)
    live = Live(console=out, auto_refresh=False, transient=True) if out.is_terminal else None
    shown: set = set()  # what was printed already: failures (num, ended_at), starts (num, started_at), counts
    # Ctrl-C ends the watch even when it was started with SIGINT ignored (a shell's background job inherits that)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with live or nullcontext():
            while True:
                sweep = open_sweep(stash, sweep_dir)
                notes = sweep.refresh()
                sweep.commit()  # as `status` does, unless a launcher at work keeps them true
                idle = _idle(sweep)
                jobs = [sweep.jobs[n] for n in sorted(sweep.jobs)]
                started = {num: record.started_at for num, record in sweep.records.items()}
                _show(out, live, sweep, jobs, started, notes, shown)
                if all(job.status.final for job in jobs) or idle and sweep.backend.waits:
                    break
                time.sleep(POLL)
    except KeyboardInterrupt:
        return None
    finally:
        signal.signal(signal.SIGINT, before)
    return sweep


def _idle(sweep: Sweep) -> bool:
    """No launcher holds the sweep's lock (False when that cannot be told: a folder that cannot be written)."""
    try:
        return sweep.lock()
    except OSError:
        return False
    finally:
        sweep.unlock()


def _show(out, live, sweep, jobs, started, notes, shown: set) -> None:
    """New failures with their logs, and the counts and running jobs: a live view, or a line for what changed."""
    printer = live.console if live else out
    for note in notes:
        if note not in shown:
            shown.add(note)
            printer.print(Text(plain_lines(note)))
    for job in jobs:
        if job.status in FAILED and ("failed", job.num, job.ended_at) not in shown:
            shown.add(("failed", job.num, job.ended_at))
            print_failure(sweep.stash.root, sweep.dir, job, printer)
    if live:
        live.update(live_view(sweep.id, jobs, started), refresh=True)
        return
    for job in running(jobs):
        if ("started", job.num, started.get(job.num)) not in shown:
            shown.add(("started", job.num, started.get(job.num)))
            out.print(started_line(job))
    line = counts_line(sweep.id, jobs)
    if ("counts", line.plain) not in shown:
        shown.add(("counts", line.plain))
        out.print(line)

"""`experimentstash compare`: runs side by side, one row each: the overrides that vary, every numeric result value,
status and duration. With --over KEY the runs that differ only in KEY become one row: each value as mean ± std.

The runs come from a sweep dir (brought up to date by the sweep core), from run dirs, or from every run under
outputs/ and multirun/ (--tool, --experiment, --last). Runs still going are left out: what has ended is shown.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import StashError
from ..output import say, warn_skipped
from ..records import SWEEP_FILE
from ..runs import find_runs, found_at
from ..views.compare import FORMATS, Entry, build, grouped, sort_rows, sweep_entries, write
from ..views.listing import check_tool
from ..views.summary import quiet_when_closed
from . import folder as folder_arg


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="*", metavar="SWEEP_DIR | RUN_DIR",
                   help="a sweep dir (its jobs) or run dirs; without them, the runs under outputs/ and multirun/")
    p.add_argument("--tool", help="only runs of this tool")
    p.add_argument("--experiment", metavar="GLOB", help="only runs of this experiment id (a glob like 'figure1/*')")
    p.add_argument("--last", type=int, metavar="N", help="only the N most recent runs")
    p.add_argument("--over", metavar="KEY", help="one row for the runs that differ only in KEY (e.g. seed): "
                   "each value as mean ± std, with n")
    p.add_argument("--sort", metavar="COLUMN", help="sort by this column; --sort=-COLUMN for descending")
    p.add_argument("--format", choices=FORMATS, default="table", help="table (default), csv, json or md")


def collect(args, root: Path) -> tuple[list[Entry], list[str], str | None]:
    """(the runs asked for, notes for the user, the filter that left no run when one did)."""
    if args.paths and (args.tool or args.experiment or args.last is not None):
        raise StashError("Give a sweep dir or run dirs, or choose runs with --tool/--experiment/--last: not both.")
    if args.last is not None and args.last < 0:
        raise StashError(f"--last {args.last}: give a number of runs, 0 or more.")
    entries, notes, emptied = [], [], None
    if not args.paths:
        selected = find_runs(root, args.tool, args.experiment, last=args.last, read=True)
        check_tool(root, selected.tools, args.tool)
        entries = [Entry.of(f.record, f.folder) for f in selected.runs]
        emptied = selected.emptied
        warn_skipped(root, selected.bad)
    stash = None
    for given in args.paths:
        folder = folder_arg(root, given, "a sweep dir (under multirun/) or a run dir")
        if os.path.lexists(folder / SWEEP_FILE):
            from ..launch.sweep import open_sweep
            from ..registry import Stash

            stash = stash or Stash.load(root)
            jobs, more = sweep_entries(open_sweep(stash, folder))
            entries += jobs
            notes += more
        else:
            found = found_at(folder)
            entries.append(Entry.of(found.record, found.folder))
    waiting = sum(1 for e in entries if not e.status.final)
    if waiting:
        notes.append(f"{waiting} of {len(entries)} runs have not ended yet (pending or running): not shown.")
    return [e for e in entries if e.status.final], notes, emptied


def run(args, root: Path) -> int:
    entries, notes, emptied = collect(args, root)
    table = build(entries, root)
    if args.over:
        table = grouped(table, args.over)
    if args.sort:
        sort_rows(table, args.sort)
    if emptied:
        empty = f"No runs match {emptied}."
    else:
        empty = "No runs to group." if args.over else "No runs have ended here yet."
    with quiet_when_closed():
        write(table, args.format, sys.stdout, empty)
        sys.stdout.flush()
    for note in notes:
        say(f"note: {note}")
    return 0


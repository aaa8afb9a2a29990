"""`experimentstash compare`: runs side by side, one row each (views/compare.py builds the table); with --over KEY
one row per group of runs that differ only in KEY, each value as mean ± std."""

from __future__ import annotations

import sys
from pathlib import Path

from ..output import quiet_when_closed, say
from ..views.compare import FORMATS, build, grouped, sort_rows, write
from ..views.histories import parse_best
from . import add_filters, add_view_arguments, chosen


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="*", metavar="SWEEP_DIR | RUN_DIR",
                   help="a sweep dir (its jobs) or run dirs; without them, the runs under outputs/ and multirun/")
    add_filters(p)
    add_view_arguments(p)
    p.add_argument("--sort", metavar="COLUMN", help="sort by this column; --sort=-COLUMN for descending")
    p.add_argument("--format", choices=FORMATS, default="table", help="table (default), csv, json or md")


def run(args, root: Path) -> int:
    collected = chosen(root, args, args.paths)
    table = build(collected.entries, root, parse_best(args.best), collected.objective)
    if args.over:
        table = grouped(table, args.over, args.all_runs)
    if args.sort:
        sort_rows(table, args.sort)
    if collected.emptied:
        empty = f"No runs match {collected.emptied}."
    else:
        empty = "No runs to group." if args.over else "No runs have ended here yet."
    with quiet_when_closed():
        write(table, args.format, sys.stdout, empty)
        sys.stdout.flush()
    for note in [*collected.notes, *table.notes]:
        say(f"note: {note}")
    return 0

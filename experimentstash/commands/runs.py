"""`experimentstash runs`: a table (or JSON) of the past runs recorded under outputs/ and multirun/."""

from __future__ import annotations

import sys
from pathlib import Path

from ..output import warn_skipped
from ..records import to_json
from ..runs import find_runs
from ..views.listing import check_tool, print_table, shown_record
from ..views.selection import from_args
from . import add_filters


def add_arguments(p) -> None:
    add_filters(p)
    p.add_argument("--json", action="store_true", help="print the run records as a JSON list, for scripts")


def run(args, root: Path) -> int:
    selected = find_runs(root, from_args(args, root), read=args.json)
    check_tool(root, selected.tools, args.tool)
    shown = selected.runs
    if args.json:
        # one record per line: readable, and json's fast C encoder (an indent would make it the slow Python one)
        lines = ",\n".join(to_json(shown_record(f.record)) for f in shown)
        sys.stdout.write("[\n" + lines + ("\n]\n" if shown else "]\n"))
    else:
        print_table(shown, selected.total, selected.emptied)
    warn_skipped(root, selected.bad)
    return 0


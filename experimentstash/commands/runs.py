"""`experimentstash runs`: a table (or JSON) of the past runs recorded under outputs/ and multirun/."""

from __future__ import annotations

import sys
from pathlib import Path

from ..output import quiet_when_closed, warn_skipped
from ..runs import find_run_dirs, find_runs
from ..views.listing import check_tool, print_table, write_json
from ..views.selection import from_args
from . import add_filters


def add_arguments(p) -> None:
    add_filters(p)
    p.add_argument("--json", action="store_true", help="print the run records as a JSON list, for scripts")


def run(args, root: Path) -> int:
    selected = (find_run_dirs if args.json else find_runs)(root, from_args(args, root))
    check_tool(root, selected.tools, args.tool)
    with quiet_when_closed():
        if args.json:
            selected.bad += write_json(selected.runs, sys.stdout)
        else:
            print_table(selected.runs, selected.total, selected.emptied)
        sys.stdout.flush()
    warn_skipped(root, selected.bad)
    return 0


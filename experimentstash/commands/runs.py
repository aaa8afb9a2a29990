"""`experimentstash runs`: a table (or JSON) of the past runs recorded under outputs/ and multirun/."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import StashError
from ..output import warn_skipped
from ..records import STATUS_WORDS, to_json
from ..runs import find_runs
from ..views.listing import check_tool, print_table, shown_record


def add_arguments(p) -> None:
    p.add_argument("--tool", help="only runs of this tool")
    p.add_argument("--experiment", help="only runs of this experiment id (a glob pattern like 'figure1/*' works)")
    p.add_argument("--status", help="only runs with this status (succeeded, failed, running, lost, ...)")
    p.add_argument("--fingerprint", metavar="PREFIX", help="only runs whose fingerprint starts with PREFIX "
                   "(the same inputs: every attempt)")
    p.add_argument("--last", type=int, metavar="N", help="only the N most recent runs")
    p.add_argument("--json", action="store_true", help="print the run records as a JSON list, for scripts")


def run(args, root: Path) -> int:
    if args.last is not None and args.last < 0:
        raise StashError(f"--last {args.last}: give a number of runs, 0 or more.")
    if args.status and args.status not in STATUS_WORDS:
        raise StashError(f"--status {args.status}: expected one of {', '.join(STATUS_WORDS)}.")
    selected = find_runs(root, args.tool, args.experiment, args.status, args.last, args.fingerprint, read=args.json)
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


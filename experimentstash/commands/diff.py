"""`experimentstash diff RUN_A RUN_B`: what differs between two runs (views/diff.py compares them)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..output import quiet_when_closed, shown_path
from ..records import to_json
from ..runs import Found, found_at, found_by_id
from ..views.diff import compare_runs, render
from . import folder


def add_arguments(p) -> None:
    p.add_argument("run_a", metavar="RUN_A", help="a run dir (holds run.json), or a run's id as `runs` shows it")
    p.add_argument("run_b", metavar="RUN_B", help="another run dir or id")
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")


def run(args, root: Path) -> int:
    a, b = (given_run(root, given) for given in (args.run_a, args.run_b))
    cmp = compare_runs(a, b, root)
    with quiet_when_closed():
        if args.format == "json":
            for side, found in (("a", a), ("b", b)):
                cmp[side]["run_dir"] = str(shown_path(root, found.folder))
            sys.stdout.write(to_json(cmp, indent=2) + "\n")
        else:
            sys.stdout.write(render(cmp, str(shown_path(root, a.folder)), str(shown_path(root, b.folder))))
        sys.stdout.flush()
    return 0


def given_run(root: Path, given: str) -> Found:
    """A run dir as typed or relative to the stash root, or a run's id (a name that is no folder here)."""
    path = Path(given).expanduser()
    if "/" in given or path.is_dir() or (root / path).is_dir():
        return found_at(folder(root, given, "a run dir (holds run.json)"))
    return found_by_id(root, given)

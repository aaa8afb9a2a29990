"""One thin module per subcommand (cli.COMMANDS names them): `add_arguments(parser)` and `run(args, root) -> exit
code`, parsing the arguments and printing; the work is the library's. Nothing imports them but cli.py."""

from __future__ import annotations

import os
from pathlib import Path

from .. import StashError
from ..records import STATUS_WORDS, SWEEP_FILE


def folder(root: Path, given: str, what: str = "a sweep dir (a folder under multirun/)") -> Path:
    """A folder given on the command line: as typed, or relative to the stash root."""
    path = Path(given).expanduser()
    for candidate in (path, root / path):
        if candidate.is_dir():
            return candidate.resolve()
    raise StashError(f"{given} does not exist: give {what}.")


def add_filters(p) -> None:
    """The filters that runs, compare and report share (views/selection.py applies them)."""
    p.add_argument("--tool", help="only runs of this tool")
    p.add_argument("--experiment", metavar="ID", help="only runs of this experiment id (a glob like 'figure1/*' works)")
    p.add_argument("--status", help=f"only runs with this status ({', '.join(STATUS_WORDS)})")
    p.add_argument("--commit", metavar="PREFIX", help="only runs of the tool at a commit starting with PREFIX")
    p.add_argument("--sweep", metavar="ID|DIR", help="only runs of this sweep (its id, or its sweep dir)")
    p.add_argument("--since", metavar="DATE|AGE", help="only runs started since a date (2025-01-31, or a time "
                   "2025-01-31T14:00) or within an age (30m, 12h, 2d, 1w)")
    p.add_argument("--fingerprint", metavar="PREFIX", help="only runs whose fingerprint starts with PREFIX "
                   "(the same inputs: every attempt)")
    p.add_argument("--last", type=int, metavar="N", help="only the N most recent runs")


def add_view_arguments(p) -> None:
    """The options that compare and report share besides the filters."""
    p.add_argument("--over", metavar="KEY", help="one row for the runs that differ only in KEY (e.g. seed): "
                   "each value as mean ± std over the n runs that succeeded")
    p.add_argument("--all-runs", action="store_true", help="with --over, count every run, repeats of one run "
                   "(the same fingerprint) too; by default the latest that succeeded counts")
    p.add_argument("--best", metavar="KEY:min|max", action="append", help="which way KEY (a result value or a "
                   "history) is best; repeat for several keys")
    p.add_argument("--stage", metavar="NAME", help="of a pipeline's sweep: one row per chain, its job of this stage "
                   "(by default the chain's last stage)")


def chosen(root: Path, args, paths: list[str]):
    """The runs a view shows (views/compare.py Collected): of the sweep dirs and run dirs given (each sweep opened by
    the sweep core: its jobs brought up to date), or of every recorded run; narrowed by the filters. One sweep given:
    its objective's direction, when it is an optimizing sweep's."""
    from ..views.compare import collect
    from ..views.selection import from_args

    filters = from_args(args, root)
    if args.stage is not None and not paths:
        raise StashError("--stage chooses the stage of a pipeline's sweep: give its sweep dir.")
    given, stash = [], None
    for path in paths:
        found = folder(root, path, "a sweep dir (under multirun/) or a run dir")
        if os.path.lexists(found / SWEEP_FILE):
            from ..launch.sweep import open_sweep  # the sweep core: imported only for a sweep
            from ..registry import Stash

            stash = stash or Stash.load(root)
            given.append(open_sweep(stash, found))
        else:
            given.append(found)
    collected = collect(root, given, filters, args.stage)
    if len(collected.sweeps) == 1:
        from ..launch.argv import objective_of

        collected.objective = objective_of(collected.sweeps[0].record.command_line)
    return collected

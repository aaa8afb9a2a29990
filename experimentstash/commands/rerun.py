"""`experimentstash rerun <sweep dir>`: re-launch the jobs of a sweep that did not succeed, into the same dir."""

from __future__ import annotations

from pathlib import Path

from . import folder

RUNS_TOOLS = True


def add_arguments(parser) -> None:
    parser.add_argument("sweep_dir", help="the sweep dir (a folder under multirun/ holding sweep.json)")
    parser.add_argument("options", nargs="*", metavar="OPTION",
                        help="hydra.launcher.<option>=VALUE, stash.timeout=SECONDS or stash.profile=NAME for the jobs "
                        "run again (default: the options of the sweep's last attempt)")


def run(args, root: Path) -> int:
    from ..launch.sweep import rerun
    from ..registry import Stash

    return rerun(Stash.load(root), folder(root, args.sweep_dir), args.options)

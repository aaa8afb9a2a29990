"""`experimentstash rerun <sweep dir>`: re-launch the jobs of a sweep that did not succeed, into the same dir."""

from __future__ import annotations

from pathlib import Path

from . import folder

RUNS_TOOLS = True


def add_arguments(parser) -> None:
    parser.add_argument("sweep_dir", help="the sweep dir (a folder under multirun/ holding sweep.json)")


def run(args, root: Path) -> int:
    from ..launch.sweep import rerun
    from ..registry import Stash

    return rerun(Stash.load(root), folder(root, args.sweep_dir))

"""The subcommands that are not Hydra command lines: list, runs, rerun, status, reproduce, snapshot, add-tool."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from pathlib import Path

from . import StashError
from .invocation import fail
from .pins import inspect_tool
from .registry import Stash, find_root
from .report import print_summary
from .sweep import read_sweep, refresh_statuses, rerun


def _checkout_state(pin) -> str:
    if pin.kind in ("uninitialized", "untracked"):
        return {"uninitialized": "not initialized", "untracked": "stash is no git repo"}[pin.kind]
    state = "moved" if pin.moved else "at pin"
    return f"{state}, dirty" if pin.dirty else state


def cmd_list(args) -> int:
    stash = Stash.load(find_root())
    out = Console(highlight=False)
    table = Table(title=f"tools of the stash {stash.root}", title_justify="left")
    for column in ("tool", "pinned commit", "checkout", "experiments"):
        table.add_column(column, overflow="fold")
    for tool in stash.tools.values():
        pin = inspect_tool(stash.root, tool)
        pinned = pin.pinned[:10] if pin.pinned else "not committed"
        table.add_row(tool.name, pinned, _checkout_state(pin), ", ".join(stash.experiments(tool.name)))
    out.print(table)
    out.print("Run one:  python -m experimentstash tool=<tool> experiment=<experiment> \\[tool overrides]")
    out.print("A sweep:  python -m experimentstash -m tool=<tool> experiment=a,b 'seed=range(3)'", soft_wrap=True)
    return 0


def _sweep_dir(stash: Stash, given: str) -> Path:
    path = Path(given).expanduser()
    for candidate in (path, stash.root / path):
        if candidate.is_dir():
            return candidate.resolve()
    raise StashError(f"{given} does not exist: give a sweep dir (a folder under multirun/).")


def cmd_rerun(args) -> int:
    stash = Stash.load(find_root())
    return rerun(stash.root, _sweep_dir(stash, args.sweep_dir))


def cmd_status(args) -> int:
    stash = Stash.load(find_root())
    sweep_dir = _sweep_dir(stash, args.sweep_dir)
    data = read_sweep(sweep_dir)
    jobs, note = refresh_statuses(stash.root, data), None
    if data["backend"] == "slurm":
        from .slurm import refresh_from_slurm

        jobs, note = refresh_from_slurm(stash.root, jobs)
    print_summary(stash.root, sweep_dir, jobs)
    if note:
        print(note)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="experimentstash", description="Run and record the experiments of a stash.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="registered tools, their pins and experiments").set_defaults(func=cmd_list)
    rerun_parser = sub.add_parser("rerun", help="re-launch the jobs of a sweep that did not succeed")
    rerun_parser.add_argument("sweep_dir")
    rerun_parser.set_defaults(func=cmd_rerun)
    status_parser = sub.add_parser("status", help="the state of every job of a sweep")
    status_parser.add_argument("sweep_dir")
    status_parser.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv or ["list"])
    try:
        return args.func(args)
    except StashError as err:
        fail(err)

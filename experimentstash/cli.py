"""The subcommands that are not Hydra command lines: list, runs, rerun, status, reproduce, snapshot, add-tool, check."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import StashError
from .invocation import fail
from .registry import Stash, find_root


def _checkout_state(pin) -> str:
    if pin.kind in ("uninitialized", "untracked"):
        return {"uninitialized": "not initialized", "untracked": "stash is no git repo"}[pin.kind]
    state = "moved" if pin.moved else "at pin"
    return f"{state}, dirty" if pin.dirty else state


def cmd_list(args) -> int:
    from .pins import inspect_tool  # GitPython: imported by the subcommands that use it

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
    from .sweep import rerun  # Hydra loads slowly: only the subcommands that need it import it

    stash = Stash.load(find_root())
    return rerun(stash.root, _sweep_dir(stash, args.sweep_dir))


def cmd_status(args) -> int:
    from .report import print_summary
    from .sweep import read_sweep, refresh_statuses

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


def lazy(module: str, function: str):
    """A subcommand whose module is imported only when it runs (Hydra and GitPython load slowly)."""

    def run(args) -> int:
        return getattr(importlib.import_module(f"experimentstash.{module}"), function)(args, find_root())

    return run


def add_runs_parser(sub) -> None:
    p = sub.add_parser("runs", help="past runs from the run.json files under outputs/ and multirun/")
    p.add_argument("--tool", help="only runs of this tool")
    p.add_argument("--experiment", help="only runs of this experiment id (a glob pattern like 'figure1/*' works)")
    p.add_argument("--status", help="only runs with this status (succeeded, failed, running, ...)")
    p.add_argument("--last", type=int, metavar="N", help="only the N most recent runs")
    p.add_argument("--json", action="store_true", help="print the run records as a JSON list, for scripts")
    p.set_defaults(func=lazy("runs", "cmd_runs"))


def add_reproduce_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="run a past run again exactly as recorded (tool commit, changes, config)")
    p.add_argument("run_dir", help="the run dir of the run to reproduce (holds run.json)")
    p.add_argument("--check", action="store_true",
                   help="compare result values and output files with the original; exit 1 when they differ")
    p.add_argument("--grace", type=float, default=5.0, help="seconds between TERM and KILL when interrupted")
    p.set_defaults(func=lazy("reproduce", "cmd_reproduce"))


def add_snapshot_parser(sub) -> None:
    p = sub.add_parser("snapshot", help="freeze an experiment's fully resolved config under configs/<tool>/snapshots/")
    p.add_argument("tool")
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*", help="tool overrides to freeze into the snapshot")
    p.add_argument("--tag", required=True, help="snapshot tag, e.g. neurips2025 (also the git tag snapshot/<tag>)")
    p.add_argument("--commit", action="store_true", help="commit the snapshot and the tool's gitlink, tag snapshot/<tag>")
    p.add_argument("--allow-dirty", action="store_true", help="snapshot a tool with uncommitted changes anyway")
    p.add_argument("--force", action="store_true", help="replace an existing snapshot file and tag")
    p.set_defaults(func=lazy("snapshot", "cmd_snapshot"))


def add_add_tool_parser(sub) -> None:
    p = sub.add_parser("add-tool", help="add a tool as a git submodule under tools/<name> and register it")
    p.add_argument("name")
    p.add_argument("url", help="git URL, file:// URL or local path of the tool's repository")
    p.add_argument("--entrypoint", help="'-m package.module' or a script path in the tool (default: found by @hydra.main)")
    p.add_argument("--description", help="one line for meta.yaml")
    p.add_argument("--copy-configs", action="store_true", help="copy the tool's config tree into configs/<name>/")
    p.set_defaults(func=lazy("addtool", "cmd_add_tool"))


def add_check_parser(sub) -> None:
    p = sub.add_parser("check", help="compose an experiment in the tool's environment without running it")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="tool=X experiment=Y [tool overrides]")
    p.set_defaults(func=lazy("check", "cmd_check"))


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
    add_runs_parser(sub)
    add_reproduce_parser(sub)
    add_snapshot_parser(sub)
    add_add_tool_parser(sub)
    add_check_parser(sub)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv or ["list"])
    try:
        return args.func(args)
    except StashError as err:
        fail(err)

"""`experimentstash list`: the registered tools with their pins and experiments, what a tool still needs before
it runs here (with the command that gives it), then how to run one."""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    pass


def _checkout_state(pin) -> str:
    if pin.kind == "uninitialized":
        return "not initialized"
    if pin.kind == "untracked":
        return "stash is no git repo"
    state = "moved" if pin.moved else "at pin"
    return f"{state}, dirty" if pin.dirty else state


def run(args, root: Path) -> int:
    from rich.table import Table

    from ..launch.plan import setup_missing
    from ..output import cell, output
    from ..pins import inspect
    from ..registry import Stash

    stash = Stash.load(root)
    out = output()
    table = Table(title=cell(f"tools of the stash {stash.root}"), title_justify="left")
    for column in ("tool", "pinned commit", "checkout", "experiments"):
        table.add_column(column, overflow="fold")
    _, pins = inspect(stash.root, list(stash.tools.values()))
    for tool in stash.tools.values():
        pin = pins[tool.name]
        pinned = pin.pinned[:10] if pin.pinned else "not committed"
        table.add_row(tool.name, pinned, _checkout_state(pin), cell(", ".join(stash.experiments(tool.name))))
    out.print(table)
    if not stash.tools:
        out.print("No tools yet: experimentstash add-tool NAME URL_OR_PATH adds one.", highlight=False)
    for tool in stash.tools.values():
        if pins[tool.name].kind == "uninitialized":
            missing = (f"Tool '{tool.name}': its submodule is not initialized: "
                       f"`git submodule update --init {tool.rel_path}` fetches it.")
        else:
            missing = setup_missing(stash, tool)
        if missing:
            out.print(cell(missing), soft_wrap=True)
    out.print("Run one:  python -m experimentstash tool=<tool> experiment=<experiment> \\[tool overrides]")
    out.print("A sweep:  python -m experimentstash -m tool=<tool> experiment=a,b 'seed=range(3)'", soft_wrap=True)
    out.print("Help:     python -m experimentstash --help", soft_wrap=True)
    return 0

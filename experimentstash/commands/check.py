"""`experimentstash check tool=X experiment=Y [tool overrides]`: compose without running, and name the stash's
configs the tool never reads (launch/compose.py asks the tool's own Hydra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.text import Text

from .. import StashError
from ..launch.compose import parse_search_path, query, shadowed, tail
from ..output import console, plain, plain_lines, warn
from ..overrides import override_key
from ..registry import Stash


def add_arguments(p) -> None:
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="tool=X experiment=Y [tool overrides]")


def run(args, root: Path) -> int:
    stash = Stash.load(root)
    tool_name = experiment = None
    overrides = []
    for word in args.words:
        key = override_key(word)
        if key == "tool" and "=" in word and not word.startswith(("+", "~")):
            tool_name = word.split("=", 1)[1]
        elif key == "experiment" and "=" in word and not word.startswith(("+", "~")):
            experiment = word.split("=", 1)[1]
        elif word.startswith("-") and word != "--":
            raise StashError(f"check: unknown option '{word}' (usage: check tool=X experiment=Y [tool overrides]).")
        elif word != "--":
            overrides.append(word)
    q = query(stash, tool_name, experiment)
    run_dir = root / ".cache" / "experimentstash" / "check"  # only named: --cfg and --info write nothing
    composed = q.run("--cfg", "job", overrides=overrides, run_dir=run_dir)
    if composed.returncode != 0:
        console.print(Text.assemble(("does not compose:", "red"), plain(
            f" tool {q.tool.name}, experiment {experiment} (exit {composed.returncode})")))
        sys.stderr.write(plain_lines(tail(composed.stderr or composed.stdout, 30)) + "\n")
        return 1
    sys.stdout.write(composed.stdout)
    info = q.run("--info", "searchpath", overrides=overrides, run_dir=run_dir)
    entries = parse_search_path(info.stdout) if info.returncode == 0 else []
    if not entries:
        warn("the tool did not show its config search path (--info searchpath): shadowed configs cannot be checked.")
        return 0
    warnings = shadowed(stash, q, entries)
    for warning in warnings:
        warn(warning)
    where = " -> ".join(e.path for e in entries)
    console.print(Text.assemble(("composes", "green"), plain(
        f": tool {q.tool.name}, experiment {experiment}{f', {len(warnings)} warning(s)' if warnings else ''}. "
        f"Search path: {where}")))
    return 0

"""`experimentstash check tool=X experiment=Y [tool overrides]`: compose without running, and find shadowed configs.

The tool's own Hydra composes the experiment (`--cfg job`) in the tool's environment. Its config search path
(`--info searchpath`) says where every config can come from: Hydra takes the first folder that has a file, and
the stash's `--config-dir` comes after the tool's own config folder and its packaged configs (pkg://...). A stash
file with the same relative name as one of theirs is then silently ignored; check names each such file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text

from . import StashError
from .compose import ToolQuery, query, tail
from .display import plain, plain_lines
from .invocation import console, override_key, warn
from .registry import Stash

LIST_PACKAGE = r"""
import importlib.resources, json, sys
out = {}
for name in sys.argv[1:]:
    module, _, sub = name.partition("/")
    try:
        top = importlib.resources.files(module)
        for part in filter(None, sub.split("/")):
            top = top / part
    except Exception:
        out[name] = None
        continue
    files = []
    def walk(node, prefix):
        for child in node.iterdir():
            if child.is_dir():
                walk(child, prefix + child.name + "/")
            elif child.is_file():
                files.append(prefix + child.name)
    try:
        walk(top, "")
    except Exception:
        out[name] = None
        continue
    out[name] = files
print(json.dumps(out))
"""


@dataclass(frozen=True)
class SearchEntry:
    provider: str
    path: str


def parse_search_path(text: str) -> list[SearchEntry]:
    """The rows of Hydra's `--info searchpath` table."""
    entries = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if len(cells) == 2 and cells[0] and cells[0] != "Provider":
            entries.append(SearchEntry(*cells))
    return entries


def config_files(folder: Path) -> set[str]:
    """Relative names of the config files below a folder."""
    if not folder.is_dir():
        return set()
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and p.suffix in (".yaml", ".yml") and "__pycache__" not in p.parts}


def shadowed(stash: Stash, q: ToolQuery, entries: list[SearchEntry]) -> list[str]:
    """A warning for every stash config file that has the same relative name as a file of another search path entry."""
    stash_dir = q.config_dir.resolve()
    mine = config_files(stash_dir)
    position = next((i for i, e in enumerate(entries)
                     if e.path.startswith("file://") and Path(e.path[len("file://"):]).resolve() == stash_dir), None)
    if position is None:
        return [f"configs/{q.tool.name}/ is not on the tool's config search path: its configs are not used."]
    packages = [e.path[len("pkg://"):] for e in entries if e.path.startswith("pkg://")]
    listed: dict = {}
    if packages:
        out = q.python(LIST_PACKAGE, *packages)
        if out.returncode == 0:
            try:
                listed = json.loads(out.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                listed = {}
    warnings = []
    for i, entry in enumerate(entries):
        if i == position:
            continue
        if entry.path.startswith("file://"):
            theirs = config_files(Path(entry.path[len("file://"):]))
        elif entry.path.startswith("pkg://"):
            theirs = {f for f in (listed.get(entry.path[len("pkg://"):]) or []) if f.endswith((".yaml", ".yml"))}
        else:
            continue
        for name in sorted(mine & theirs):
            if i < position:
                warnings.append(
                    f"configs/{q.tool.name}/{name} is shadowed by {name} in {entry.path} ({entry.provider}), which "
                    "Hydra searches first: the stash file is silently ignored. Rename it (and what refers to it)."
                )
            else:
                warnings.append(
                    f"configs/{q.tool.name}/{name} shadows {name} in {entry.path} ({entry.provider}): the stash file "
                    "is used instead of the tool's."
                )
    return warnings


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

"""Ask a tool's own Hydra about an experiment without running it (`--cfg job`, `--info searchpath`), and find the
stash's configs it never reads.

Its config search path (`--info searchpath`) says where every config can come from: Hydra takes the first folder
that has a file, and the stash's `--config-dir` comes after the tool's own config folder and its packaged configs
(pkg://...). A stash file with the same relative name as one of theirs is then silently ignored."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import StashError
from ..registry import Stash, Tool
from .plan import PreparedTool, prepare_tool, tool_command


@dataclass(frozen=True)
class ToolQuery:
    """The tool's own Hydra, asked about one experiment (`--cfg job`, `--info searchpath`) in its environment."""

    prepared: PreparedTool
    experiment: str
    experiment_file: Path
    config_dir: Path
    config_name: str

    @property
    def tool(self) -> Tool:
        return self.prepared.tool

    def run(self, *flags: str, overrides=(), run_dir: Path | None = None, fixed: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """The tool's command line with these tool overrides, then Hydra's flags (--cfg job: nothing runs)."""
        argv = [*tool_command(self.prepared, self.config_dir, self.config_name, overrides, run_dir, fixed=fixed),
                *flags]
        try:
            return subprocess.run(
                argv, cwd=self.tool.path, env={**os.environ, **self.prepared.env, "HYDRA_FULL_ERROR": "0"},
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise StashError(f"Tool '{self.tool.name}' did not answer within {timeout:.0f}s.") from None
        except OSError as err:
            raise StashError(f"Cannot start tool '{self.tool.name}' ({argv[0]}): {err}.") from None

    def python(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a snippet with the tool's interpreter, in the tool's folder and environment."""
        return subprocess.run(
            [*self.prepared.interpreter.prefix, "-c", code, *args], cwd=self.tool.path,
            env={**os.environ, **self.prepared.env}, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout,
        )


def query(stash: Stash, tool_name: str | None, experiment: str | None) -> ToolQuery:
    tool = stash.tool(tool_name)
    experiment_file = stash.experiment_file(tool.name, experiment)
    return ToolQuery(prepare_tool(stash, tool), experiment, experiment_file, stash.root / "configs" / tool.name,
                     stash.config_name(tool.name, experiment_file))


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


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

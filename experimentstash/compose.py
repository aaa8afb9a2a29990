"""Ask a tool's own Hydra about an experiment without running it (`--cfg job`, `--info searchpath`)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import StashError
from .job import prepare_tool
from .registry import Stash, Tool


@dataclass(frozen=True)
class ToolQuery:
    tool: Tool
    experiment: str
    experiment_file: Path
    base: tuple[str, ...]  # interpreter + entrypoint + --config-dir + --config-name
    cwd: Path
    env: dict[str, str]
    interpreter_prefix: tuple[str, ...]

    def run(self, *words: str, timeout: float = 300) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                [*self.base, *words], cwd=self.cwd, env={**os.environ, **self.env, "HYDRA_FULL_ERROR": "0"},
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise StashError(f"Tool '{self.tool.name}' did not answer within {timeout:.0f}s.") from None
        except OSError as err:
            raise StashError(f"Cannot start tool '{self.tool.name}' ({self.base[0]}): {err}.") from None

    def python(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a snippet with the tool's interpreter, in the tool's folder and environment."""
        return subprocess.run(
            [*self.interpreter_prefix, "-c", code, *args], cwd=self.cwd, env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )


def query(stash: Stash, tool_name: str | None, experiment: str | None) -> ToolQuery:
    tool = stash.tool(tool_name)
    experiment_file = stash.experiment_file(tool.name, experiment)
    interpreter, entry, env = prepare_tool(stash, tool)
    base = (
        *interpreter.prefix, *entry,
        f"--config-dir={stash.root / 'configs' / tool.name}",
        f"--config-name={stash.config_name(tool.name, experiment_file)}",
    )
    return ToolQuery(tool, experiment, experiment_file, base, tool.path, dict(env),
                     interpreter.prefix)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])

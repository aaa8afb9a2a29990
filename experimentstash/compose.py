"""Ask a tool's own Hydra about an experiment without running it (`--cfg job`, `--info searchpath`)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import StashError
from .job import PreparedTool, prepare_tool, tool_command
from .registry import Stash, Tool


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

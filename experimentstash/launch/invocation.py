"""What this process was asked to do, set once by the command line and read by the Hydra plugins, which Hydra
creates: the stash root, the command line, the chosen backend's options, the tool overrides, and the exit code
the runs give the process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Invocation:
    root: Path | None = None
    argv: list[str] = field(default_factory=list)
    backend: str | None = None  # the chosen backend's name, None for another launcher (basic, joblib, ...)
    launcher_options: object = None  # the chosen backend's options (backends.resolve_options), None for another
    tool_overrides: list[str] = field(default_factory=list)
    exit_code: int = 0

    def worse(self, code: int) -> None:
        """Keep the first non-zero exit code."""
        if code and not self.exit_code:
            self.exit_code = code


current = Invocation()

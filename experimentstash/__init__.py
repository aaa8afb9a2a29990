"""experimentstash: run pinned Hydra tools on the experiments of a stash, and record every run.

The package in layers, each importing only the ones below it:
  cli.py, commands/   the command line: one thin module per subcommand; errors become exit codes in cli.py
  launch/             planning a job, the sweep core, running and supervising one job's processes, Hydra glue
  views/              what compare, report, runs and the end of a sweep show: tables, groups, pages
  backends/           where a sweep's jobs run: one contract (base.py), local, slurm
  (this folder)       records, the stash and its pins, fingerprints, reuse, output helpers: the facts
"""

import os
import signal
from pathlib import Path

__version__ = "0.1.0"
META = Path("configs/meta.yaml")  # what makes a folder a stash


class StashError(Exception):
    """An error the user caused and can fix: shown as one message, exit code 2."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP reached the launcher: exit code 128 + the signal, once everything is ended."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Escape(BaseException):
    """Carries a StashError or an Interrupted through Hydra's call stack, which catches every Exception and exits
    with 1: the Hydra plugins and app raise it, and cli.py gives the exit code of the error it carries."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


def find_root(start: Path | None = None) -> Path:
    """The folder holding configs/meta.yaml: EXPERIMENTSTASH_ROOT, else the first one up from `start`."""
    env = os.environ.get("EXPERIMENTSTASH_ROOT")
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / META).is_file():
            raise StashError(f"EXPERIMENTSTASH_ROOT={env} holds no {META}: point it at a stash.")
        return root
    here = (start or Path.cwd()).resolve()
    root = enclosing_stash(here)
    if root is None:
        raise StashError(
            f"No {META} found in {here} or any folder above it: run inside a stash "
            "or set EXPERIMENTSTASH_ROOT to one; `experimentstash init [DIR]` makes a new stash."
        )
    return root


def enclosing_stash(folder: Path) -> Path | None:
    """The stash `folder` is in (the first folder up from it with configs/meta.yaml), if any."""
    for candidate in (folder, *folder.parents):
        if (candidate / META).is_file():
            return candidate
    return None

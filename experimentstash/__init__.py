"""experimentstash: run pinned Hydra tools on the experiments of a stash, and record every run.

The package in layers, each importing only the ones below it:
  cli.py, commands/   the command line: one thin module per subcommand; errors become exit codes in cli.py
  launch/             planning a job, the sweep core, running and supervising one job's processes, Hydra glue
  views/              what compare, report, runs and the end of a sweep show: tables, groups, pages
  backends/           where a sweep's jobs run: one contract (base.py), local, slurm
  (this folder)       records, the stash and its pins, fingerprints, reuse, output helpers: the facts
"""

import signal

__version__ = "0.1.0"


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

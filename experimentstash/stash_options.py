"""The launcher's `stash.*` options, declared once: each one's default, its line of help and its check.

The launcher's Hydra config (launch/app.py stores the defaults as the `stash` node), the command line's checks, every
job's options (launch/plan.py split_job) and `--help` all read this declaration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from . import StashError
from .pins import POLICIES
from .registry import TRACKERS


def _one_of(*choices):
    def check(name: str, value) -> None:
        if value not in choices or isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = ", ".join(str(c).lower() for c in choices if c is not None)  # null: the default
            raise StashError(f"{name}={value}: give one of {shown}.")
    return check


def _seconds(minimum: float, inclusive: bool, optional: bool = False):
    def check(name: str, value) -> None:
        if value is None and optional:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
            value >= minimum if inclusive else value > minimum) and value < 1e9
        if not ok:
            bound = f"{minimum} or more" if inclusive else f"more than {minimum}"
            raise StashError(f"{name}={value}: give a finite number of seconds, {bound}.")
    return check


def _anything(name: str, value) -> None:
    pass


def _urls(name: str, value) -> None:
    """None, one URL or a list of them; a URL holds secrets: the message never shows it."""
    items = [value] if isinstance(value, str) else value
    if value is not None and not (isinstance(items, (list, tuple)) and all(isinstance(u, str) and u for u in items)):
        raise StashError(f"{name}: give a notification URL or a list of them: {name}='[URL,URL]' (apprise's URLs).")


def _option(default, usage: str, text: str, check):
    return field(default=default, metadata={"usage": usage, "help": text, "check": check})


@dataclass(frozen=True)
class StashOptions:
    pin: str = _option("warn", "warn|strict|off", "a tool that is dirty or not at its pin: warn and run, refuse, "
                       "or say nothing", _one_of(*POLICIES))
    timeout: Optional[float] = _option(None, "SECONDS", "end the run after this long (recorded as timeout)",
                                       _seconds(0, inclusive=False, optional=True))
    objective: Any = _option(None, "KEY", "the result value a sweep job returns to Hydra (optimizing sweepers)",
                             _anything)
    grace: float = _option(5, "SECONDS", "seconds between TERM and KILL when a run is ended",
                           _seconds(0, inclusive=True))
    reuse: Optional[bool] = _option(None, "true|false", "skip a job that succeeded before with the same fingerprint "
                                    "(unset: the tool's reuse: in meta.yaml)", _one_of(None, True, False))
    tracker: Optional[str] = _option(None, "none|wandb|mlflow", "the experiment tracker the runs report to (unset: "
                                     "tracker: in meta.yaml)", _one_of(None, *TRACKERS))
    profile: Optional[str] = _option(None, "NAME", "launcher options from `profiles:` in meta.yaml (the command "
                                     "line's win over the profile's)", _anything)
    distributed: Optional[str] = _option(None, "srun|torchrun", "how a Slurm job of several tasks starts its ranks: "
                                         "one tool per task, or one torchrun per node",
                                         _one_of(None, "srun", "torchrun"))
    notify: Any = _option(None, "URL|[URL,...]", "where the end of a sweep is told (apprise URLs; unset: notify: in "
                          "meta.yaml; never recorded)", _urls)


NAMES = tuple(f.name for f in fields(StashOptions))


def defaults() -> dict:
    return {f.name: f.default for f in fields(StashOptions)}


def check_name(key: str) -> None:
    """`stash.<name>` must name a declared option."""
    if key[len("stash."):] not in NAMES:
        raise StashError(f"Unknown launcher option '{key}' (known: {', '.join('stash.' + n for n in NAMES)}).")


def check_values(options: dict) -> None:
    """Every option's value (a job's options: the defaults with the command line's values on top)."""
    for f in fields(StashOptions):
        f.metadata["check"](f"stash.{f.name}", options[f.name])


def help_lines() -> list[str]:
    """One line per option for --help: `stash.<name>=<usage>`, its help and its default."""
    lines = []
    for f in fields(StashOptions):
        default = "" if f.default is None else f" (default: {f.default})"
        lines.append(f"  {'stash.' + f.name + '=' + f.metadata['usage']:<33}{f.metadata['help']}{default}")
    return lines

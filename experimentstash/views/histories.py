"""Per-step histories as the views show them, and the direction in which each value is best.

A run's histories are the keys of its history file (meta.yaml `history:`; run.json keeps their summary, the report
reads the file for its curves) and every list of numbers in its result (`curve: [...]`). A table never shows a list:
a history has a last and a best value; a list is shown by its length and its ends.

Which way is best: `--best KEY:min|max` first; then the objective of an optimizing sweep (`stash.objective` with
`hydra.sweeper.direction`); then min for a key named like a loss or an error. Any other key has no direction, and
the views say so rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import StashError
from ..results import History, is_number, load_history, summary

LOSS_LIKE = re.compile(r"loss|error", re.IGNORECASE)
WAYS = ("min", "max")
NAMED = "named like a loss or an error"
SHOWN_ITEMS = 2  # the values at each end of a list that a cell shows


@dataclass(frozen=True)
class Direction:
    way: str  # min or max
    why: str  # --best, the sweep's objective, or NAMED


def is_series(value) -> bool:
    """A list of numbers: a history kept in the result."""
    return isinstance(value, list) and bool(value) and all(is_number(v) for v in value)


def summaries(record, result: dict) -> dict[str, dict]:
    """{key: {n, first, last, min, max}} of each history of a run: the lists of numbers of its (flattened) result,
    and its history file's keys from its record's summary (which win over a result key of the same name)."""
    out = {key: summary(value) for key, value in result.items() if is_series(value)}
    if record is not None and record.history:
        out.update(record.history["keys"])
    return out


def series(record, folder: Path, result: dict) -> tuple[History | None, str | None]:
    """The curves of a run for the report: its history file read whole (x: its step, epoch or line number) and the
    lists of numbers of its result (x: the index); and why the file could not be read."""
    history, note = None, None
    if record is not None and record.history:
        history, note = load_history(folder, record.history["file"])
    lists = {key: (list(range(len(value))), value) for key, value in result.items() if is_series(value)}
    if lists:
        history = history or History(None, 0, {})
        history.series = {**lists, **history.series}
    return history, note


def list_text(values: list) -> str:
    """A list as a cell shows it: its length and the values at its ends."""
    shown = [_number(v) for v in values]
    if len(shown) <= 2 * SHOWN_ITEMS:
        return "[" + ", ".join(shown) + "]"
    return f"[{', '.join(shown[:SHOWN_ITEMS])}, ..., {', '.join(shown[-SHOWN_ITEMS:])}] ({len(values)} values)"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def parse_best(given: list[str] | None) -> dict[str, str]:
    """`--best KEY:min|max` (repeated) as {key: way}."""
    out = {}
    for word in given or []:
        key, _, way = word.rpartition(":")
        if not key or way not in WAYS:
            raise StashError(f"--best {word}: give KEY:min or KEY:max (the key of a result value or a history).")
        out[key] = way
    return out


def directions(keys, best: dict[str, str], objective: dict[str, str]) -> dict[str, Direction]:
    """The direction of each key that has one: --best, then the sweep's objective, then a loss- or error-like
    name."""
    out = {}
    for key in keys:
        if key in best:
            out[key] = Direction(best[key], "--best")
        elif key in objective:
            out[key] = Direction(objective[key], "the sweep's objective")
        elif LOSS_LIKE.search(key.rsplit(".", 1)[-1]):
            out[key] = Direction("min", NAMED)
    return out


def stated(known: dict[str, Direction], without: list[str]) -> list[str]:
    """Lines that say which way each value is best, and which values have no direction."""
    lines = []
    by_reason: dict[tuple, list[str]] = {}
    for key, direction in known.items():
        by_reason.setdefault((direction.way, direction.why), []).append(key)
    for (way, why), keys in by_reason.items():
        lines.append(f"best is the {'lowest' if way == 'min' else 'highest'} value for {', '.join(keys)} ({why})")
    if without:
        lines.append(f"no direction known for {', '.join(without)}: give --best KEY:min or KEY:max to see its best")
    return lines

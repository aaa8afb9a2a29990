"""Which runs a view shows: the filters that `runs`, `compare` and `report` share, one implementation.

A run passes when it passes every filter given; `--last N` then keeps the N most recent. When runs were there but
the filters left none, the filter that emptied the list is named.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .. import StashError
from ..records import STATUS_WORDS, SWEEP_FILE, SweepRecord, parse_time

_DURATION = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_HEX = re.compile(r"[0-9a-f]{4,64}")


@dataclass(frozen=True)
class Filters:
    tool: str | None = None
    experiment: str | None = None  # an id, or a glob such as figure1/*
    status: str | None = None
    commit: str | None = None  # a prefix of the tool's commit
    sweep: str | None = None  # a sweep id
    since: datetime | None = None  # runs that started at or after it
    fingerprint: str | None = None  # a prefix
    last: int | None = None
    given_since: str | None = None  # --since as typed, to name it


def from_args(args, root: Path) -> Filters:
    """The filters of a command line, each checked: one clear message naming the value when it cannot be used."""
    if args.last is not None and args.last < 0:
        raise StashError(f"--last {args.last}: give a number of runs, 0 or more.")
    if args.status and args.status not in STATUS_WORDS:
        raise StashError(f"--status {args.status}: expected one of {', '.join(STATUS_WORDS)}.")
    for flag, value in (("--commit", args.commit), ("--fingerprint", args.fingerprint)):
        if value is not None and not _HEX.fullmatch(value):
            raise StashError(f"{flag} {shlex.quote(value)}: give at least 4 hex digits of it (0-9, a-f).")
    return Filters(args.tool, args.experiment, args.status, args.commit, _sweep_id(root, args.sweep),
                   _since(args.since), args.fingerprint, args.last, args.since)


def _since(given: str | None) -> datetime | None:
    if given is None:
        return None
    age = _DURATION.fullmatch(given)
    if age:
        return datetime.now(timezone.utc) - timedelta(**{_UNITS[age[2]]: int(age[1])})
    try:
        return datetime.fromisoformat(given).astimezone()  # a date or time without a zone: this machine's
    except ValueError:
        raise StashError(f"--since {shlex.quote(given)}: give a date (2025-01-31), a time (2025-01-31T14:00) or an "
                         "age (30m, 12h, 2d, 1w).") from None


def _sweep_id(root: Path, given: str | None) -> str | None:
    """The id of a sweep given by its id or its sweep dir (a folder holding sweep.json)."""
    if given is None:
        return None
    for folder in (Path(given).expanduser(), root / given):
        if (folder / SWEEP_FILE).is_file():
            return SweepRecord.read(folder).id
    return given


def select(items: list, f: Filters) -> tuple[list, str | None]:
    """The items (runs.Found or compare.Entry: each with tool, experiment, status and record) that pass the
    filters, and, when there were items but a filter left none, that filter as typed (`--experiment 'x*'`)."""
    experiment = f.experiment
    if experiment and any(c in experiment for c in "*?["):
        same_experiment = lambda i: fnmatch.fnmatchcase(i.experiment, experiment)
    else:
        same_experiment = lambda i: i.experiment == experiment
    checks = [
        ("--tool", f.tool, lambda i: i.tool == f.tool),
        ("--experiment", experiment, same_experiment),
        ("--status", f.status, lambda i: i.status == f.status),
        ("--commit", f.commit, lambda i: i.record is not None and (i.record.tool_commit or "").startswith(f.commit)),
        ("--sweep", f.sweep, lambda i: i.record is not None and (i.record.sweep or {}).get("id") == f.sweep),
        ("--since", f.given_since, lambda i: i.record is not None and _started_since(i.record, f.since)),
        ("--fingerprint", f.fingerprint,
         lambda i: i.record is not None and (i.record.fingerprint or "").startswith(f.fingerprint)),
    ]
    emptied = None
    for flag, value, keep in checks:
        if value:
            kept = [i for i in items if keep(i)]
            if items and not kept:
                emptied = f"{flag} {shlex.quote(value)}"
            items = kept
    if f.last is not None:
        items = items[-f.last:] if f.last > 0 else []
    return items, emptied


def _started_since(record, since: datetime) -> bool:
    started = parse_time(record.started_at)
    return started is not None and started >= since

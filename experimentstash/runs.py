"""`experimentstash runs`: a table (or JSON) of the past runs recorded under outputs/ and multirun/."""

from __future__ import annotations

import fnmatch
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import StashError
from .display import plain
from .invocation import warn_skipped
from .procs import owner_alive
from .records import RUN_FILE, STATUS_WORDS, BadRecord, RunRecord, Status, read_run, redact, to_json

RUN_FOLDERS = ("outputs", "multirun")


def run_files(root: Path):
    """Every run.json below outputs/ and multirun/. A run dir holds no other runs: its contents are not walked."""
    for base in RUN_FOLDERS:
        stack = [str(root / base)]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            if any(e.name == RUN_FILE for e in entries):
                yield os.path.join(folder, RUN_FILE)
                continue
            stack.extend(e.path for e in entries if e.name != ".hydra" and e.is_dir(follow_symlinks=False))


@dataclass
class Found:
    """A run record with the folder it was found in (an earlier attempt's folder is named <run dir>.attempt<k>)."""

    record: RunRecord
    folder: Path

    @property
    def label(self) -> str:
        """The run's id, with the attempt when its folder is an earlier attempt's."""
        _, dot, kind = self.folder.name.rpartition(".")
        return f"{self.record.id}.{kind}" if dot and kind.startswith(("attempt", "preempted")) else self.record.id


def load_runs(root: Path) -> tuple[list[Found], list[BadRecord]]:
    """(valid records sorted oldest first, the records that could not be read or failed validation). A record
    still `running` whose owner process is gone is shown as `lost`."""
    found, bad = [], []
    for path in run_files(root):
        folder = Path(path).parent
        try:
            record = read_run(folder)
        except BadRecord as err:
            bad.append(err)
            continue
        found.append(Found(_lost_when_gone(record), folder))
    found.sort(key=lambda f: (f.record.started_at or "", f.label))
    return found, bad


def _lost_when_gone(record: RunRecord) -> RunRecord:
    if record.status == Status.RUNNING and owner_alive(record.owner) is False:
        record.status = Status.LOST
    return record


def found_at(run_dir: Path) -> Found:
    """The validated record of one run dir given by the user, shown as load_runs shows it."""
    if not run_dir.is_dir():
        raise StashError(f"{run_dir} is not a folder: give a run dir (outputs/<tool>/<experiment>/<id>).")
    if not os.path.lexists(run_dir / RUN_FILE):
        raise StashError(
            f"{run_dir} holds no {RUN_FILE}: give a run dir such as outputs/<tool>/<experiment>/<id> "
            "(`experimentstash runs` lists them)."
        )
    return Found(_lost_when_gone(read_run(run_dir)), run_dir)


def select(runs: list[Found], tool: str | None = None, experiment: str | None = None,
           status: str | None = None, last: int | None = None, fingerprint: str | None = None
           ) -> tuple[list[Found], str | None]:
    """Filter runs; `experiment` may be a glob pattern (figure1/*); `last` keeps the N most recent. Returns the runs
    and, when runs were recorded but a filter left none, that filter (`--experiment 'x*'`)."""
    if experiment and any(c in experiment for c in "*?["):
        same_experiment = lambda f: fnmatch.fnmatchcase(f.record.experiment, experiment)
    else:
        same_experiment = lambda f: f.record.experiment == experiment
    filters = [
        ("--tool", tool, lambda f: f.record.tool == tool),
        ("--experiment", experiment, same_experiment),
        ("--status", status, lambda f: f.record.status == status),
        ("--fingerprint", fingerprint, lambda f: (f.record.fingerprint or "").startswith(fingerprint)),
    ]
    emptied = None
    for flag, value, keep in filters:
        if value:
            kept = [f for f in runs if keep(f)]
            if runs and not kept:
                emptied = f"{flag} {shlex.quote(value)}"
            runs = kept
    if last is not None:
        runs = runs[-last:] if last > 0 else []
    return runs, emptied


def check_tool(root: Path, runs: list[Found], tool: str | None) -> None:
    """A --tool that is neither registered nor named by any record is refused, with the closest name."""
    if not tool or any(f.record.tool == tool for f in runs):
        return
    from .registry import Stash, closest

    names = sorted(set(Stash.load(root).tools) | {f.record.tool for f in runs})
    if tool not in names:
        raise StashError(f"Unknown tool '{tool}'{closest(tool, names)}: the tools registered or with runs here are "
                         f"{', '.join(names) or 'none'}.")


def commit_cell(record: RunRecord) -> str:
    commit = record.tool_commit
    if not commit:
        return "-"
    marks = ""
    if record.tool_pinned_commit and record.tool_pinned_commit != commit:
        marks += "+"  # moved: checkout differs from the stash's pin
    if record.tool_dirty:
        marks += "*"  # uncommitted changes, saved as tool.diff
    return commit[:8] + marks


def short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _time_cell(value) -> str:
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError):  # not a time, or one this machine's clock cannot show
        return str(value)


def _duration_cell(value) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def result_cell(result, limit: int = 6) -> str:
    if result is None:
        return ""
    if not isinstance(result, dict):
        return short(_value(result))
    items = [f"{k}={short(_value(v))}" for k, v in list(result.items())[:limit]]
    if len(result) > limit:
        items.append(f"... ({len(result) - limit} more)")
    return " ".join(items)


COLUMNS = ("id", "started", "tool", "experiment", "overrides", "commit", "status", "duration", "result")


def add_arguments(p) -> None:
    p.add_argument("--tool", help="only runs of this tool")
    p.add_argument("--experiment", help="only runs of this experiment id (a glob pattern like 'figure1/*' works)")
    p.add_argument("--status", help="only runs with this status (succeeded, failed, running, lost, ...)")
    p.add_argument("--fingerprint", metavar="PREFIX", help="only runs whose fingerprint starts with PREFIX "
                   "(the same inputs: every attempt)")
    p.add_argument("--last", type=int, metavar="N", help="only the N most recent runs")
    p.add_argument("--json", action="store_true", help="print the run records as a JSON list, for scripts")


def run(args, root: Path) -> int:
    if args.last is not None and args.last < 0:
        raise StashError(f"--last {args.last}: give a number of runs, 0 or more.")
    if args.status and args.status not in STATUS_WORDS:
        raise StashError(f"--status {args.status}: expected one of {', '.join(STATUS_WORDS)}.")
    runs, bad = load_runs(root)
    check_tool(root, runs, args.tool)
    shown, emptied = select(runs, args.tool, args.experiment, args.status, args.last, args.fingerprint)
    if args.json:
        # one record per line: readable, and json's fast C encoder (an indent would make it the slow Python one)
        lines = ",\n".join(to_json(shown_record(f.record)) for f in shown)
        sys.stdout.write("[\n" + lines + ("\n]\n" if shown else "]\n"))
    else:
        _print_table(shown, len(runs), emptied)
    warn_skipped(root, bad)
    return 0


def shown_record(record: RunRecord) -> dict:
    """A record as output shows it: no credentials in the variables (a record from before they were redacted)."""
    data = record.to_dict()
    variables = (record.env or {}).get("variables")
    if variables:
        data["env"] = {**record.env, "variables": {k: redact(v) for k, v in variables.items()}}
    return data


def _print_table(runs: list[Found], total: int, emptied: str | None) -> None:
    """Plain aligned columns (rich's Table takes seconds for thousands of rows); status coloured on a terminal."""
    out = sys.stdout
    if not runs:
        which = f"No runs match {emptied}" if emptied else f"No runs{' match' if total else ' yet'}"
        out.write(f"{which} ({total} recorded under outputs/ and multirun/).\n")
        return
    rows = []
    for f in runs:
        r = f.record
        experiment = r.experiment + (f" (reproduces {r.get('reproduces')})" if r.get("reproduces") else "")
        rows.append((
            f.label, _time_cell(r.started_at), r.tool, experiment, short(" ".join(r.overrides)), commit_cell(r),
            r.status.value, _duration_cell(r.duration_s), result_cell(r.result),
        ))
    write_aligned(out, COLUMNS, rows, COLUMNS.index("status"))
    out.write(f"{len(runs)} of {total} runs. commit: + checkout not at the pin, * uncommitted changes (tool.diff).\n")


def write_aligned(out, header, rows, status_col: int | None = None) -> None:
    """Plain aligned columns (rich's Table takes seconds for thousands of rows); on a terminal the header is bold
    and the status words of the status column coloured."""
    header = [plain(c) for c in header]  # names and values from records: never an escape sequence
    rows = [[plain(c) for c in row] for row in rows]
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    colour = out.isatty() and not os.environ.get("NO_COLOR")

    def line(cells, head=False) -> str:
        parts = []
        for i, cell in enumerate(cells):
            text = cell if i == len(cells) - 1 else cell.ljust(widths[i])
            if colour and head:
                text = f"\033[1m{text}\033[0m"
            elif colour and i == status_col and cell in STATUS_WORDS:
                text = f"\033[{Status(cell).ansi}m{text}\033[0m"
            parts.append(text)
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(header, head=True))
    out.write("".join(line(row) for row in rows))

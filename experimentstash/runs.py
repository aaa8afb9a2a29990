"""`experimentstash runs`: a table (or JSON) of the past runs recorded under outputs/ and multirun/."""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from . import StashError

RUN_FOLDERS = ("outputs", "multirun")
STATUSES = ("running", "succeeded", "failed", "timeout", "interrupted", "cancelled", "preempted")


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
            if any(e.name == "run.json" for e in entries):
                yield os.path.join(folder, "run.json")
                continue
            stack.extend(e.path for e in entries if e.name != ".hydra" and e.is_dir(follow_symlinks=False))


def load_runs(root: Path) -> tuple[list[dict], list[str]]:
    """(records sorted oldest first, files that could not be read)."""
    records, bad = [], []
    for path in run_files(root):
        try:
            with open(path, "rb") as f:
                record = json.loads(f.read())
        except (OSError, ValueError):
            bad.append(path)
            continue
        if not isinstance(record, dict):
            bad.append(path)
            continue
        records.append(record)
    records.sort(key=lambda r: (str(r.get("started_at") or ""), str(r.get("id") or "")))
    return records, bad


def select(records: list[dict], tool: str | None = None, experiment: str | None = None,
           status: str | None = None, last: int | None = None) -> list[dict]:
    """Filter records; `experiment` may be a glob pattern (figure1/*); `last` keeps the N most recent."""
    if tool:
        records = [r for r in records if r.get("tool") == tool]
    if experiment:
        if any(c in experiment for c in "*?["):
            records = [r for r in records if fnmatch.fnmatchcase(str(r.get("experiment")), experiment)]
        else:
            records = [r for r in records if r.get("experiment") == experiment]
    if status:
        records = [r for r in records if r.get("status") == status]
    if last is not None:
        records = records[-last:] if last > 0 else []
    return records


def commit_cell(record: dict) -> str:
    commit = record.get("tool_commit")
    if not commit:
        return "-"
    marks = ""
    pinned = record.get("tool_pinned_commit")
    if pinned and pinned != commit:
        marks += "+"  # moved: checkout differs from the stash's pin
    if record.get("tool_dirty"):
        marks += "*"  # uncommitted changes, saved as tool.diff
    return commit[:8] + marks


def _time_cell(value) -> str:
    if not value:
        return "-"
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration_cell(value) -> str:
    if not isinstance(value, (int, float)):
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
        return _value(result)
    items = [f"{k}={_value(v)}" for k, v in list(result.items())[:limit]]
    if len(result) > limit:
        items.append(f"... ({len(result) - limit} more)")
    return " ".join(items)


STATUS_COLOUR = {"succeeded": "32", "running": "36", "failed": "31", "timeout": "31", "interrupted": "33"}
COLUMNS = ("id", "started", "tool", "experiment", "commit", "status", "duration", "result")


def cmd_runs(args, root: Path) -> int:
    if args.last is not None and args.last < 0:
        raise StashError(f"--last {args.last}: give a number of runs, 0 or more.")
    if args.status and args.status not in STATUSES:
        raise StashError(f"--status {args.status}: expected one of {', '.join(STATUSES)}.")
    records, bad = load_runs(root)
    shown = select(records, args.tool, args.experiment, args.status, args.last)
    if args.json:
        # one record per line: readable, and json's fast C encoder (an indent would make it the slow Python one)
        sys.stdout.write("[\n" + ",\n".join(json.dumps(r) for r in shown) + ("\n]\n" if shown else "]\n"))
    else:
        _print_table(root, shown, len(records))
    if bad:
        from .invocation import console

        names = ", ".join(os.path.relpath(p, root) for p in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        console.print(f"[yellow]warning:[/] {len(bad)} unreadable run.json skipped: {names}{more}", markup=True)
    return 0


def _print_table(root: Path, records: list[dict], total: int) -> None:
    """Plain aligned columns (rich's Table takes seconds for thousands of rows); status coloured on a terminal."""
    out = sys.stdout
    if not records:
        out.write(f"No runs{' match' if total else ' yet'} ({total} recorded under outputs/ and multirun/).\n")
        return
    rows = []
    for r in records:
        experiment = str(r.get("experiment"))
        if r.get("reproduces"):
            experiment += f" (reproduces {r['reproduces']})"
        rows.append((
            str(r.get("id")), _time_cell(r.get("started_at")), str(r.get("tool")), experiment, commit_cell(r),
            str(r.get("status")), _duration_cell(r.get("duration_s")), result_cell(r.get("result")),
        ))
    widths = [max(len(COLUMNS[i]), *(len(row[i]) for row in rows)) for i in range(len(COLUMNS))]
    colour = out.isatty() and not os.environ.get("NO_COLOR")
    status_col = COLUMNS.index("status")

    def line(cells, header=False) -> str:
        parts = []
        for i, cell in enumerate(cells):
            text = cell if i == len(cells) - 1 else cell.ljust(widths[i])
            if colour and header:
                text = f"\033[1m{text}\033[0m"
            elif colour and i == status_col and cell in STATUS_COLOUR:
                text = f"\033[{STATUS_COLOUR[cell]}m{text}\033[0m"
            parts.append(text)
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(COLUMNS, header=True))
    out.write("".join(line(row) for row in rows))
    out.write(f"{len(records)} of {total} runs. commit: + checkout not at the pin, * uncommitted changes (tool.diff).\n")

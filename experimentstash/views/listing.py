"""The runs listing (`experimentstash runs`): the runs that pass the filters, and their table, plain aligned columns
(rich's Table takes seconds for thousands of rows) with the status coloured on a terminal."""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime
from pathlib import Path

from .. import StashError
from ..bulk import in_chunks
from ..output import plain
from ..index import read_records
from ..records import STATUS_WORDS, BadRecord, RunRecord, Status, redact, to_json
from ..runs import Found, lost_when_gone
from .histories import list_text
from . import usage


def check_tool(root: Path, recorded: list[str], tool: str | None) -> None:
    """A --tool that is neither registered nor named by any record (`recorded`: the tools records name) is refused,
    with the closest name."""
    if not tool or tool in recorded:
        return
    from ..registry import Stash, closest

    names = sorted(set(Stash.load(root).tools) | set(recorded))
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
    if isinstance(value, list):
        return list_text(value)  # never in full: a history of thousands of steps
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def result_cell(result, limit: int = 6) -> str:
    if result is None:
        return ""
    if not isinstance(result, dict):
        return short(_value(result))
    items = [f"{k}={_value(v) if isinstance(v, list) else short(_value(v))}" for k, v in list(result.items())[:limit]]
    if len(result) > limit:
        items.append(f"... ({len(result) - limit} more)")
    return " ".join(items)


COLUMNS = ("id", "started", "tool", "experiment", "overrides", "commit", "status", "duration", "cpu", "peak mem",
           "result")


def shown_record(record: RunRecord) -> dict:
    """A record as output shows it: no credentials in the variables (a record from before they were redacted)."""
    data = record.to_dict()
    variables = (record.env or {}).get("variables")
    if variables:
        data["env"] = {**record.env, "variables": {k: redact(v) for k, v in variables.items()}}
    return data


def write_json(run_dirs: list[str], out) -> list[BadRecord]:
    """The record of each run (read, validated and shown as shown_record) as a JSON list, one record per line,
    written as the records are read (in bulk: bulk.py); returns the records that could not be used."""
    out.write("[\n")
    bad, first = [], True
    for lines, failed in in_chunks(_records_json, run_dirs):
        if lines:
            out.write(("" if first else ",\n") + ",\n".join(lines))
            first = False
        bad += [BadRecord(path, reason) for path, reason in failed]
    out.write("]\n" if first else "\n]\n")
    return bad


def _records_json(run_dirs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The JSON of each run's record, and (file, reason) of each that could not be used."""
    lines, failed = [], []
    for record in read_records(run_dirs):
        if isinstance(record, RunRecord):  # one line each: json's fast C encoder (an indent makes it the Python one)
            lines.append(to_json(shown_record(lost_when_gone(record))))
        else:
            failed.append(record)
    return lines, failed


def print_table(runs: list[Found], total: int, emptied: str | None) -> None:
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
            r.status.value, _duration_cell(r.duration_s), *_usage_cells(r), result_cell(r.result),
        ))
    write_aligned(out, COLUMNS, rows, COLUMNS.index("status"))
    out.write(f"{len(runs)} of {total} runs. commit: + checkout not at the pin, * uncommitted changes (tool.diff).\n")


def _usage_cells(record: RunRecord) -> tuple[str, str]:
    """CPU time and peak memory (with the largest GPU peak, when a GPU was used)."""
    used = usage.figures(record.resources)
    memory = usage.size_text(used["peak_mem_bytes"]) if "peak_mem_bytes" in used else "-"
    if "gpu_mem_bytes" in used:
        memory += f" (GPU {usage.size_text(used['gpu_mem_bytes'])})"
    return _duration_cell(used.get("cpu_s")), memory


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


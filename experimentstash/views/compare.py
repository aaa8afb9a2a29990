"""`experimentstash compare`: runs side by side, one row each: the overrides that vary, every numeric result value,
status and duration. With --over KEY the runs that differ only in KEY become one row: each value as mean ± std.

The runs come from a sweep dir (brought up to date by the sweep core), from run dirs, or from every run under
outputs/ and multirun/ (--tool, --experiment, --last). Runs still going are left out: what has ended is shown.
`report` draws its table and plots from the same rows.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import StashError
from ..output import plain
from ..overrides import override_values, varying
from ..records import RunRecord, Status, finite, flatten, job_run_dir, to_json
from . import usage
from .listing import _duration_cell, _value, write_aligned
from .summary import shown_overrides

FORMATS = ("table", "csv", "json", "md")
STAGE_HELP = "of a pipeline's sweep: one row per chain, its job of this stage (by default the chain's last stage)"
FIXED = ("run", "tool", "experiment")
ENDING = ("status", "duration")
# a spreadsheet reads a cell starting with one of these as a formula (OWASP's list; its tab and carriage return
# never start a cell: plain() shows them as \t and \r)
FORMULA_START = ("=", "+", "-", "@")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def is_number(value) -> bool:
    """A value the views compute with: an int or a float (an integer beyond a float's range is shown as text)."""
    return isinstance(value, float) or isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1e308


@dataclass
class Entry:
    """One run as the table sees it."""

    folder: Path
    tool: str
    experiment: str
    overrides: list[str]
    result: Any
    status: Status
    duration_s: float | None
    record: RunRecord | None = None  # None for a sweep job that never started

    @classmethod
    def of(cls, record: RunRecord, folder: Path) -> "Entry":
        return cls(folder, record.tool, record.experiment, record.overrides, record.result, record.status,
                   record.duration_s, record)


def sweep_entries(sweep, stage: str | None = None) -> tuple[list[Entry], list[str]]:
    """Every job of a sweep with its state brought up to date from its run.json and its backend (a reused job with
    the earlier run's record), and the notes of that refresh. A pipeline's sweep: one entry per chain, its job of
    `stage` (by default the chain's last stage) with the chain's overrides as typed."""
    notes = sweep.refresh()
    stages = _stages(sweep.jobs.values())
    if stage is not None and stage not in stages:
        what = f"its stages: {', '.join(stages)}" if stages else "it is no pipeline's sweep"
        raise StashError(f"--stage {stage}: no job of {sweep.dir.name} is of that stage ({what}).")
    if stages and stage is None:  # a chain's last stage (the gather stages come after every chain's)
        chained = _stages(job for job in sweep.jobs.values() if job.extra.get("chain") is not None)
        stage = (chained or stages)[-1]
    entries = []
    for num in sorted(sweep.jobs):
        job = sweep.jobs[num]
        overrides = job.overrides
        if stages:
            if job.extra.get("stage") != stage:
                continue
            overrides = shown_overrides(job)
        entries.append(Entry(job_run_dir(sweep.stash.root, sweep.dir, job), job.tool, job.experiment, overrides,
                             sweep.results.get(num), job.status, job.duration_s, sweep.records.get(num)))
    return entries, notes


def _stages(jobs) -> list[str]:
    """The stages of a pipeline's sweep, as its jobs come (a chain's stages in order, then the gather stages)."""
    return list(dict.fromkeys(job.extra["stage"] for job in jobs if isinstance(job.extra.get("stage"), str)))



@dataclass(frozen=True)
class Stat:
    """The numeric values of one metric over a group of runs."""

    mean: float
    std: float | None  # the sample standard deviation; None for a single value
    n: int

    @classmethod
    def of(cls, values: list) -> "Stat":
        n = len(values)
        mean = math.fsum(values) / n
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        return cls(mean, std, n)


@dataclass
class Table:
    columns: list[str]
    keys: list[str]  # the override columns: the keys whose values differ between the rows
    metrics: list[str]  # the result columns: the keys that have a numeric value in some row
    rows: list[dict]  # column -> value; a missing value is absent
    all_keys: set[str] = field(default_factory=set)  # every override key, varying or not
    over: str | None = None


def build(entries: list[Entry], base: Path) -> Table:
    """One row per run; `run` is the run dir relative to `base`."""
    parsed = [override_values(e.overrides) for e in entries]
    results = [flatten(e.result) if e.result is not None else {} for e in entries]
    keys = varying(parsed)
    numeric = {k for result in results for k, v in result.items() if is_number(v)}
    metrics = [k for k in dict.fromkeys(k for result in results for k in result) if k in numeric]
    # a column name is taken once: an override or a result key named like another column is told apart
    taken = {*FIXED, *ENDING, *usage.COLUMNS, "n"}  # n: the size of a group
    key_cols = {k: k if k not in taken else f"overrides.{k}" for k in keys}
    taken |= set(key_cols.values())
    metric_cols = {m: m if m not in taken else f"result.{m}" for m in metrics}
    prefix = str(base).rstrip(os.sep) + os.sep  # string work: pathlib's relative_to is slow for 10,000 rows
    rows = []
    for entry, values, result in zip(entries, parsed, results):
        folder = str(entry.folder)
        row = {"run": folder[len(prefix):] if folder.startswith(prefix) else folder,
               "tool": entry.tool, "experiment": entry.experiment}
        row.update({key_cols[k]: values[k] for k in keys if k in values})
        row.update({metric_cols[m]: result[m] for m in metrics if result.get(m) is not None})
        row["status"] = entry.status.value
        if entry.duration_s is not None:
            row["duration"] = entry.duration_s
        row.update(usage.figures(entry.record.resources if entry.record else None))
        rows.append(row)
    used = [c for c in usage.COLUMNS if any(c in row for row in rows)]
    columns = [*FIXED, *key_cols.values(), *metric_cols.values(), *ENDING, *used]
    return Table(columns, list(key_cols.values()), list(metric_cols.values()), rows,
                 {k for values in parsed for k in values})


def grouped(table: Table, over: str) -> Table:
    """The rows that differ only in `over` as one row: n, each metric's mean ± std, the statuses' counts."""
    if table.rows and over not in table.all_keys and over not in ("tool", "experiment"):
        known = ", ".join(sorted(table.all_keys)) or "none"
        raise StashError(f"--over {over}: no run has a tool override '{over}' (their override keys: {known}).")
    over_col = next((c for c in table.keys if c in (over, f"overrides.{over}")), over)
    ident = [c for c in ("tool", "experiment", *table.keys) if c != over_col]
    groups: dict[tuple, list[dict]] = {}
    for row in table.rows:
        groups.setdefault(tuple(row.get(c) for c in ident), []).append(row)
    used = [c for c in usage.COLUMNS if c in table.columns]
    rows = []
    for members in groups.values():
        row = {c: members[0][c] for c in ident if c in members[0]}
        row["n"] = len(members)
        for metric in table.metrics:
            values = [r[metric] for r in members if is_number(r.get(metric))]
            if values:
                row[metric] = Stat.of(values)
        statuses = Counter(r["status"] for r in members)
        row["status"] = ", ".join(f"{statuses[s.value]} {s.value}" for s in Status if statuses[s.value])
        for column in ("duration", *used):  # the mean of those that have one
            values = [r[column] for r in members if column in r]
            if values:
                row[column] = math.fsum(values) / len(values)
        rows.append(row)
    keys = [k for k in table.keys if k != over_col]
    return Table([*ident, "n", *table.metrics, *ENDING, *used], keys, table.metrics, rows, table.all_keys, over)


def _order(value):
    """Numbers (and override values that read as numbers) by value, then everything else as text."""
    if isinstance(value, Stat):
        value = value.mean
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return (1, 0.0, value)
    if is_number(value) and not math.isnan(value):
        return (0, value, "")
    return (1, 0.0, str(value))


def sort_rows(table: Table, column: str) -> None:
    """Sort by a column (`-column`: descending); numbers come before text and missing values last either way."""
    name = column[1:] if column.startswith("-") else column
    if name not in table.columns:
        raise StashError(f"--sort {column}: no such column. The columns are: {', '.join(table.columns)}.")
    present = [r for r in table.rows if name in r]
    present.sort(key=lambda r: _order(r[name])[1:], reverse=column.startswith("-"))
    present.sort(key=lambda r: _order(r[name])[0])  # stable: the order within numbers and within text stays
    table.rows = present + [r for r in table.rows if name not in r]


# --- output ---------------------------------------------------------------------------------------------------

def cell(row: dict, column: str) -> str:
    """A value as the table shows it: '-' when missing."""
    value = row.get(column)
    if value is None:
        return "-"
    if type(value) is str:
        return plain(value)
    if isinstance(value, Stat):
        text = f"{value.mean:.4g}" + (f" ± {value.std:.2g}" if value.std is not None else "")
        return text + (f" (n={value.n})" if value.n != row.get("n") else "")
    if column in ("duration", "cpu_s") and is_number(value):
        return _duration_cell(value)
    if column in usage.SIZES and is_number(value):
        return usage.size_text(value)
    return plain(_value(value))


def json_value(value):
    if isinstance(value, Stat):
        return {"mean": value.mean, "std": value.std, "n": value.n}
    return value


def _csv_value(value) -> str:
    """A cell of the CSV file: numbers as numbers; text as shown on a terminal, and never read as a formula
    (a leading ' where a spreadsheet would compute it)."""
    if value is None:
        return ""
    if is_number(value):
        return str(finite(value))
    text = plain(to_json(value) if isinstance(value, (dict, list)) else str(value))
    return "'" + text if text.startswith(FORMULA_START) and not _NUMBER.fullmatch(text) else text


def _md(text: str) -> str:
    """A header or cell of the markdown table: a '|' would end the cell (newlines are escaped by plain())."""
    return plain(text).replace("|", "\\|")


def write(table: Table, fmt: str, out, empty: str) -> None:
    """The table in a format; `empty`: what the table format says when there are no rows."""
    if fmt == "json":
        # one row per line: readable, and json's fast C encoder (an indent would make it the slow Python one)
        lines = ",\n".join(to_json({c: json_value(row.get(c)) for c in table.columns}) for row in table.rows)
        out.write("[\n" + lines + ("\n]\n" if lines else "]\n"))
    elif fmt == "csv":
        stats = set(table.metrics) if table.over else set()
        header = []
        for c in table.columns:
            header += [f"{c}.mean", f"{c}.std", f"{c}.n"] if c in stats else [c]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([_csv_value(c) for c in header])
        for row in table.rows:
            values = []
            for c in table.columns:
                value = row.get(c)
                if c in stats:
                    values += [_csv_value(value.mean), _csv_value(value.std), str(value.n)] if value else ["", "", ""]
                else:
                    values.append(_csv_value(value))
            writer.writerow(values)
    elif fmt == "md":
        out.write("| " + " | ".join(_md(c) for c in table.columns) + " |\n|" + "---|" * len(table.columns) + "\n")
        for row in table.rows:
            out.write("| " + " | ".join(_md(cell(row, c)) for c in table.columns) + " |\n")
    else:
        if not table.rows:
            out.write(f"{empty}\n")
            return
        write_aligned(out, table.columns, [[cell(row, c) for c in table.columns] for row in table.rows],
                      None if table.over else table.columns.index("status"))
        what = f"{len(table.rows)} groups over {table.over} (mean ± sample std" if table.over else f"{len(table.rows)} runs"
        out.write(what + (")" if table.over else "") + ".\n")


# --- the command ----------------------------------------------------------------------------------------------



"""The compare table (`experimentstash compare`; commands/compare.py prints it): runs side by side, one row each:
the overrides that vary, every numeric result value, each history's last and best value, status and duration; the
tool's commit when the runs ran at several. With --over KEY the runs that differ only in KEY become one row: each
value as mean ± std over the runs that succeeded. A row never pools runs that the records tell apart
(views/groups.py), and repeats of one run count once.

The runs come from a sweep dir (brought up to date by the sweep core), from run dirs, or from every run under
outputs/ and multirun/, narrowed by the filters of views/selection.py. Runs still going are left out: what has ended
is shown. `report` draws its table and plots from the same rows.
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
from ..output import plain, warn_skipped
from ..overrides import override_values, varying
from ..records import STATUS_WORDS, RunRecord, Status, finite, flatten, job_run_dir, to_json
from ..results import is_number
from ..runs import find_runs, found_at
from .groups import code_version, context, context_key, differs, latest_succeeded, stands_for
from .histories import Direction, directions, stated, summaries
from .listing import _duration_cell, _value, check_tool, commit_cell, write_aligned
from .selection import Filters, select
from . import usage
from .summary import shown_overrides

FORMATS = ("table", "csv", "json", "md")
FIXED = ("run", "tool", "experiment")
ENDING = ("status", "duration")
SHOWN_APART = ("n", "commit", "differs", "reproduces")  # columns of their own, never an override or result key
POOLED_SHOWN = 6  # the values of the --over key a group's cell lists before it counts them
# a spreadsheet reads a cell starting with one of these as a formula (OWASP's list; its tab and carriage return
# never start a cell: plain() shows them as \t and \r)
FORMULA_START = ("=", "+", "-", "@")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


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
    num: int | None = None  # its job number, in a sweep

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
                             sweep.results.get(num), job.status, job.duration_s, sweep.records.get(num), num))
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


def cell_number(cell) -> float | None:
    """A cell's number: a group's mean, or one run's value."""
    value = cell.mean if isinstance(cell, Stat) else cell
    return float(value) if is_number(value) else None


RUNS = object()  # a row's key for the runs it stands for (one, or a group's counted runs): never a column


@dataclass
class Table:
    columns: list[str]
    keys: list[str]  # the override columns: the keys whose values differ between the rows
    metrics: list[str]  # the columns of numbers: result values, and each history's last and best
    rows: list[dict]  # column -> value; a missing value is absent
    all_keys: set[str] = field(default_factory=set)  # every override key, varying or not
    over: str | None = None
    notes: list[str] = field(default_factory=list)  # what the reader must know about the table
    directions: dict[str, Direction] = field(default_factory=dict)  # metric column -> which way is best
    histories: dict[str, list[str]] = field(default_factory=dict)  # history key -> its columns (last, best)

    def data_columns(self) -> list[str]:
        """The columns of JSON and CSV: a group's repeats left out beside its n."""
        if not self.over:
            return self.columns
        at = self.columns.index("n") + 1
        return [*self.columns[:at], "repeats", *self.columns[at:]]


def build(entries: list[Entry], base: Path, best: dict[str, str] | None = None,
          objective: dict[str, str] | None = None) -> Table:
    """One row per run; `run` is the run dir relative to `base`. `best` (--best) and `objective` (an optimizing
    sweep's) give the direction of values; a history gets a best column only with one."""
    best = best or {}
    parsed = [override_values(e.overrides) for e in entries]
    results = [flatten(e.result) if e.result is not None else {} for e in entries]
    series = [summaries(e.record, result) for e, result in zip(entries, results)]
    keys = varying(parsed)
    numeric = {k for result in results for k, v in result.items() if is_number(v)}
    metrics = [k for k in dict.fromkeys(k for result in results for k in result) if k in numeric]
    history_keys = list(dict.fromkeys(k for s in series for k in s))
    unknown = [k for k in best if k not in numeric and k not in history_keys]
    if entries and unknown:
        raise StashError(f"--best {unknown[0]}: no run has a result value or history '{unknown[0]}' (they have: "
                         f"{', '.join([*metrics, *history_keys]) or 'none'}).")
    known = directions([*metrics, *history_keys], best, objective or {})
    # a column name is taken once: an override or a result key named like another column is told apart
    taken = {*FIXED, *ENDING, *SHOWN_APART, *usage.COLUMNS}
    key_cols = {k: k if k not in taken else f"overrides.{k}" for k in keys}
    taken |= set(key_cols.values())
    metric_cols = {m: m if m not in taken else f"result.{m}" for m in metrics}
    taken |= set(metric_cols.values())
    history_cols: dict[str, list[tuple[str, str]]] = {}  # key -> [(column, last | min | max)]
    for k in history_keys:
        wanted = [("last", "last")] + ([("best", known[k].way)] if k in known else [])
        history_cols[k] = [(f"{k}.{name}" if f"{k}.{name}" not in taken else f"history.{k}.{name}", stat)
                           for name, stat in wanted]
        taken |= {col for col, _ in history_cols[k]}
    versions: dict[str, set] = {}
    for e in entries:
        if e.record is not None:
            versions.setdefault(e.tool, set()).add(code_version(e.record))
    several = sorted(tool for tool, seen in versions.items() if len(seen) > 1)
    prefix = str(base).rstrip(os.sep) + os.sep  # string work: pathlib's relative_to is slow for 10,000 rows
    rows = []
    for entry, values, result, summary in zip(entries, parsed, results, series):
        folder = str(entry.folder)
        row = {"run": folder[len(prefix):] if folder.startswith(prefix) else folder,
               "tool": entry.tool, "experiment": entry.experiment, RUNS: [entry]}
        row.update({key_cols[k]: values[k] for k in keys if k in values})
        if several:
            row["commit"] = commit_cell(entry.record) if entry.record else "-"
        row.update({metric_cols[m]: result[m] for m in metrics if result.get(m) is not None})
        for k, cols in history_cols.items():
            row.update({col: summary[k][stat] for col, stat in cols if k in summary and summary[k][stat] is not None})
        row["status"] = entry.status.value
        if entry.duration_s is not None:
            row["duration"] = entry.duration_s
        row.update(usage.figures(entry.record.resources if entry.record else None))
        if entry.record is not None and entry.record.get("reproduces"):
            row["reproduces"] = str(entry.record.get("reproduces"))
        rows.append(row)
    histories = {k: [col for col, _ in cols] for k, cols in history_cols.items()}
    used = [c for c in usage.COLUMNS if any(c in row for row in rows)]
    columns = [*FIXED, *key_cols.values(), *(["commit"] if several else []), *metric_cols.values(),
               *(col for cols in histories.values() for col in cols), *ENDING, *used,
               *(["reproduces"] if any("reproduces" in row for row in rows) else [])]
    shown = {**{metric_cols[m]: known[m] for m in metrics if m in known},
             **{col: known[k] for k, cols in histories.items() if k in known for col in cols}}
    notes = [f"the runs of {tool} ran at {len(versions[tool])} versions of its code: the commit column tells them "
             "apart (* uncommitted changes, + checkout not at the pin)" for tool in several]
    if history_keys:
        notes += stated({k: known[k] for k in history_keys if k in known}, [k for k in history_keys if k not in known])
    return Table(columns, list(key_cols.values()), [*metric_cols.values(), *(c for cs in histories.values() for c in cs)],
                 rows, {k for values in parsed for k in values}, notes=notes, directions=shown, histories=histories)


def grouped(table: Table, over: str, all_runs: bool = False) -> Table:
    """The rows that differ only in `over` as one row: n (the runs that succeeded, whose values are averaged), each
    metric's mean ± std, the statuses' counts. Runs pool only when groups.context says they may; of the runs of one
    computation (repeats) the latest that succeeded counts, unless `all_runs`."""
    if over == "tool":
        raise StashError("--over tool: runs of different tools ran different code, which a view never pools into one "
                         "number. Compare them side by side (without --over, or --over seed).")
    if table.rows and over not in table.all_keys and over != "experiment":
        known = ", ".join(sorted(table.all_keys)) or "none"
        raise StashError(f"--over {over}: no run has a tool override '{over}' (their override keys: {known}).")
    over_col = next((c for c in table.keys if c in (over, f"overrides.{over}")), over)
    ident = [c for c in ("tool", "experiment", *table.keys) if c != over_col]
    buckets: dict[tuple, dict] = {}
    used = [c for c in usage.COLUMNS if c in table.columns]
    # the runs reproductions may stand for, by id
    originals = {r[RUNS][0].record.id: r[RUNS][0] for r in table.rows if r[RUNS][0].record is not None}
    for row in table.rows:
        (entry,) = row[RUNS]
        reproduces = entry.record.get("reproduces") if entry.record is not None else None
        original = originals.get(reproduces) if isinstance(reproduces, str) else None  # text, or it names none
        if original is not None and stands_for(entry.record, original.record):
            entry = original  # a repeat of the run it reproduces: it goes where that run goes
        values = override_values(entry.overrides)
        if over == "experiment":
            at, slot = entry.experiment, (entry.tool, _items(values), True)
        else:
            rest = {k: v for k, v in values.items() if k != over}
            at, slot = values.get(over), (entry.tool, entry.experiment, _items(rest), over in values)
        ctx = context(entry.record, over)
        bucket = buckets.setdefault((slot, context_key(ctx)), {"slot": slot, "context": ctx, "runs": {}})
        bucket["runs"].setdefault(at, []).append(row)
    rows = []
    for bucket in buckets.values():
        kept = []
        for same in bucket["runs"].values():
            kept += same if all_runs else [latest_succeeded(same, lambda r: r[RUNS][0])]
        row = {c: kept[0][c] for c in ident if c in kept[0]}
        if bucket["slot"][-1]:  # the runs have the key: its values
            row[over_col] = sorted(bucket["runs"], key=_order)
        ok = [r for r in kept if r[RUNS][0].status.ok]
        row["n"] = len(ok)
        row["repeats"] = sum(len(same) for same in bucket["runs"].values()) - len(kept)
        for metric in table.metrics:
            values = [r[metric] for r in ok if is_number(r.get(metric))]
            if values:
                row[metric] = Stat.of(values)
        statuses = Counter(r["status"] for r in kept)
        row["status"] = ", ".join(f"{statuses[word]} {word}" for word in STATUS_WORDS if statuses[word])
        for column in ("duration", *used):  # the mean of those that have one
            values = [r[column] for r in kept if column in r]
            if values:
                row[column] = math.fsum(values) / len(values)
        if "commit" in table.columns:
            row["commit"] = ",".join(dict.fromkeys(r["commit"] for r in kept))
        row[RUNS] = [r[RUNS][0] for r in kept]
        rows.append(row)
    by_slot: dict[tuple, list] = {}
    for row, bucket in zip(rows, buckets.values()):
        by_slot.setdefault(bucket["slot"], []).append((row, bucket["context"]))
    for members in by_slot.values():
        if len(members) > 1:
            for (row, _), text in zip(members, differs([ctx for _, ctx in members])):
                if text:
                    row["differs"] = text
    apart = [c for c in ("commit", "differs") if c in table.columns or any(c in row for row in rows)]
    notes = list(table.notes)
    left_out = sum(row["repeats"] for row in rows)
    if left_out:
        notes.append(f"{left_out} repeats of a run (the same fingerprint) left out: each group counts the latest "
                     "that succeeded (--all-runs counts every run)")
    return Table([*ident, over_col, *apart, "n", *table.metrics, *ENDING, *used], [k for k in table.keys if k != over_col],
                 table.metrics, rows, table.all_keys, over, notes, table.directions, table.histories)


def _items(values: dict) -> tuple:
    return tuple(sorted(values.items()))


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
    if column == "n" and row.get("repeats"):
        return f"{value} ({row['repeats']} repeats left out)"
    if isinstance(value, list):  # the values of the --over key that a group pools
        shown = value if len(value) <= POOLED_SHOWN else [*value[:POOLED_SHOWN - 2], "...", value[-1]]
        return plain(",".join(map(str, shown)) + (f" ({len(value)} values)" if len(value) > POOLED_SHOWN else ""))
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
        columns = table.data_columns()
        lines = ",\n".join(to_json({c: json_value(row.get(c)) for c in columns}) for row in table.rows)
        out.write("[\n" + lines + ("\n]\n" if lines else "]\n"))
    elif fmt == "csv":
        stats = set(table.metrics) if table.over else set()
        header = []
        for c in table.data_columns():
            header += [f"{c}.mean", f"{c}.std", f"{c}.n"] if c in stats else [c]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([_csv_value(c) for c in header])
        for row in table.rows:
            values = []
            for c in table.data_columns():
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


# --- the runs a view shows -----------------------------------------------------------------------------------

@dataclass
class Collected:
    entries: list[Entry]  # the runs asked for that have ended
    waiting: list[Entry]  # those that have not
    notes: list[str]  # for the user
    emptied: str | None  # the filter that left no run when there were some
    sweeps: list  # the sweeps given (launch.sweep.Sweep)
    objective: dict[str, str] = field(default_factory=dict)  # an optimizing sweep's objective: {key: min | max}


def collect(root: Path, given: list, filters: Filters, stage: str | None = None) -> Collected:
    """The runs asked for, each narrowed by the filters: of each item given, a sweep's jobs (a sweep opened by the
    sweep core) or a run dir's run (a Path); when none is given, every recorded run. `stage`: of a pipeline's sweep,
    its chains' jobs of that stage (sweep_entries)."""
    entries, notes, sweeps = [], [], []
    for item in given:
        if isinstance(item, Path):
            found = found_at(item)
            entries.append(Entry.of(found.record, found.folder))
        else:
            sweeps.append(item)
            jobs, more = sweep_entries(item, stage)
            entries += jobs
            notes += more
    if given:
        entries, emptied = select(entries, filters)
    else:  # every recorded run: the index answers the filters
        selected = find_runs(root, filters, read=True)
        check_tool(root, selected.tools, filters.tool)
        warn_skipped(root, selected.bad)
        entries, emptied = [Entry.of(f.record, f.folder) for f in selected.runs], selected.emptied
    waiting = sum(1 for e in entries if not e.status.final)
    if waiting:
        notes.append(f"{waiting} of {len(entries)} runs have not ended yet (pending or running): not shown.")
    return Collected([e for e in entries if e.status.final], [e for e in entries if not e.status.final], notes,
                     emptied, sweeps)

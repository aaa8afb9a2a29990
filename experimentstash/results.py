"""What a tool leaves in its run dir for the views: its result file (meta.yaml `result:`) and its per-step history
(`history:`), read as untrusted input.

A result is a JSON, YAML or one-row CSV file; a history is a JSON-lines file (one object per step or epoch) or a CSV
file (a header, then one row per step). Either may be named by a glob (`metrics_summary_*.csv`) that must match
exactly one file of the run dir. Files are read like records: regular files inside the run dir, bounded in size.
When a run ends, run.json keeps its result and, of its history, a summary per key (first, last, min, max), so that
tables of thousands of runs read no other file; the report reads the history file itself for its curves.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from . import StashError
from .records import MAX_RESULT_BYTES, BadRecord, flatten, inside, read_json, read_limited

MAX_HISTORY_BYTES = 64 << 20
MAX_HISTORY_KEYS = 200  # keys of a history summarized in run.json
X_KEYS = ("step", "epoch")  # a history's x axis when every line has it; else the line's number
_GLOB = re.compile(r"[*?[]")


def find(run_dir: Path, pattern: str, what: str) -> tuple[Path | None, str | None]:
    """The run dir's file that `pattern` names (a path, or a glob that must match one file), or None and why (None
    when a named file is simply not there: a run that failed before writing it)."""
    if _GLOB.search(pattern):
        matches = sorted(run_dir.glob(pattern))
        if len(matches) != 1:
            names = ", ".join(p.relative_to(run_dir).as_posix() for p in matches[:3])
            found = "no file" if not matches else f"{len(matches)} files ({names}{', ...' if len(matches) > 3 else ''})"
            return None, f"{what}: {pattern} matched {found} in the run dir; it must match one"
        path = matches[0]
    else:
        path = run_dir / pattern
        if not path.exists():
            return None, None
    try:
        return inside(run_dir, path.relative_to(run_dir), what), None
    except StashError:
        return None, f"{what}: {pattern} leads outside the run dir: not read"


def read_result(run_dir: Path, pattern: str) -> tuple[object, str | None]:
    """(the tool's result file parsed, or None; why it could not be read, or None)."""
    path, note = find(run_dir, pattern, "result")
    if path is None:
        return None, note
    shown = path.relative_to(run_dir.resolve()).as_posix()
    try:
        suffix = path.suffix.lower()
        if suffix == ".csv":
            rows = _csv_rows(read_limited(path, MAX_RESULT_BYTES))
            if len(rows) != 1:
                raise StashError(f"has {len(rows)} data rows; a result file holds one")
            return rows[0], None
        if suffix in (".yaml", ".yml"):
            from .registry import parse_yaml

            value = parse_yaml(read_limited(path, MAX_RESULT_BYTES), f"result: {shown}")
            return json.loads(json.dumps(value, default=str)), None  # dates as text, as JSON has them
        return read_json(path, MAX_RESULT_BYTES), None
    except BadRecord as err:
        return None, f"result: {shown} {err.reason}"
    except StashError as err:
        return None, str(err) if suffix != ".csv" else f"result: {shown} {err}"
    except TypeError:  # a key JSON cannot have (a date)
        return None, f"result: {shown} has a key that is not text or a number"


def cell_value(text: str):
    """A CSV cell as the number it reads as (an int, else a float: nan and inf too), None when empty, else text."""
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _csv_rows(data: bytes) -> list[dict]:
    """The data rows of a CSV file with a header, each cell as cell_value() reads it."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise StashError(f"byte {err.start} is not UTF-8 text") from None
    try:
        header, *rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except ValueError:
        raise StashError("has no header row") from None
    except csv.Error as err:
        raise StashError(f"is not valid CSV ({err})") from None
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise StashError(f"row {i + 2} has {len(row)} cells, the header {len(header)}")
    return [{name: cell_value(value) for name, value in zip(header, row)} for row in rows]


# --- histories ------------------------------------------------------------------------------------------------

@dataclass
class History:
    """A run's history: for each key, its values and the x (step, epoch or line number) of each."""

    x: str | None  # the key that gives the steps, or None: the line's number
    steps: int
    series: dict[str, tuple[list[float], list[float]]]  # key -> (xs, ys)


def is_number(value) -> bool:
    """An int or a float (not a bool); an integer beyond a float's range is no number for the views."""
    return isinstance(value, float) or isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1e308


def read_history(run_dir: Path, pattern: str) -> tuple[History | None, str | None, str | None]:
    """(the run's history, or None; its file's path in the run dir; why it could not be read)."""
    path, note = find(run_dir, pattern, "history")
    if path is None:
        return None, None, note
    shown = path.relative_to(run_dir.resolve()).as_posix()
    history, why = load_history(run_dir, shown)
    return history, shown, why


def load_history(run_dir: Path, rel: str) -> tuple[History | None, str | None]:
    """(the history file `rel` of the run dir, or None; why it could not be read)."""
    try:
        path = inside(run_dir, rel, "history")
    except StashError:
        return None, f"history: {rel} leads outside the run dir: not read"
    try:
        data = read_limited(path, MAX_HISTORY_BYTES)
        rows = _csv_rows(data) if path.suffix.lower() == ".csv" else _json_lines(data)
    except BadRecord as err:
        return None, f"history: {rel} {err.reason}"
    except StashError as err:
        return None, f"history: {rel} {err}"
    return history_of([flatten(row) for row in rows]), None


def _json_lines(data: bytes) -> list[dict]:
    """One JSON object per line; empty lines are skipped, and so is a last line without its newline that is not
    valid JSON (the run ended while writing it)."""
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:
        rows = json.loads(b"[" + b",".join(lines) + b"]")  # one parse: a line at a time is several times slower
    except (ValueError, RecursionError):
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError):
                if number == len(lines) and not data.endswith(b"\n"):
                    break
                raise StashError(f"line {number} is not valid JSON") from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise StashError(f"line {number} is not a JSON object (one object per step)")
    return rows


def history_of(rows: list[dict]) -> History:
    """The numeric values of each key over the rows; x: the first of X_KEYS that every row gives as a number."""
    x = next((k for k in X_KEYS if rows and all(is_number(row.get(k)) for row in rows)), None)
    series: dict[str, tuple[list, list]] = {}
    for number, row in enumerate(rows):
        at = row[x] if x else number
        for key, value in row.items():
            if key != x and is_number(value):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(at)
                ys.append(value)
    return History(x, len(rows), series)


def summary(values: list[float]) -> dict:
    """n, first, last, min and max of a key's values (min and max of the values that are not NaN)."""
    finite_ones = [v for v in values if not math.isnan(v)]
    return {"n": len(values), "first": values[0], "last": values[-1],
            "min": min(finite_ones) if finite_ones else None, "max": max(finite_ones) if finite_ones else None}


def run_outputs(run_dir: Path, result: str | None, history: str | None) -> dict:
    """What run.json keeps of a run's files when it ends: `result`, the `history` summary and a `note` when one of
    them could not be read."""
    out: dict = {"result": None, "history": None}
    notes = []
    if result:
        out["result"], note = read_result(run_dir, result)
        notes.append(note)
    if history:
        found, shown, note = read_history(run_dir, history)
        notes.append(note)
        if found is not None:
            keys = dict(list(found.series.items())[:MAX_HISTORY_KEYS])
            if len(found.series) > len(keys):
                notes.append(f"history: {shown} has {len(found.series)} keys; the first {len(keys)} are summarized")
            out["history"] = {"file": shown, "steps": found.steps, "x": found.x,
                              "keys": {key: summary(ys) for key, (_, ys) in keys.items()}}
    notes = [n for n in notes if n]
    if notes:
        out["note"] = "; ".join(notes)
    return out

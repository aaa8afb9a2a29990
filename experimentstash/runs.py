"""The run records of a stash: the runs under outputs/ and multirun/ that a listing asks for, looked up in the index
of the records, with the runs whose launcher is gone shown as `lost`; one run dir given by the user; and the tail of
a run's log."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import StashError
from .index import Found, Index, lost_when_gone
from .records import RUN_FILE, BadRecord, Missing, open_regular, read_run


@dataclass
class Selected:
    """The runs a listing asks for, and what it says about the rest."""

    runs: list  # the runs that pass the filters, oldest first: Found objects, or run dirs as text (find_run_dirs)
    bad: list[BadRecord]  # the records that could not be used (for one warning: output.warn_skipped)
    total: int  # how many runs are recorded
    tools: list[str]  # the tools that runs were recorded of
    emptied: str | None  # the filter that left no run when runs were recorded (`--experiment 'x*'`)


def find_runs(root: Path, filters=None, read: bool = False) -> Selected:
    """The runs under outputs/ and multirun/ that pass the filters (views/selection.py Filters; None: every run),
    looked up in the index (index.py). Each record holds what the index keeps (what the listing shows); `read=True`
    reads each returned run's whole run.json."""
    index = Index(root)
    return _selected(index, *index.select(filters, read))


def find_run_dirs(root: Path, filters=None) -> Selected:
    """The run dirs of the runs find_runs gives, without their records (to be read in bulk: views/listing.py)."""
    index = Index(root)
    return _selected(index, *index.run_dirs(filters))


def _selected(index: Index, runs: list, emptied: str | None) -> Selected:
    return Selected(runs, index.bad, index.count(), index.tools(), emptied)


def found_at(run_dir: Path) -> Found:
    """The validated record of one run dir given by the user, shown as find_runs shows it."""
    if not run_dir.is_dir():
        raise StashError(f"{run_dir} is not a folder: give a run dir (outputs/<tool>/<experiment>/<id>).")
    if not os.path.lexists(run_dir / RUN_FILE):
        raise StashError(
            f"{run_dir} holds no {RUN_FILE}: give a run dir such as outputs/<tool>/<experiment>/<id> "
            "(`experimentstash runs` lists them)."
        )
    return Found(lost_when_gone(read_run(run_dir)), run_dir)


def found_by_id(root: Path, shown: str) -> Found:
    """The run that `runs` shows with this id (an earlier attempt's as <id>.attempt<k>), found through the index."""
    folders = Index(root).by_id(shown)
    if not folders:
        raise StashError(f"{shown} is neither a folder nor the id of a recorded run: give a run dir, or an id that "
                         "`experimentstash runs` lists.")
    if len(folders) > 1:
        where = ", ".join(str(f.relative_to(root)) for f in folders)
        raise StashError(f"{shown} is the id of {len(folders)} runs ({where}): give the run dir of one.")
    return found_at(folders[0])


def tail(path: Path, lines: int = 10) -> str:
    """The last lines of a log (a regular file of the run dir: a FIFO or a link there is not read)."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except Missing:
        return ""
    except BadRecord as err:
        return f"({path.name} {err.reason}: not shown)"
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])

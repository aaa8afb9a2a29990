"""The run records of a stash: every run.json under outputs/ and multirun/, read and validated, with the runs whose
launcher is gone shown as `lost`; and the tail of a run's log."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import StashError
from .owner import owner_alive
from .records import RUN_FILE, BadRecord, Missing, RunRecord, Status, open_regular, read_run

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
    def tool(self) -> str:
        return self.record.tool

    @property
    def experiment(self) -> str:
        return self.record.experiment

    @property
    def status(self) -> Status:
        return self.record.status

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

"""What `status --watch` shows of a sweep while it runs: the counts, and each running job with its elapsed time."""

from __future__ import annotations

from datetime import datetime, timezone

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..output import cell
from ..records import JobEntry, Status, parse_time
from .summary import counts_line


def elapsed(started_at: str | None, now: datetime) -> str:
    """Seconds since a record's start time (ISO 8601), as `73s`; empty when it has none that can be read."""
    start = parse_time(started_at)
    return "" if start is None else f"{max(0.0, (now - start).total_seconds()):.0f}s"


def running(jobs: list[JobEntry]) -> list[JobEntry]:
    return [job for job in jobs if job.status == Status.RUNNING]


def live_view(sweep_id: str, jobs: list[JobEntry], started: dict[int, str | None]) -> Group:
    """The counts line and a table of the running jobs, if any (a terminal's live view)."""
    if not running(jobs):
        return Group(counts_line(sweep_id, jobs))
    now = datetime.now(timezone.utc)
    table = Table(box=None, pad_edge=False)
    for column in ("#", "tool", "experiment", "overrides", "elapsed"):
        table.add_column(column, overflow="fold")
    for job in running(jobs):
        table.add_row(str(job.num), cell(job.tool), cell(job.experiment), cell(" ".join(job.overrides)),
                      elapsed(started.get(job.num), now))
    return Group(counts_line(sweep_id, jobs), table)


def started_line(job: JobEntry) -> Text:
    """A plain line for a job that started running (logs, CI: no live view)."""
    return cell(f"job {job.num} running: {' '.join([job.tool, job.experiment, *job.overrides])}")

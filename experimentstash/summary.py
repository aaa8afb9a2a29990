"""What the user sees of a sweep: live progress while it runs, a table and every failure's log at the end."""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .invocation import console, output, shown_path
from .overrides import override_values
from .records import Status, job_run_dir

FULL_TABLE_ROWS = 100  # above this, the table lists only the jobs that did not succeed


def styled(status: str) -> str:
    return f"[{Status(status).style}]{status}[/]"


def _duration(seconds) -> str:
    return "" if seconds is None else f"{seconds:.1f}s"


class Progress:
    """A live status line on a terminal; one line per ended job otherwise (logs, CI)."""

    def __init__(self, sweep_id: str, total: int):
        self.sweep_id = sweep_id
        self.total = total
        self.started = time.monotonic()
        self.done = 0
        self._lock = threading.Lock()  # jobs end on their own threads
        self.live = Live(console=console, auto_refresh=False, transient=True) if console.is_terminal else None

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.__exit__(*exc)

    def show(self, jobs) -> None:
        if not self.live:
            return
        counts = Counter(job["status"] for job in jobs)
        parts = [f"[{s.style}]{counts[s.value]} {s.value}[/]" for s in Status if counts[s.value]]
        elapsed = time.monotonic() - self.started
        self.live.update(Text.from_markup(f"sweep {self.sweep_id}: " + ", ".join(parts) + f"  {elapsed:.0f}s"),
                         refresh=True)

    def ended(self, job: dict, root: Path) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        if self.live:
            return
        status = job["status"]
        run_dir = root / job["run_dir"]
        words = [job["tool"], job["experiment"], *job["overrides"]]
        if job["duration_s"] is not None:
            words.append(f"({_duration(job['duration_s'])})")
        words.append(str(shown_path(root, run_dir)) if run_dir.is_dir() else "-")  # a job that never started has none
        console.print(f"[{done}/{self.total}] {styled(status)} job {job['num']} {escape(' '.join(words))}",
                      highlight=False)


def print_summary(root: Path, sweep_dir: Path, jobs: list[dict], out: Console | None = None) -> None:
    """The end-of-sweep table, the tail of every failed job's stderr, and the counts."""
    _print_summary(root, sweep_dir, jobs, out or output(width=None if Console().is_terminal else 200))


def _print_summary(root: Path, sweep_dir: Path, jobs: list[dict], out: Console) -> None:
    from .execute import tail  # with Hydra behind it: imported when a table is printed, not by compare or report

    shown = jobs if len(jobs) <= FULL_TABLE_ROWS else [j for j in jobs if not Status(j["status"]).ok]
    where = shown_path(root, sweep_dir)
    table = Table(title=f"sweep {where}/", title_justify="left")
    for column in ("#", "tool", "experiment", "overrides", "status", "duration", "run dir"):
        table.add_column(column, overflow="fold")
    for job in shown:
        run_dir = job_run_dir(root, sweep_dir, job)
        if job.get("reused_from"):  # the earlier run's dir, outside this sweep
            cell = escape(str(shown_path(root, run_dir)))
        else:
            cell = run_dir.name if run_dir.is_dir() else "-"
        table.add_row(str(job["num"]), job["tool"], job["experiment"], escape(" ".join(job["overrides"])),
                      styled(job["status"]), _duration(job["duration_s"]), cell)
    if shown:
        out.print(table)
    for job in jobs:
        if job["status"] in (Status.FAILED, Status.TIMEOUT):
            run_dir = job_run_dir(root, sweep_dir, job)
            rel = shown_path(root, run_dir)
            code = f", exit code {job['exit_code']}" if job["exit_code"] is not None else ""
            out.print(f"[red]job {job['num']} {job['status']}{code}[/]: {escape(job['tool'])} "
                      f"{escape(job['experiment'])} {escape(' '.join(job['overrides']))}")
            out.print(f"  last lines of {escape(str(rel))}/stderr.log:")
            out.print(Text("    " + (tail(run_dir / "stderr.log") or "(empty)").replace("\n", "\n    ")))
    counts = Counter(job["status"] for job in jobs)
    summary = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    hidden = f" (table lists the {len(shown)} that did not succeed)" if len(shown) < len(jobs) else ""
    out.print(f"{len(jobs)} jobs: {summary}{hidden}. Record: {where}/sweep.json")
    quoted = shlex.quote(str(where))
    out.print(escape(f"Compare: experimentstash compare {quoted}{_over_hint(jobs)}"))
    out.print(escape(f"Report:  experimentstash report {quoted}"))
    if all(Status(job["status"]).final for job in jobs) and not all(Status(job["status"]).ok for job in jobs):
        out.print(escape(f"Rerun:   experimentstash rerun {quoted}"))  # the jobs that did not succeed


def _over_hint(jobs: list[dict]) -> str:
    """` --over seed` when the jobs vary a seed: the mean ± std over it is what one looks at first."""
    values: dict[str, set] = {}
    for job in jobs:
        for key, value in override_values(job["overrides"]).items():
            values.setdefault(key, set()).add(value)
    seeds = [key for key, seen in values.items() if key.rsplit(".", 1)[-1] == "seed" and len(seen) > 1]
    return f" --over {shlex.quote(seeds[0])}" if seeds else ""


@contextmanager
def quiet_when_closed():
    """Output into a closed pipe (`... | head`) ends the output, not the launcher: the rest goes nowhere."""
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def print_sweep_end(config) -> None:
    """The table of a sweep another sweeper drove through our launcher, and its best value when it optimized."""
    import yaml

    from .invocation import current
    from .records import SweepRecord

    sweep_dir = Path(config.hydra.sweep.dir).absolute()
    if not (sweep_dir / "sweep.json").is_file():
        return  # another launcher ran the jobs: nothing of ours to show
    record = SweepRecord.read(sweep_dir)
    print_summary(current.root, sweep_dir, record.jobs)
    results = sweep_dir / "optimization_results.yaml"
    if results.is_file():
        best = yaml.safe_load(results.read_text()) or {}
        if "best_value" in best:
            params = " ".join(f"{k}={v}" for k, v in (best.get("best_params") or {}).items())
            console.print(f"best value {best['best_value']} with {params or '(no parameters)'} "
                          f"({shown_path(current.root, results)})", highlight=False)

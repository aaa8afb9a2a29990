"""What the user sees of a sweep: live progress while it runs, a table and every failure's log at the end."""

from __future__ import annotations

import shlex
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..output import cell, console, output, plain, plain_lines, shown_path
from ..overrides import override_values
from ..records import JobEntry, Status, SweepRecord, job_run_dir
from ..registry import read_yaml
from ..runs import tail

FULL_TABLE_ROWS = 100  # above this, the table lists only the jobs that did not succeed, at most this many
FAILURE_LOGS = 10  # failed jobs whose stderr.log tail is shown; the others are counted
FAILED = {Status.FAILED, Status.TIMEOUT}


def styled(status: Status) -> Text:
    return Text(status.value, style=status.style)


def _job_words(job: JobEntry) -> str:
    """A job as the lines about it name it: tool, experiment and overrides (record text: shown as it is); a
    pipeline's stage job by its stage, tool, experiment and its chain's overrides."""
    stage = [f"{job.extra['stage']}:"] if isinstance(job.extra.get("stage"), str) else []
    return plain(" ".join([*stage, job.tool, job.experiment, *shown_overrides(job)]))


def shown_overrides(job: JobEntry) -> list[str]:
    """The overrides a job is shown with: a pipeline's stage job, its chain's as typed (`train.lr=0.1 seed=0`), not
    its tool's, which name upstream run dirs; any other job, its own."""
    if "stage" not in job.extra:
        return job.overrides
    words = job.extra.get("chain_overrides")
    return list(words) if isinstance(words, list) and all(isinstance(w, str) for w in words) else []


def _duration(seconds) -> str:
    return "" if seconds is None else f"{seconds:.1f}s"


def counts_line(sweep_id: str, jobs) -> Text:
    """`sweep <id>: 3 running, 2 succeeded, 1 failed`, each count in its status's colour."""
    counts = Counter(job.status for job in jobs)
    line = Text(f"sweep {plain(sweep_id)}: ")
    for i, status in enumerate(s for s in Status if counts[s]):
        line.append(", " if i else "").append(f"{counts[status]} {status.value}", status.style)
    return line


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
        elapsed = time.monotonic() - self.started
        self.live.update(counts_line(self.sweep_id, jobs).append(f"  {elapsed:.0f}s"), refresh=True)

    def ended(self, job: JobEntry, root: Path) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        if self.live:
            return
        run_dir = root / job.run_dir
        words = []
        if job.duration_s is not None:
            words.append(f"({_duration(job.duration_s)})")
        words.append(str(shown_path(root, run_dir)) if run_dir.is_dir() else "-")  # a job that never started has none
        console.print(Text.assemble(f"[{done}/{self.total}] ", styled(job.status),
                                    f" job {job.num} {_job_words(job)} {plain(' '.join(words))}"), highlight=False)


def print_summary(root: Path, sweep_dir: Path, jobs: list[JobEntry], out: Console | None = None) -> None:
    """The end-of-sweep table, the tail of every failed job's stderr, and the counts."""
    _print_summary(root, sweep_dir, jobs, out or output(width=None if Console().is_terminal else 200))


def _print_summary(root: Path, sweep_dir: Path, jobs: list[JobEntry], out: Console) -> None:
    not_ok = jobs if len(jobs) <= FULL_TABLE_ROWS else [j for j in jobs if not j.status.ok]
    shown = not_ok[:FULL_TABLE_ROWS]
    where = shown_path(root, sweep_dir)
    table = Table(title=cell(f"sweep {where}/"), title_justify="left")
    stages = any("stage" in job.extra for job in jobs)  # a pipeline's: each job's chain and stage
    for column in ("#", *(("chain", "stage") if stages else ()), "tool", "experiment", "overrides", "status",
                   "duration", "run dir"):
        table.add_column(column, overflow="fold")
    for job in shown:
        run_dir = job_run_dir(root, sweep_dir, job)
        if job.reused_from:  # the earlier run's dir, outside this sweep
            run_cell = str(shown_path(root, run_dir))
        else:
            run_cell = run_dir.name if run_dir.is_dir() else "-"
        status = styled(job.status)
        if isinstance(job.extra.get("reason"), str):  # a job cancelled because one it needs did not succeed
            status.append(f" ({plain(job.extra['reason'])})")
        place = (_chain(job.extra.get("chain")), cell(str(job.extra.get("stage", "")))) if stages else ()
        table.add_row(str(job.num), *place, cell(job.tool), cell(job.experiment), cell(" ".join(shown_overrides(job))),
                      status, _duration(job.duration_s), cell(run_cell))
    if shown:
        out.print(table)
    failed = [job for job in jobs if job.status in FAILED]
    for job in failed[:FAILURE_LOGS]:
        print_failure(root, sweep_dir, job, out)
    if len(failed) > FAILURE_LOGS:
        out.print(Text(f"... and {len(failed) - FAILURE_LOGS} more jobs failed or timed out: each one's log is "
                       f"{plain(str(where))}/<#>_<tool>_<experiment>/stderr.log."))
    counts = Counter(job.status for job in jobs)
    summary = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    hidden = ""
    if len(shown) < len(not_ok):
        hidden = f" (table lists the first {len(shown)} of the {len(not_ok)} that did not succeed)"
    elif len(shown) < len(jobs):
        hidden = f" (table lists the {len(shown)} that did not succeed)"
    out.print(Text(f"{len(jobs)} jobs: {summary}{hidden}. Record: {plain(str(where))}/sweep.json"))
    quoted = plain(shlex.quote(str(where)))
    out.print(Text(f"Compare: experimentstash compare {quoted}{_over_hint(jobs)}"))
    out.print(Text(f"Report:  experimentstash report {quoted}"))
    if all(s.final for s in counts) and not all(s.ok for s in counts):  # each status once
        out.print(Text(f"Rerun:   experimentstash rerun {quoted}"))  # the jobs that did not succeed


def _chain(chain) -> str:
    """A stage job's chain; a gather stage's is every chain."""
    return "all" if chain is None else str(chain)


def print_failure(root: Path, sweep_dir: Path, job: JobEntry, out: Console) -> None:
    """A job that failed or timed out: its status and exit code, what it ran, and the last lines of its stderr.log."""
    run_dir = job_run_dir(root, sweep_dir, job)
    code = f", exit code {job.exit_code}" if job.exit_code is not None else ""
    out.print(Text.assemble((f"job {job.num} {job.status}{code}", "red"), f": {_job_words(job)}"))
    out.print(Text(f"  last lines of {plain(str(shown_path(root, run_dir)))}/stderr.log:"))
    out.print(Text("    " + plain_lines(tail(run_dir / "stderr.log") or "(empty)").replace("\n", "\n    ")))


def _over_hint(jobs: list[JobEntry]) -> str:
    """` --over seed` when the jobs vary a seed: the mean ± std over it is what one looks at first."""
    values: dict[str, set] = {}
    for job in jobs:
        for key, value in override_values(shown_overrides(job)).items():
            values.setdefault(key, set()).add(value)
    seeds = [key for key, seen in values.items() if key.rsplit(".", 1)[-1] == "seed" and len(seen) > 1]
    return f" --over {plain(shlex.quote(seeds[0]))}" if seeds else ""


def print_sweep_end(root: Path, sweep_dir: Path) -> None:
    """The table of a sweep another sweeper drove through our launcher, and its best value when it optimized."""
    if not (sweep_dir / "sweep.json").is_file():
        return  # another launcher ran the jobs: nothing of ours to show
    record = SweepRecord.read(sweep_dir)
    print_summary(root, sweep_dir, record.jobs)
    results = sweep_dir / "optimization_results.yaml"
    if results.is_file():
        best = read_yaml(results) or {}
        if isinstance(best, dict) and "best_value" in best:
            params = best.get("best_params")
            params = " ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else ""
            console.print(Text(plain(f"best value {best['best_value']} with {params or '(no parameters)'} "
                                     f"({shown_path(root, results)})")), highlight=False)

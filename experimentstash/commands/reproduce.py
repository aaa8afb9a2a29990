"""`experimentstash reproduce <run dir> [--check]`: run a past run again exactly as its run.json records it
(launch/reproduce.py plans and runs it; views/reproduction.py compares the two with --check)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from rich.markup import escape
from rich.text import Text

from ..launch.reproduce import load_run, plan_reproduction, repointed, run_reproduction, upstream_runs
from ..output import console, output, plain, shown_path
from ..registry import Stash
from ..views.reproduction import compare

RUNS_TOOLS = True


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="the run dir of the run to reproduce (holds run.json)")
    p.add_argument("--check", action="store_true",
                   help="compare result values and output files with the original; exit 1 when they differ")
    p.add_argument("--grace", type=float, default=5.0, help="seconds between TERM and KILL when interrupted")


def run(args, root: Path) -> int:
    from ..launch.run import exit_code_for
    from ..records import Status

    stash = Stash.load(root)
    run_dir = Path(args.run_dir).expanduser()
    run_dir = (run_dir if run_dir.is_absolute() else Path.cwd() / run_dir).resolve()
    record = load_run(run_dir)
    moved: dict[str, str] = {}  # a pipeline stage's upstream runs first, each reading the reproductions before it
    for found in upstream_runs(stash, record):
        upstream = repointed(found.record, moved)
        with ExitStack() as stack:
            spec, pin = plan_reproduction(stash, upstream, found.folder, stack)
            console.print(plain(f"reproducing upstream run {upstream.id} (stage {upstream.stage}) first"),
                          highlight=False)
            outcome, signum = run_reproduction(stash, upstream, spec, pin, grace=args.grace)
        if outcome is None or not outcome.status.ok:
            status = outcome.status if outcome else Status.INTERRUPTED
            where = shown_path(stash.root, spec.run_dir)
            console.print(plain(f"{status}: the reproduction of upstream run {upstream.id}, {where}: run {record.id} "
                                "is not reproduced"), highlight=False)
            return exit_code_for(status, outcome.exit_code if outcome else None, signum)
        moved[str(found.folder)] = str(spec.run_dir)
    record = repointed(record, moved)
    with ExitStack() as stack:
        spec, pin = plan_reproduction(stash, record, run_dir, stack)
        extra = " + tool.diff" if pin.patch else ""
        console.print(plain(
            f"reproducing run {record.id}: tool {spec.tool.name} at {pin.commit[:10]}{extra}, "
            f"experiment {record.experiment}, overrides {' '.join(record.overrides) or '(none)'}"),
            highlight=False,
        )
        outcome, signum = run_reproduction(stash, record, spec, pin, grace=args.grace)
    status = outcome.status if outcome else Status.INTERRUPTED
    rel = shown_path(stash.root, spec.run_dir)
    style = "green" if status.ok else "red"
    console.print(Text.assemble((str(status), style), plain(
        f" in {(outcome.duration_s if outcome else 0) or 0:.1f}s: {rel} (reproduces {record.id})")), highlight=False)
    if not status.ok:
        console.print(plain(f"  logs: {rel}/stdout.log, {rel}/stderr.log"), highlight=False)
        return exit_code_for(status, outcome.exit_code if outcome else None, signum)
    if not args.check:
        return 0
    rows, skipped = compare(record, run_dir, outcome, spec.run_dir,
                            (stash.tools.get(record.tool) or spec.tool).check_ignore)  # as meta.yaml says now
    out = output(soft_wrap=True)  # one line per item, whatever the width: paths stay whole for grep
    for what, verdict, detail in rows:
        colour = "green" if verdict == "identical" else "red"
        out.print(f"[{colour}]{verdict:9}[/] {escape(plain(what))}  [dim]{escape(plain(detail))}[/]")
    for what in skipped:
        out.print(f"[dim]not compared[/] {escape(plain(what))}")
    differs = sum(1 for _, v, _ in rows if v == "differs")
    if not rows:
        out.print("nothing to compare: neither run wrote a result or an output file")
    elif differs:
        out.print(f"[red]differs[/]: {differs} of {len(rows)} compared items")
    else:
        out.print(f"[green]identical[/]: all {len(rows)} compared items")
    return 1 if differs else 0

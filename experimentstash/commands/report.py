"""`experimentstash report SWEEP_DIR`: one self-contained HTML file with a sweep's table and plots (views/report.py
builds the page). plotly is an optional extra: pip install 'experimentstash[report]'."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .. import StashError
from ..output import say, shown_path
from ..records import write_text
from ..views.compare import STAGE_HELP, build, grouped, sweep_entries
from ..views.report import INSTALL, page
from . import folder


def add_arguments(p) -> None:
    p.add_argument("sweep_dir", help="the sweep dir (a folder under multirun/ holding sweep.json)")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the report (default: <sweep dir>/report.html)")
    p.add_argument("--over", metavar="KEY", help="error bars over this key (e.g. seed): each point is the mean ± std "
                   "of the runs that differ only in KEY")
    p.add_argument("--stage", metavar="NAME", help=STAGE_HELP)


def run(args, root: Path) -> int:
    if importlib.util.find_spec("plotly") is None:
        raise StashError(f"report draws its charts with plotly, which is not installed here: {INSTALL}")
    from ..launch.sweep import open_sweep
    from ..registry import Stash

    sweep = open_sweep(Stash.load(root), folder(root, args.sweep_dir))
    entries, notes = sweep_entries(sweep, args.stage)
    ended = [e for e in entries if e.status.final]
    table = build(ended, sweep.dir)
    groups = grouped(table, args.over) if args.over else None
    out = Path(args.output).expanduser().absolute() if args.output else sweep.dir / "report.html"
    text = page(sweep, entries, table, groups, notes)
    try:
        write_text(out, text)
    except OSError as err:
        raise StashError(f"Cannot write {out}: {err.strerror}. Give another file with -o.") from None
    waiting = len(entries) - len(ended)
    more = f"; {waiting} jobs have not ended yet (run it again later)" if waiting else ""
    say(f"wrote {shown_path(root, out)} ({len(text.encode()) / 1e6:.1f} MB, {len(ended)} ended jobs{more}): "
        f"open {out.as_uri()} in a browser")
    return 0


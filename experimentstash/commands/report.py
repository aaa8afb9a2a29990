"""`experimentstash report [SWEEP_DIR]`: one self-contained HTML file with the table and charts of a sweep's runs,
or of the runs the filters choose (views/report.py builds the page). plotly is an optional extra:
pip install 'experimentstash[report]'."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .. import StashError
from ..output import say, shown_path
from ..records import SWEEP_FILE, write_text
from ..views.compare import build, grouped
from ..views.histories import parse_best
from ..views.report import INSTALL, Shown, page
from . import add_filters, add_view_arguments, chosen, folder


def add_arguments(p) -> None:
    p.add_argument("sweep_dir", nargs="?", help="the sweep dir (a folder under multirun/ holding sweep.json); "
                   "without it, the runs under outputs/ and multirun/ that the filters choose (then give -o)")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the report (default: <sweep dir>/report.html)")
    add_filters(p)
    add_view_arguments(p)


def run(args, root: Path) -> int:
    if importlib.util.find_spec("plotly") is None:
        raise StashError(f"report draws its charts with plotly, which is not installed here: {INSTALL}")
    if args.sweep_dir is None and not args.output:
        raise StashError("A report of the runs the filters choose needs a file to write: give -o FILE (or give a "
                         "sweep dir).")
    paths = []
    if args.sweep_dir is not None:
        found = folder(root, args.sweep_dir)
        if not os.path.lexists(found / SWEEP_FILE):
            raise StashError(f"{found} is not a sweep dir: it holds no {SWEEP_FILE}. Give a folder under multirun/.")
        paths = [str(found)]
    collected = chosen(root, args, paths)
    sweep = collected.sweeps[0] if collected.sweeps else None
    table = build(collected.entries, sweep.dir if sweep else root, parse_best(args.best), collected.objective)
    groups = grouped(table, args.over, args.all_runs) if args.over else None
    out = Path(args.output).expanduser().absolute() if args.output else sweep.dir / "report.html"
    text = page(Shown(sweep, collected, table, groups, _title(sweep, args)))
    try:
        write_text(out, text)
    except OSError as err:
        raise StashError(f"Cannot write {out}: {err.strerror}. Give another file with -o.") from None
    waiting = len(collected.waiting)
    more = f"; {waiting} jobs have not ended yet (run it again later)" if waiting else ""
    say(f"wrote {shown_path(root, out)} ({len(text.encode()) / 1e6:.1f} MB, {len(collected.entries)} ended "
        f"{'jobs' if sweep else 'runs'}{more}): open {out.as_uri()} in a browser")
    return 0


def _title(sweep, args) -> str:
    if sweep is not None:
        return f"Sweep {sweep.id}"
    chosen = [f"--{name} {getattr(args, name)}" for name in ("tool", "experiment", "status", "commit", "sweep",
                                                             "since", "fingerprint", "last")
              if getattr(args, name) is not None]
    return "Runs" + (f" ({' '.join(chosen)})" if chosen else "")

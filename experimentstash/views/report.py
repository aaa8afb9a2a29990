"""The report (`experimentstash report [SWEEP_DIR]`; commands/report.py writes it): one self-contained HTML file
with the table and charts of a sweep's runs (or of the runs the filters choose): the commits they ran at, with a
warning when several; the best run of each value that has a direction; charts whose axes the data choose
(views/charts.py); learning curves; the swept keys together; an optimizing sweep's objective over its trials; each
experiment at its best setting; the jobs that did not succeed.

The file opens offline from disk: plotly.js and the page's few lines of style and script are inlined, and its
Content-Security-Policy forbids every request. Every value from the records is escaped, for the page and for
plotly's own text (which reads tags in labels). plotly is an optional extra: pip install 'experimentstash[report]'.
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from dataclasses import dataclass

from .. import StashError
from ..overrides import override_key
from ..records import STATUS_WORDS, Status, inside
from ..results import is_number
from ..runs import tail
from .charts import (Charts, charted, curve_charts, esc, metric_charts, optimization_chart, parallel_chart,
                     side_by_side)
from .compare import Collected, Entry, Stat, Table, _order, cell
from .groups import code_version
from .histories import NAMED
from .usage import sizing

INSTALL = "pip install 'experimentstash[report]'"
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src data:"
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
code, pre { font: 12px/1.4 ui-monospace, monospace; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: .2em .7em; text-align: left; white-space: nowrap; }
.scroll { overflow-x: auto; }
table.sortable th { cursor: pointer; background: #f0f0f0; position: sticky; top: 0; }
table.sortable th[data-dir=asc]::after { content: " \\25B2"; }
table.sortable th[data-dir=desc]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.failed, .timeout, .lost { color: #b00; } .succeeded, .reused { color: #070; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }
td.best { font-weight: bold; background: #e3f4e3; }
.warning { background: #fff3cd; border-left: 4px solid #e0a800; padding: .5em .8em; margin: .5em 0; }
"""
# sorts a table by the clicked header: numbers by value, then text; missing values last either way
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "asc" ? -1 : 1;
      Array.prototype.forEach.call(heads, function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var c = row.cells[col];
        return {k: Number(c.dataset.k), v: c.dataset.k === "0" ? Number(c.dataset.v) : c.dataset.v};
      };
      rows.sort(function (x, y) {
        var a = key(x), b = key(y);
        if (a.k === 2 || b.k === 2 || a.k !== b.k) return a.k - b.k;
        return dir * (a.k === 0 ? a.v - b.v : a.v.localeCompare(b.v));
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


# --- the page -------------------------------------------------------------------------------------------------

@dataclass
class Shown:
    """What a report shows."""

    sweep: object | None  # sweep.Sweep, when the report is of one sweep
    collected: Collected
    runs: Table
    groups: Table | None
    title: str


def page(shown: Shown) -> str:
    from plotly.offline import get_plotlyjs

    charts = Charts()
    runs, groups = shown.runs, shown.groups
    rows_of = groups if groups is not None else runs
    body = [f"<h1>{esc(shown.title)}</h1>", _summary(shown), _commits(shown.collected.entries)]
    best = _best(rows_of)
    body += _best_section(rows_of, best, shown)
    if groups is not None:
        body += [f"<h2>Grouped over {esc(groups.over)}</h2>", html_table(groups, "groups", best)]
    body += ["<h2>Runs</h2>", html_table(runs, "runs", _best(runs))]
    if not runs.metrics:
        body.append("<h2>Values</h2><p>No numeric result values to plot.</p>")
    else:
        body += ["<h2>Values</h2>", *metric_charts(charts, rows_of, runs)]
    body += curve_charts(charts, runs, groups)
    explicit = [m for m in charted(runs) if m in runs.directions and runs.directions[m].why != NAMED]
    target = next(iter(explicit or [m for m in charted(runs) if m in runs.directions] or charted(runs)), None)
    if target is not None:
        why = runs.directions[target].why if target in runs.directions else "the first value"
        body += parallel_chart(charts, runs, target, why)
    body += _optimization(charts, shown)
    body += side_by_side(charts, rows_of, rows_of.directions)
    body += _failures(shown.collected.entries)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{esc(shown.title)}</title><style>{STYLE}</style><script>{get_plotlyjs()}</script></head>\n"
        "<body>\n" + "\n".join(body) + f"\n<script>{SORT_SCRIPT}</script>\n</body></html>\n"
    )


def _summary(shown: Shown) -> str:
    entries = shown.collected.entries + shown.collected.waiting
    counts = Counter(e.status.value for e in entries)
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts[s.value])
    lines = []
    if shown.sweep is not None:
        record = shown.sweep.record
        lines += [f"<p>Command line: <code>{esc(shlex.join(['experimentstash', *record.command_line]))}</code></p>",
                  f"<p>Created {esc(record.created_at)} on the {esc(record.backend)} backend. "
                  f"{len(entries)} jobs: {esc(summary)}.</p>"]
    else:
        lines.append(f"<p>{len(entries)} runs: {esc(summary)}.</p>")
    waiting = len(shown.collected.waiting)
    if waiting:
        lines.append(f"<p><b>{waiting} jobs have not ended yet</b>: this report shows the "
                     f"{len(entries) - waiting} that have.</p>")
    notes = [*shown.collected.notes, *(shown.groups or shown.runs).notes]
    lines += [f"<p>{esc(note)}</p>" for note in notes]
    lines += [f"<p>{esc(line)}</p>" for line in sizing(e.record for e in entries)]  # Slurm: requested, used
    return "\n".join(lines)


def _commits(entries: list[Entry]) -> str:
    """The tool commits the runs recorded, and a warning when a tool's runs ran at several versions of its code."""
    seen = Counter((r.tool, r.tool_commit or "-", r.tool_pinned_commit or "-", r.tool_dirty, r.stash_commit or "-")
                   for r in (e.record for e in entries) if r is not None)
    if not seen:
        return ""
    versions: dict[str, set] = {}
    for record in (e.record for e in entries if e.record is not None):
        versions.setdefault(record.tool, set()).add(code_version(record))
    several = {tool: len(v) for tool, v in versions.items() if len(v) > 1}
    warning = "".join(
        f'<div class="warning">The runs of {esc(tool)} ran at {n} versions of its code (below): the tables keep '
        "them apart, in rows of their own with their commit, and no number pools them.</div>"
        for tool, n in several.items())
    rows = "".join(
        f"<tr><td>{esc(tool)}</td><td><code>{esc(commit)}</code></td><td><code>{esc(pinned)}</code></td>"
        f"<td>{'yes (tool.diff)' if dirty else 'no'}</td><td><code>{esc(stash)}</code></td><td>{n}</td></tr>"
        for (tool, commit, pinned, dirty, stash), n in seen.items())
    return (f"<h2>Commits</h2>{warning}<table><tr><th>tool</th><th>tool commit</th><th>pinned commit</th>"
            f"<th>uncommitted changes</th><th>stash commit</th><th>runs</th></tr>{rows}</table>")


def _best(table: Table) -> dict[str, int]:
    """The row of the best value of each column with a direction: column -> row index."""
    best = {}
    for column, direction in table.directions.items():
        values = [(_number(row.get(column)), i) for i, row in enumerate(table.rows)]
        values = [(v, i) for v, i in values if v is not None and not math.isnan(v)]
        if values:
            best[column] = (min if direction.way == "min" else max)(values)[1]
    return best


def _number(cell) -> float | None:
    value = cell.mean if isinstance(cell, Stat) else cell
    return float(value) if is_number(value) else None


def _best_section(table: Table, best: dict[str, int], shown: Shown) -> list[str]:
    """The best run (or group) for each value with a direction, and which values have none."""
    if not table.metrics:
        return []
    items = []
    for column, i in best.items():
        row, direction = table.rows[i], table.directions[column]
        setting = " ".join(f"{k}={cell(row, k)}" for k in ("experiment", *table.keys) if k in row)
        where = f"{row['run']} ({setting})" if "run" in row else setting
        items.append(f"<li><b>{esc(column)}</b>: {esc(cell(row, column))} ({'lowest' if direction.way == 'min' else 'highest'}"
                     f", {esc(direction.why)}) at {esc(where)}</li>")
    without = [m for m in table.metrics if m not in table.directions]
    lines = ["<h2>Best</h2>"]
    if items:
        lines.append("<ul>" + "".join(items) + "</ul>")
    if without:
        lines.append(f"<p>No direction known for {esc(', '.join(without))}: give <code>--best KEY:min</code> or "
                     "<code>--best KEY:max</code> to mark its best.</p>")
    return lines


def html_table(table: Table, name: str, best: dict[str, int]) -> str:
    """The compare table, sortable in the page: each cell carries its sort key; the best value of each column with
    a direction is marked."""
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    marked = {(i, c) for c, i in best.items()}
    lines = []
    for i, row in enumerate(table.rows):
        cells = []
        for c in table.columns:
            if c not in row:
                cells.append('<td data-k="2" data-v="">-</td>')
                continue
            kind, number, text = _order(row[c])
            value = number if kind == 0 else text
            css = "num" if kind == 0 else row[c] if c == "status" and row[c] in STATUS_WORDS else ""
            css += " best" if (i, c) in marked else ""
            cells.append(f'<td data-k="{kind}" data-v="{esc(value)}" class="{css.strip()}">{esc(cell(row, c))}</td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{name}"><thead><tr>{head}</tr></thead><tbody>\n'
            + "\n".join(lines) + "\n</tbody></table></div>")


def _optimization(charts: Charts, shown: Shown) -> list[str]:
    """An optimizing sweeper's objective over the trials, from the jobs in their order and its
    optimization_results.yaml."""
    sweep = shown.sweep
    if sweep is None:
        return []
    words = {override_key(w): w.partition("=")[2] for w in sweep.record.command_line if "=" in w}
    results = sweep.dir / "optimization_results.yaml"
    sweeper = words.get("hydra/sweeper", "basic")
    if sweeper == "basic" and not results.is_file():
        return []
    key = words.get("stash.objective")
    if not key or key.startswith("["):
        return ["<h2>Optimization</h2><p>The objective over the trials is drawn for one stash.objective key "
                "(stash.objective=KEY).</p>"]
    trials = [(e.num, float(e.result[key])) for e in shown.collected.entries
              if e.status.ok and isinstance(e.result, dict) and is_number(e.result.get(key))]
    way = shown.collected.objective.get(key)
    why = f"{'minimize' if way == 'min' else 'maximize'}, hydra.sweeper.direction" if way else ""
    if not way and sweeper == "optuna":
        way, why = "min", "minimize, the Optuna sweeper's default"
    lines = optimization_chart(charts, sorted(trials), key, way, why or "no direction known") if trials else []
    if results.is_file():
        from ..registry import read_yaml

        try:
            found = read_yaml(results)
        except StashError:
            found = None  # the sweeper's file, unreadable: the chart above still holds
        if isinstance(found, dict) and "best_value" in found:
            lines.append(f"<p>The sweeper's best: <code>{esc(found['best_value'])}</code> with "
                         f"<code>{esc(found.get('best_params'))}</code> (optimization_results.yaml).</p>")
    return lines


def _failures(entries: list[Entry]) -> list[str]:
    failed = [e for e in entries if e.status.final and not e.status.ok]
    if not failed:
        return []
    out = [f"<h2>Jobs that did not succeed ({len(failed)})</h2>"]
    for e in failed:
        code = e.record.exit_code if e.record else None
        try:
            text = tail(inside(e.folder, "stderr.log", "stderr.log"), 20) or "(empty)"
        except StashError:
            text = "(stderr.log leads outside the run dir: not shown)"
        out.append(f"<h3>{esc(e.folder.name)}: <span class=\"{esc(e.status.value)}\">{esc(e.status.value)}</span>"
                   f"{f', exit code {esc(code)}' if code is not None else ''}</h3>"
                   f"<p>{esc(e.experiment)} <code>{esc(' '.join(e.overrides))}</code></p>"
                   f"<p>last lines of stderr.log:</p><pre>{esc(text)}</pre>")
    return out



"""`experimentstash report SWEEP_DIR`: one self-contained HTML file with a sweep's table and plots.

The file opens offline from disk: plotly.js and the page's few lines of style and script are inlined, and its
Content-Security-Policy forbids every request. Every value from the records is escaped, for the page and for
plotly's own text (which reads tags in labels). plotly is an optional extra: pip install 'experimentstash[report]'.
"""

from __future__ import annotations

import html
import shlex
from collections import Counter

from .. import StashError
from ..records import STATUS_WORDS, Status, inside
from ..runs import tail
from .compare import Entry, Stat, Table, _order, cell, is_number
from .usage import sizing

INSTALL = "pip install 'experimentstash[report]'"
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src data:"
CHART_CONFIG = {"displaylogo": False, "responsive": True}
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


def esc(value) -> str:
    return html.escape(str(value), quote=True)



# --- the page -------------------------------------------------------------------------------------------------

def page(sweep, entries: list[Entry], table: Table, groups: Table | None, notes: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    charts = Charts()
    body = [f"<h1>Sweep {esc(sweep.id)}</h1>", _summary(sweep, entries, notes), _pins(entries)]
    if groups is not None:
        body += [f"<h2>Grouped over {esc(groups.over)}</h2>", html_table(groups, "groups")]
    body += ["<h2>Runs</h2>", html_table(table, "runs")]
    body += metric_charts(charts, groups if groups is not None else table, table)
    body += _failures(entries)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>sweep {esc(sweep.id)}</title><style>{STYLE}</style><script>{get_plotlyjs()}</script></head>\n"
        "<body>\n" + "\n".join(body) + f"\n<script>{SORT_SCRIPT}</script>\n</body></html>\n"
    )


def _summary(sweep, entries: list[Entry], notes: list[str]) -> str:
    counts = Counter(e.status.value for e in entries)
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts[s.value])
    waiting = sum(1 for e in entries if not e.status.final)
    lines = [
        f"<p>Command line: <code>{esc(shlex.join(['experimentstash', *sweep.record.command_line]))}</code></p>",
        f"<p>Created {esc(sweep.record.created_at)} on the {esc(sweep.record.backend)} backend. "
        f"{len(entries)} jobs: {esc(summary)}.</p>",
    ]
    if waiting:
        lines.append(f"<p><b>{waiting} jobs have not ended yet</b>: this report shows the "
                     f"{len(entries) - waiting} that have.</p>")
    lines += [f"<p>{esc(note)}</p>" for note in notes]
    lines += [f"<p>{esc(line)}</p>" for line in sizing(e.record for e in entries)]  # Slurm: requested, used
    return "\n".join(lines)


def _pins(entries: list[Entry]) -> str:
    """The tool commits the runs recorded: usually one per tool."""
    seen = Counter((r.tool, r.tool_commit or "-", r.tool_pinned_commit or "-", r.tool_dirty, r.stash_commit or "-")
                   for r in (e.record for e in entries) if r is not None)
    if not seen:
        return ""
    rows = "".join(
        f"<tr><td>{esc(tool)}</td><td><code>{esc(commit)}</code></td><td><code>{esc(pinned)}</code></td>"
        f"<td>{'yes (tool.diff)' if dirty else 'no'}</td><td><code>{esc(stash)}</code></td><td>{n}</td></tr>"
        for (tool, commit, pinned, dirty, stash), n in seen.items())
    return ("<h2>Pins</h2><table><tr><th>tool</th><th>tool commit</th><th>pinned commit</th><th>uncommitted "
            f"changes</th><th>stash commit</th><th>runs</th></tr>{rows}</table>")


def html_table(table: Table, name: str) -> str:
    """The compare table, sortable in the page: each cell carries its sort key."""
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    lines = []
    for row in table.rows:
        cells = []
        for c in table.columns:
            if c not in row:
                cells.append('<td data-k="2" data-v="">-</td>')
                continue
            kind, number, text = _order(row[c])
            value = number if kind == 0 else text
            css = ' class="num"' if kind == 0 else f' class="{row[c]}"' if c == "status" and row[c] in STATUS_WORDS else ""
            cells.append(f'<td data-k="{kind}" data-v="{esc(value)}"{css}>{esc(cell(row, c))}</td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{name}"><thead><tr>{head}</tr></thead><tbody>\n'
            + "\n".join(lines) + "\n</tbody></table></div>")


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


# --- charts ---------------------------------------------------------------------------------------------------

def label(text) -> str:
    """Text for plotly: it reads tags and entities in labels, so record text goes in escaped (shown as typed)."""
    return html.escape(str(text), quote=False)


class Charts:
    """Numbers each chart's div: ids never come from the records."""

    def __init__(self):
        self.count = 0

    def html(self, fig) -> str:
        self.count += 1
        return ('<div class="chart">' + fig.to_html(full_html=False, include_plotlyjs=False, config=CHART_CONFIG,
                                                   div_id=f"chart-{self.count}") + "</div>")


def _experiment(row: dict, tools: int) -> str:
    return f"{row['tool']}/{row['experiment']}" if tools > 1 else row["experiment"]


def _point(value) -> tuple[float, float | None, int] | None:
    """(y, error, n) of a cell: a group's mean ± std, or one run's value."""
    if isinstance(value, Stat):
        return value.mean, value.std, value.n
    return (value, None, 1) if is_number(value) else None


def _reads_as_number(value) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def metric_charts(charts: Charts, rows_of: Table, runs: Table) -> list[str]:
    """For each metric, one chart against each swept key (a line per experiment, and per value of the other swept
    keys); then every experiment side by side."""
    import plotly.graph_objects as go

    if not runs.metrics:
        return ["<h2>Metrics</h2><p>No numeric result values to plot.</p>"]
    tools = len({r["tool"] for r in runs.rows})
    over = rows_of.over
    out = ["<h2>Metrics</h2>"]
    for metric in rows_of.metrics:
        out.append(f"<h3>{esc(metric)}</h3><div class=charts>")
        for key in rows_of.keys:
            others = [k for k in rows_of.keys if k != key]
            swept = sorted((r for r in rows_of.rows if key in r), key=lambda r: _order(r[key]))
            # the axis: numbers when every value reads as one, else the values in their sorted order
            numeric = all(_reads_as_number(r[key]) for r in swept)
            lines: dict[str, list] = {}
            for row in swept:
                point = _point(row.get(metric))
                if point is not None:
                    name = " ".join([_experiment(row, tools), *(f"{k}={row.get(k, '-')}" for k in others)])
                    lines.setdefault(name, []).append((float(row[key]) if numeric else label(row[key]), *point))
            fig = go.Figure()
            for name, points in lines.items():
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in points], y=[p[1] for p in points], name=label(name), mode="lines+markers",
                    error_y={"type": "data", "array": [p[2] or 0 for p in points], "visible": over is not None},
                    hovertext=[f"n={p[3]}" for p in points]))
            err = f" (mean ± std over {over})" if over else ""
            axis = {} if numeric else {"type": "category", "categoryorder": "array",
                                       "categoryarray": list(dict.fromkeys(label(r[key]) for r in swept))}
            fig.update_layout(title=label(f"{metric} vs {key}{err}"), xaxis={"title": label(key), **axis},
                              yaxis_title=label(metric), height=420, margin={"t": 60, "b": 50})
            out.append(charts.html(fig))
        out.append("</div>")
    out.append("<h2>Experiments side by side</h2>")
    out.append(charts.html(_side_by_side(runs, tools)))
    return out


def _side_by_side(runs: Table, tools: int):
    """One chart: a panel per metric, a bar per experiment (mean ± std over all its ended runs)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    experiments = list(dict.fromkeys(_experiment(r, tools) for r in runs.rows))
    cols = min(3, len(runs.metrics))
    rows = -(-len(runs.metrics) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[label(m) for m in runs.metrics])
    for i, metric in enumerate(runs.metrics):
        stats = {}
        for experiment in experiments:
            values = [r[metric] for r in runs.rows if _experiment(r, tools) == experiment and is_number(r.get(metric))]
            if values:
                stats[experiment] = Stat.of(values)
        fig.add_trace(go.Bar(x=[label(e) for e in stats], y=[s.mean for s in stats.values()], name=label(metric),
                             error_y={"type": "data", "array": [s.std or 0 for s in stats.values()]},
                             hovertext=[f"n={s.n}" for s in stats.values()], showlegend=False),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title="every experiment: mean ± std over its ended runs", height=320 * rows + 80,
                      margin={"t": 80, "b": 50})
    return fig

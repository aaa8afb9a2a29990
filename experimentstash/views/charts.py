"""The report's charts (plotly), each chosen by the data it shows.

- Axes: a key or value whose numbers are all positive and spread over two decades or more (max/min >= 100) gets a
  log axis; a few whole numbers (seeds, at most MAX_CATEGORIES) or words are categories; a value that is the same in
  every run gets no chart, and the page says so.
- A chart of a value against each swept key, a line per experiment and per value of the other keys (and per
  commit or other difference the table shows: a line never joins runs the table keeps apart).
- Learning curves from histories: a line per run, or with --over the mean ± std band of each group. Curves are
  thinned to a budget of points so that a page of a thousand runs stays small, and the chart says so.
- Parallel coordinates of the swept keys against one value, when two keys or more vary.
- For an optimizing sweep (Optuna): its objective over the trials, with the best so far.
- Each experiment side by side at its best setting for each value that has a direction.
"""

from __future__ import annotations

import html
import math
import statistics

from .compare import RUNS, Stat, Table, _order
from .histories import series
from ..records import flatten
from ..results import is_number

CHART_CONFIG = {"displaylogo": False, "responsive": True}
MAX_CATEGORIES = 10  # whole numbers with at most this many values are categories (seeds, a number of layers)
DECADES = 100  # max/min at which an axis of positive numbers becomes logarithmic
CURVE_POINTS = 120_000  # points of every learning curve of a page together
MIN_CURVE_POINTS = 20  # points a curve keeps however many there are
LEGEND_LINES = 20  # more lines than this: names on hover only


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


def _number(text) -> float | None:
    if is_number(text):
        return float(text)
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def spans_decades(numbers: list[float]) -> bool:
    finite = [n for n in numbers if math.isfinite(n)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= DECADES


def key_axis(values: list) -> tuple[dict, list]:
    """(the axis of a swept key, its values as placed on it): categories for words or a few whole numbers, log
    for positive numbers over decades, else linear."""
    distinct = sorted(dict.fromkeys(values), key=_order)
    numbers = [_number(v) for v in distinct]
    whole = all(n is not None and n.is_integer() for n in numbers)
    if None in numbers or whole and len(distinct) <= MAX_CATEGORIES:
        return ({"type": "category", "categoryorder": "array", "categoryarray": [label(v) for v in distinct]},
                [label(v) for v in values])
    numbers = [_number(v) for v in values]
    return {"type": "log" if spans_decades(numbers) else "linear"}, numbers


def value_axis(numbers: list[float]) -> dict:
    return {"type": "log"} if spans_decades(numbers) else {}


def _value(cell) -> float | None:
    """A cell's number: a group's mean, or one run's value."""
    value = cell.mean if isinstance(cell, Stat) else cell
    return float(value) if is_number(value) else None


def charted(table: Table) -> list[str]:
    """The metric columns worth a chart: result values, and of each history its best (else its last) value."""
    left_out = {cols[0] for cols in table.histories.values() if len(cols) > 1}
    return [m for m in table.metrics if m not in left_out]


def _line_name(row: dict, keys: list[str], tools: int) -> str:
    """A line of a chart: the experiment, the other swept keys' values, and what keeps rows apart."""
    words = [f"{row['tool']}/{row['experiment']}" if tools > 1 else row.get("experiment", "")]
    words += [f"{k}={row.get(k, '-')}" for k in keys]
    words += [f"{c} {row[c]}" for c in ("commit", "differs") if row.get(c)]
    return " ".join(w for w in words if w)


def metric_charts(charts: Charts, rows_of: Table, runs: Table) -> list[str]:
    """For each value that varies, a chart against each swept key; the constant values named once."""
    import plotly.graph_objects as go

    out, constant = [], []
    tools = len({r["tool"] for r in runs.rows})
    over = rows_of.over
    for metric in charted(rows_of):
        seen = {_value(r.get(metric)) for r in runs.rows} - {None}
        if len(seen) <= 1:
            if seen:
                constant.append(f"{metric} ({next(iter(seen)):.4g})")
            continue
        out.append(f"<h3>{esc(metric)}</h3><div class=charts>")
        for key in rows_of.keys:
            swept = sorted((r for r in rows_of.rows if key in r and _value(r.get(metric)) is not None),
                           key=lambda r: _order(r[key]))
            if not swept:
                continue
            axis, xs = key_axis([r[key] for r in swept])
            lines: dict[str, list] = {}
            for row, x in zip(swept, xs):
                cell = row[metric]
                point = (x, _value(cell), cell.std if isinstance(cell, Stat) else None,
                         cell.n if isinstance(cell, Stat) else 1)
                lines.setdefault(_line_name(row, [k for k in rows_of.keys if k != key], tools), []).append(point)
            fig = go.Figure()
            for name, points in lines.items():
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in points], y=[p[1] for p in points], name=label(name), mode="lines+markers",
                    error_y={"type": "data", "array": [p[2] or 0 for p in points], "visible": over is not None},
                    hovertext=[f"n={p[3]}" for p in points]))
            err = f" (mean ± std over {over})" if over else ""
            fig.update_layout(title=label(f"{metric} vs {key}{err}"), xaxis={"title": label(key), **axis},
                              yaxis={"title": label(metric), **value_axis([p[1] for ps in lines.values() for p in ps])},
                              height=420, margin={"t": 60, "b": 50}, showlegend=len(lines) <= LEGEND_LINES)
            out.append(charts.html(fig))
        out.append("</div>")
    if constant:
        out.append(f"<p>The same in every run, not drawn: {esc(', '.join(constant))}.</p>")
    return out


def thin(xs: list, ys: list, limit: int) -> tuple[list, list]:
    """At most `limit` points of a curve, evenly spaced, its first and last kept."""
    if len(xs) <= limit:
        return xs, ys
    step = (len(xs) - 1) / (limit - 1)
    picked = sorted({round(i * step) for i in range(limit)})
    return [xs[i] for i in picked], [ys[i] for i in picked]


def _rounded(ys: list) -> list:
    return [float(f"{y:.6g}") if math.isfinite(y) else None for y in ys]


def curve_charts(charts: Charts, runs: Table, groups: Table | None) -> list[str]:
    """A chart per history key: a line per run, or with groups the mean ± std of each group at each step."""
    import plotly.graph_objects as go

    if not runs.histories:
        return []
    loaded, notes = {}, []
    for row in runs.rows:
        (entry,) = row[RUNS]
        result = flatten(entry.result) if entry.result is not None else {}
        loaded[id(entry)], why = series(entry.record, entry.folder, result)
        if why:
            notes.append(f"{entry.folder.name}: {why}")
    out = ["<h2>Learning curves</h2>", "<div class=charts>"]
    per_chart = CURVE_POINTS // len(runs.histories)
    for key in runs.histories:
        lines = _group_lines(groups, key, loaded) if groups is not None else _run_lines(runs, key, loaded)
        if not lines:
            continue
        limit = max(MIN_CURVE_POINTS, per_chart // len(lines))
        longest = max(len(xs) for _, xs, _, _ in lines)
        fig = go.Figure()
        for name, xs, ys, std in lines:
            xs_, ys_ = thin(xs, ys, limit)
            if std is not None:
                _, std_ = thin(xs, std, limit)
                upper = [y + s for y, s in zip(ys_, std_)]
                lower = [y - s for y, s in zip(ys_, std_)]
                fig.add_trace(go.Scatter(x=xs_ + xs_[::-1], y=_rounded(upper + lower[::-1]), fill="toself",
                                         line={"width": 0}, opacity=0.25, hoverinfo="skip", showlegend=False,
                                         name=label(f"{name} ± std")))
            fig.add_trace(go.Scatter(x=xs_, y=_rounded(ys_), name=label(name), mode="lines"))
        thinned = f" (each curve thinned to {limit} of its up to {longest} points)" if longest > limit else ""
        what = f"mean ± std over {groups.over}" if groups is not None else "one line per run"
        fig.update_layout(title=label(f"{key}: {what}{thinned}"), xaxis_title=label(_x_name(loaded)),
                          yaxis={"title": label(key), **value_axis([y for _, _, ys, _ in lines for y in ys])},
                          height=420, margin={"t": 60, "b": 50}, showlegend=len(lines) <= LEGEND_LINES)
        out.append(charts.html(fig))
    out.append("</div>")
    out += [f"<p>Not drawn: {esc(note)}</p>" for note in notes[:20]]
    return out


def _x_name(loaded: dict) -> str:
    names = {h.x for h in loaded.values() if h is not None and h.steps}
    return names.pop() if len(names) == 1 and None not in names else "step"


def _run_lines(runs: Table, key: str, loaded: dict) -> list:
    lines = []
    keys = runs.keys
    for row in runs.rows:
        history = loaded[id(row[RUNS][0])]
        if history is not None and key in history.series:
            xs, ys = history.series[key]
            lines.append((" ".join([row["experiment"], *(f"{k}={row[k]}" for k in keys if k in row)]), xs, ys, None))
    return lines


def _group_lines(groups: Table, key: str, loaded: dict) -> list:
    """Each group's mean and sample std at each step that one of its runs that succeeded has."""
    lines = []
    for row in groups.rows:
        at: dict = {}
        for entry in row[RUNS]:
            history = loaded.get(id(entry))
            if entry.status.ok and history is not None and key in history.series:
                for x, y in zip(*history.series[key]):
                    at.setdefault(x, []).append(y)
        if at:
            xs = sorted(at)
            means = [statistics.fmean(at[x]) for x in xs]
            stds = [statistics.stdev(at[x]) if len(at[x]) > 1 else 0.0 for x in xs]
            lines.append((_line_name(row, groups.keys, 1) + f" (n={row['n']})", xs, means, stds))
    return lines


def parallel_chart(charts: Charts, runs: Table, metric: str, why: str) -> list[str]:
    """The swept keys of every run against one value, when two keys or more vary."""
    import plotly.graph_objects as go

    keys = [k for k in runs.keys if len({r.get(k) for r in runs.rows}) > 1]
    rows = [r for r in runs.rows if all(k in r for k in keys) and _value(r.get(metric)) is not None]
    if len(keys) < 2 or not rows:
        return []
    dimensions = []
    for key in keys:
        axis, placed = key_axis([r[key] for r in rows])
        if axis["type"] == "category":
            names = axis["categoryarray"]
            dimensions.append({"label": label(key), "values": [names.index(p) for p in placed],
                               "tickvals": list(range(len(names))), "ticktext": names})
        elif axis["type"] == "log":
            ticks = sorted(set(placed))
            dimensions.append({"label": label(f"{key} (log)"), "values": [math.log10(p) for p in placed],
                               "tickvals": [math.log10(t) for t in ticks], "ticktext": [f"{t:g}" for t in ticks]})
        else:
            dimensions.append({"label": label(key), "values": placed})
    values = [_value(r[metric]) for r in rows]
    dimensions.append({"label": label(metric), "values": values})
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line={"color": values, "colorscale": "Viridis",
                                                              "showscale": True}))
    fig.update_layout(title=label(f"the swept keys against {metric} ({why})"), height=460,
                      margin={"t": 90, "b": 40, "l": 60, "r": 60})
    return ["<h2>Swept keys together</h2>", charts.html(fig)]


def optimization_chart(charts: Charts, trials: list[tuple[int, float]], key: str, way: str | None,
                       why: str) -> list[str]:
    """An optimizing sweep's objective over its trials, and the best so far when its direction is known."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[t for t, _ in trials], y=[v for _, v in trials], mode="markers",
                               name=label(key)))
    if way:
        best, so_far = [], None
        for _, value in trials:
            so_far = value if so_far is None else (min if way == "min" else max)(so_far, value)
            best.append(so_far)
        fig.add_trace(go.Scatter(x=[t for t, _ in trials], y=best, mode="lines", line={"shape": "hv"},
                                 name="best so far"))
    fig.update_layout(title=label(f"{key} over the trials ({why})"), xaxis_title="trial (job number)",
                      yaxis={"title": label(key), **value_axis([v for _, v in trials])}, height=420,
                      margin={"t": 60, "b": 50})
    return ["<h2>Optimization</h2>", charts.html(fig)]


def side_by_side(charts: Charts, rows_of: Table, best: dict) -> list[str]:
    """One chart, a panel per value with a direction: a bar per experiment at its best setting for that value
    (mean ± std of its group with --over)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = [m for m in charted(rows_of) if m in best]
    if not metrics:
        return []
    tools = len({r["tool"] for r in rows_of.rows})
    cols = min(3, len(metrics))
    panels = -(-len(metrics) // cols)
    fig = make_subplots(rows=panels, cols=cols, subplot_titles=[label(f"{m} ({best[m].way})") for m in metrics])
    for i, metric in enumerate(metrics):
        tops: dict[str, dict] = {}
        for row in rows_of.rows:
            value = _value(row.get(metric))
            name = f"{row['tool']}/{row['experiment']}" if tools > 1 else row["experiment"]
            if value is not None and (name not in tops or _better(value, _value(tops[name][metric]), best[metric].way)):
                tops[name] = row
        cells = [tops[name][metric] for name in tops]
        fig.add_trace(go.Bar(
            x=[label(name) for name in tops], y=[_value(c) for c in cells], showlegend=False, name=label(metric),
            error_y={"type": "data", "array": [c.std or 0 if isinstance(c, Stat) else 0 for c in cells]},
            hovertext=[label(_line_name(tops[name], rows_of.keys, 1)) for name in tops]),
            row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title="each experiment at its best setting for each value (hover: the setting)",
                      height=320 * panels + 80, margin={"t": 80, "b": 50})
    return ["<h2>Experiments side by side</h2>", charts.html(fig)]


def _better(value: float, than: float, way: str) -> bool:
    return value < than if way == "min" else value > than


def esc(value) -> str:
    return html.escape(str(value), quote=True)

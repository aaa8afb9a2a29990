"""`experimentstash report`: the HTML file of a real sweep, opened in a real headless Chromium (Debian's) through
Playwright. The browser tests skip when Chromium or Playwright is missing, except where
EXPERIMENTSTASH_REQUIRE_BROWSER=1 (CI), where they must run."""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, git

# `swept` (conftest): a + b x value=1,2 x seed=0,1 succeed with score = 2 * value; crash x value x seed fails
CHROMIUM = Path("/usr/bin/chromium")
# as root, and with no network but the package registries: no sandbox, no background connections
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"no {CHROMIUM} (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "no playwright (pip install -e '.[test]')"
    return None


needs_browser = pytest.mark.skipif(
    browser_missing() is not None and not os.environ.get("EXPERIMENTSTASH_REQUIRE_BROWSER"),
    reason=f"{browser_missing()}; .ci/run installs both",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS)
        yield context
        context.close()


class Opened:
    """A report in a browser tab, with every request, console error and dialog it caused."""

    def __init__(self, browser, path: Path):
        self.requests, self.errors, self.dialogs = [], [], []
        self.page = page = browser.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function("() => [...document.querySelectorAll('.plotly-graph-div')]"
                               ".every(d => d.querySelector('svg.main-svg'))", timeout=20_000)

    def charts(self) -> dict[str, dict]:
        """Each chart by its title: the traces plotly holds, and what the SVG draws."""
        return {c["title"]: c for c in self.page.evaluate("""() =>
            [...document.querySelectorAll('.plotly-graph-div')].map(el => ({
                title: el.querySelector('.gtitle').textContent, traces: el.data.length,
                drawn: el.querySelectorAll('g.trace').length, points: el.querySelectorAll('path.point').length,
                bars: el.querySelectorAll('g.point').length, errorbars: el.querySelectorAll('g.errorbar').length,
                names: el.data.map(t => t.name) }))""")}

    def column(self, table: str, name: str) -> list[str]:
        return self.page.evaluate("""([table, name]) => {
            const t = document.getElementById(table);
            const col = [...t.tHead.rows[0].cells].findIndex(c => c.textContent === name);
            return [...t.tBodies[0].rows].map(r => r.cells[col].textContent); }""", [table, name])

    def click_header(self, table: str, name: str) -> None:
        self.page.locator(f"#{table} thead th", has_text=re.compile(f"^{re.escape(name)}$")).click()


def figures(text: str) -> dict[str, tuple[list, dict]]:
    """Each chart of a report's file by its title: (its traces, its layout), as the page hands them to plotly."""
    found = {}
    decoder = json.JSONDecoder()
    for call in re.finditer(r'Plotly\.newPlot\(\s*"chart-\d+",\s*', text):
        data, end = decoder.raw_decode(text, call.end())
        layout, _ = decoder.raw_decode(text, end + len(text[end:]) - len(text[end:].lstrip(", \n")))
        found[layout["title"]["text"]] = (data, layout)
    return found


def report(stash, folder, *args) -> str:
    out = stash.run("report", str(folder), *args)
    assert out.returncode == 0, out.stderr
    assert "wrote multirun/" in out.stderr and "open file:///" in out.stderr
    return out


def test_the_report_file_holds_the_command_pins_table_charts_and_failures(swept):
    stash, folder = swept
    report(stash, folder)
    text = (folder / "report.html").read_text()
    assert "experimentstash -m tool=fx experiment=a,b,crash value=1,2 seed=0,1" in text
    commit = json.loads((folder / "0_fx_a" / "run.json").read_text())["tool_commit"]
    assert f"<code>{commit}</code>" in text
    assert "12 jobs: 8 succeeded, 4 failed." in text
    assert text.count("boom: the fixture tool was asked to crash") == 4
    assert len(re.findall(r"<tr><td", text)) == 1 + 12  # the commits, every run
    assert "The runs of fx ran at" not in text  # one commit: no warning
    # without --over each line is one experiment and seed: score against value and against seed, and both keys
    # together; no direction is known for score: no best run marked, no experiments side by side
    assert set(figures(text)) == {"score vs value", "score vs seed", "the swept keys against score (the first value)"}
    assert "No direction known for score: give <code>--best KEY:min</code>" in text and "best" not in re.findall(
        r'class="([^"]*)"', text)
    assert "<th>cpu_s</th><th>peak_mem_bytes</th>" in text and re.search(r">\d+ MiB</td>", text)
    # self-contained: nothing is loaded from elsewhere, and the page's policy forbids it
    assert not re.search(r"<(script|img|iframe|link|embed|object)\b[^>]*\s(src|href)\s*=", text)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_output_file_and_bad_input(swept, tmp_path):
    stash, folder = swept
    out = stash.run("report", str(folder), "-o", str(tmp_path / "r.html"), "--over", "seed")
    assert out.returncode == 0, out.stderr
    assert "Grouped over seed" in (tmp_path / "r.html").read_text()
    out = stash.run("report", str(folder), "--over", "nope", "-o", str(tmp_path / "x.html"))
    assert out.returncode == 2 and "--over nope: no run has a tool override 'nope'" in out.stderr
    out = stash.run("report", "configs", "-o", str(tmp_path / "x.html"))
    assert out.returncode == 2 and "is not a sweep dir" in out.stderr
    assert not (tmp_path / "x.html").exists()


def test_without_plotly_report_says_how_to_install_it(swept, tmp_path):
    stash, folder = swept
    # the interpreter is told plotly cannot be imported, as it is where the extra is not installed
    code = "import sys; sys.modules['plotly'] = None; from experimentstash.__main__ import main; main(sys.argv[1:])"
    out = subprocess.run([sys.executable, "-c", code, "report", str(folder), "-o", str(tmp_path / "r.html")],
                         cwd=stash.root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2, out.stderr
    assert "pip install 'experimentstash[report]'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r.html").exists()


def evil_copy(stash, folder) -> Path:
    """The sweep with records that carry markup: an override value, a result key, a stderr line."""
    copy = stash.root / "multirun" / "evil"
    shutil.copytree(folder, copy)
    sweep = json.loads((copy / "sweep.json").read_text())
    sweep["jobs"][0]["overrides"].append("+note=<img src=x onerror=alert(1)>")
    (copy / "sweep.json").write_text(json.dumps(sweep))
    for name, value in (("0_fx_a", 1.5), ("1_fx_a", 2.5)):  # two values: it is drawn
        record = json.loads((copy / name / "run.json").read_text())
        record["result"]["<script>alert(2)</script>"] = value
        (copy / name / "run.json").write_text(json.dumps(record))
    (copy / "8_fx_crash" / "stderr.log").write_text("<script>alert(3)</script>\n")
    return copy


def test_record_values_are_escaped(swept):
    stash, folder = swept
    copy = evil_copy(stash, folder)
    try:
        report(stash, copy)
        text = (copy / "report.html").read_text()
        assert "<img src=x" not in text and "<script>alert" not in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;script&gt;alert(3)&lt;/script&gt;" in text
    finally:
        shutil.rmtree(copy)


@needs_browser
def test_the_report_loads_offline_and_every_chart_renders(swept, browser):
    stash, folder = swept
    report(stash, folder, "--over", "seed", "--best", "score:max")
    opened = Opened(browser, folder / "report.html")
    assert opened.errors == []
    assert opened.requests and all(url.startswith("file://") for url in opened.requests), opened.requests
    charts = opened.charts()
    side = "each experiment at its best setting for each value (hover: the setting)"
    assert set(charts) == {"score vs value (mean ± std over seed)", "the swept keys against score (--best)", side}
    # score against value: a line for a and for b (crash has no score), two points each, each with its error bar
    by_value = charts["score vs value (mean ± std over seed)"]
    assert (by_value["traces"], by_value["drawn"], by_value["points"]) == (2, 2, 4)
    assert by_value["names"] == ["a", "b"] and by_value["errorbars"] == 4
    overview = charts[side]
    assert (overview["traces"], overview["drawn"], overview["bars"]) == (1, 1, 2)


@needs_browser
def test_the_table_sorts_when_a_header_is_clicked(swept, browser):
    stash, folder = swept
    report(stash, folder)
    opened = Opened(browser, folder / "report.html")
    assert opened.column("runs", "score") == ["2", "2", "4", "4", "2", "2", "4", "4"] + ["-"] * 4
    opened.click_header("runs", "score")
    assert opened.column("runs", "score") == ["2"] * 4 + ["4"] * 4 + ["-"] * 4
    opened.click_header("runs", "score")
    assert opened.column("runs", "score") == ["4"] * 4 + ["2"] * 4 + ["-"] * 4  # missing values stay last
    opened.click_header("runs", "experiment")
    assert opened.column("runs", "experiment") == ["a"] * 4 + ["b"] * 4 + ["crash"] * 4
    assert opened.errors == []


@needs_browser
def test_markup_in_records_is_shown_as_text(swept, browser):
    stash, folder = swept
    copy = evil_copy(stash, folder)
    try:
        report(stash, copy)
        opened = Opened(browser, copy / "report.html")
        assert opened.dialogs == [] and opened.errors == []
        assert "<img src=x onerror=alert(1)>" in opened.column("runs", "note")
        assert "<script>alert(2)</script>" in opened.page.locator("#runs thead").inner_text()
        assert "<script>alert(3)</script>" in opened.page.locator("pre").first.inner_text()
        assert "<script>alert(2)</script> vs value" in opened.charts()
    finally:
        shutil.rmtree(copy)


def test_a_sweep_still_running_shows_what_has_ended(stash):
    launcher = stash.popen("-m", "tool=fx", "experiment=a,slow")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [r for r in (stash.runs("multirun") if (stash.root / "multirun").exists() else [])
                    if r["status"] == "succeeded"]
            if done:
                break
            time.sleep(0.2)
        (folder,) = (stash.root / "multirun").iterdir()
        out = stash.run("compare", str(folder), "--format", "json")
        assert out.returncode == 0, out.stderr
        assert [r["experiment"] for r in json.loads(out.stdout)] == ["a"]
        assert "1 of 2 runs have not ended yet (pending or running): not shown." in out.stderr
        out = report(stash, folder)
        assert "1 jobs have not ended yet" in out.stderr
        text = (folder / "report.html").read_text()
        assert "<b>1 jobs have not ended yet</b>: this report shows the 1 that have." in text
        assert ">0_fx_a<" in text and ">1_fx_slow<" not in text
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.communicate(timeout=60)


# --- charts chosen by the data --------------------------------------------------------------------------------

def test_axes_follow_the_data_constant_values_are_not_drawn_and_histories_draw_a_line_per_run(curved):
    stash, folder = curved  # lr=0.001,0.01,0.1 x seed=0,1; const is 1.5 in every run
    report(stash, folder)
    text = (folder / "report.html").read_text()
    charts = figures(text)
    assert charts["final_loss vs lr"][1]["xaxis"]["type"] == "log"
    seeds = charts["final_loss vs seed"][1]["xaxis"]
    assert seeds["type"] == "category" and seeds["categoryarray"] == ["0", "1"]
    assert not [title for title in charts if title.startswith("const")]
    assert "<p>The same in every run, not drawn: const (1.5).</p>" in text
    lines, layout = charts["loss: one line per run"]
    assert len(lines) == 6 and all(line["x"] == list(range(20)) for line in lines) and layout["xaxis"]["title"][
        "text"] == "step"
    first = [json.loads(line)["loss"] for line in (folder / "0_curves_fit" / "history.jsonl").read_text().splitlines()]
    assert lines[0]["y"] == [float(f"{y:.6g}") for y in first]
    (together,), _ = charts["the swept keys against final_loss (named like a loss or an error)"]
    assert [d["label"] for d in together["dimensions"]] == ["lr (log)", "seed", "final_loss"]
    # the best run of each value with a direction, marked in the table; the others named
    best = json.loads((folder / "4_curves_fit" / "run.json").read_text())["result"]["final_loss"]
    assert (f"<li><b>final_loss</b>: {best:.4g} (lowest, named like a loss or an error) at 4_curves_fit "
            "(experiment=fit lr=0.1 seed=0)</li>") in text
    assert re.search(r'<td data-k="0" data-v="[^"]+" class="num best">0\.05</td>', text)
    assert "No direction known for acc, const, val.acc.last" in text


def test_groups_draw_mean_and_std_bands_and_each_experiment_at_its_best_setting(curved):
    stash, folder = curved
    report(stash, folder, "--over", "seed", "--best", "acc:max")
    charts = figures((folder / "report.html").read_text())
    traces, _ = charts["loss: mean ± std over seed"]
    bands = [t for t in traces if t.get("fill") == "toself"]
    means = [t for t in traces if t.get("fill") != "toself"]
    assert len(bands) == len(means) == 3  # one group per lr, each with its band
    assert [m["name"] for m in means] == [f"fit lr={lr} (n=2)" for lr in ("0.001", "0.01", "0.1")]
    bars, layout = charts["each experiment at its best setting for each value (hover: the setting)"]
    assert [a["text"] for a in layout["annotations"]] == ["final_loss (min)", "acc (max)", "loss.best (min)"]
    assert [b["hovertext"] for b in bars] == [["fit lr=0.1"]] * 3


def test_an_optuna_sweep_shows_its_objective_over_the_trials_and_the_best_so_far(stash):
    out = stash.run("-m", "tool=fx", "experiment=a", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4",
                    "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=1", "value=range(1,5)",
                    "stash.objective=score")
    assert out.returncode == 0, out.stderr
    (folder,) = (stash.root / "multirun").iterdir()
    report(stash, folder)
    text = (folder / "report.html").read_text()
    (trials, best), _ = figures(text)["score over the trials (maximize, hydra.sweeper.direction)"]
    scores = [json.loads((folder / f"{num}_fx_a" / "run.json").read_text())["result"]["score"] for num in range(4)]
    assert trials["x"] == [0, 1, 2, 3] and trials["y"] == scores
    assert best["name"] == "best so far" and best["y"] == [max(scores[:i + 1]) for i in range(4)]
    assert "(highest, the sweep&#x27;s objective)" in text
    assert f"The sweeper's best: <code>{max(scores)}</code>" in text


def test_a_report_of_runs_chosen_by_filters_warns_when_they_span_commits(stash, tmp_path):
    assert stash.run("-m", "tool=fx", "experiment=a", "seed=0,1").returncode == 0
    (stash.tool / "VERSION").write_text("v2\n")
    git(stash.tool, "commit", "-qam", "v2")
    assert stash.run("-m", "tool=fx", "experiment=a", "seed=0,1").returncode == 0
    out = stash.run("report", "--tool", "fx", "--over", "seed")
    assert out.returncode == 2 and "give -o FILE" in out.stderr
    out = stash.run("report", "--tool", "fx", "--over", "seed", "-o", str(tmp_path / "all.html"))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "all.html").read_text()
    assert "<h1>Runs (--tool fx)</h1>" in text and '<div class="warning">The runs of fx ran at 2 versions' in text
    assert len(re.findall(r"<tr><td data-k", text.split('id="groups"')[1].split("</table>")[0])) == 2
    newer = git(stash.tool, "rev-parse", "HEAD")
    out = stash.run("report", "--tool", "fx", "--commit", newer[:8], "-o", str(tmp_path / "newer.html"))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "newer.html").read_text()
    assert 'class="warning"' not in text and text.count(f"<code>{newer}</code>") == 1


@needs_browser
def test_a_report_with_curves_and_parallel_coordinates_renders(curved, browser):
    stash, folder = curved
    report(stash, folder, "--over", "seed")
    opened = Opened(browser, folder / "report.html")
    assert opened.errors == [] and all(url.startswith("file://") for url in opened.requests)
    charts = opened.charts()
    assert charts["loss: mean ± std over seed"]["drawn"] == 6
    # parallel coordinates draw with WebGL, which a headless browser without a GPU lacks: plotly holds the chart
    dimensions = opened.page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')]
        .filter(el => el.data[0].type === 'parcoords').map(el => el.data[0].dimensions.map(d => d.label))""")
    assert dimensions == [["lr (log)", "seed", "final_loss"]]

"""`experimentstash compare`: a real sweep of the fixture tool, compared as a table, CSV, JSON and Markdown."""

import csv
import io
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from conftest import add_curves_tool, git, new_stash

# `swept` (conftest): a + b x value=1,2 x seed=0,1 succeed with score = 2 * value; crash x value x seed fails


def rows(stash, *args) -> list[dict]:
    out = stash.run("compare", *args, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_one_row_per_job_with_the_overrides_that_vary_and_the_numeric_results(swept):
    stash, folder = swept
    out = stash.run("compare", str(folder))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["run", "tool", "experiment", "value", "seed", "score", "status", "duration", "cpu_s",
                                "peak_mem_bytes"]
    assert "version" not in lines[0]  # a text result value is no metric column
    assert len(lines) == 1 + 12 + 1 and lines[-1] == "12 runs."
    crash = [line for line in lines if "8_fx_crash" in line][0].split()
    assert crash[1:7] == ["fx", "crash", "1", "0", "-", "failed"]

    data = rows(stash, str(folder))
    assert [r["run"] for r in data][:2] == [f"multirun/{folder.name}/0_fx_a", f"multirun/{folder.name}/1_fx_a"]
    first = data[0]
    assert (first["experiment"], first["value"], first["seed"], first["score"], first["status"]) == \
        ("a", "1", "0", 2.0, "succeeded")
    assert isinstance(first["duration"], float)
    # what the run used: its CPU time in seconds and its peak memory in bytes (the table shows sizes)
    assert 0 < first["cpu_s"] < 60 and 1 << 20 < first["peak_mem_bytes"] < 1 << 30
    assert re.search(r" \d+ MiB$", lines[1])
    assert {r["score"] for r in data if r["experiment"] == "b"} == {2.0, 4.0}
    assert all(r["score"] is None and r["status"] == "failed" for r in data if r["experiment"] == "crash")


def test_over_a_key_gives_mean_std_and_n_of_the_runs_that_differ_only_in_it(swept):
    stash, folder = swept
    data = rows(stash, str(folder), "--over", "value")
    assert len(data) == 6 and "run" not in data[0]
    group = next(r for r in data if r["experiment"] == "a" and r["seed"] == "0")
    assert group["value"] == ["1", "2"]  # the values pooled
    assert group["n"] == 2 and group["repeats"] == 0 and group["status"] == "2 succeeded"
    assert group["score"]["mean"] == 3.0 and group["score"]["n"] == 2
    assert math.isclose(group["score"]["std"], math.sqrt(2))
    crash = next(r for r in data if r["experiment"] == "crash" and r["seed"] == "1")
    # failed runs are counted apart, never in n
    assert crash["score"] is None and crash["n"] == 0 and crash["status"] == "2 failed"

    out = stash.run("compare", str(folder), "--over", "seed")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["tool", "experiment", "value", "seed", "n", "score", "status",
                                                  "duration", "cpu_s", "peak_mem_bytes"]
    assert any(line.split()[:7] == ["fx", "b", "2", "0,1", "2", "4", "±"] for line in out.stdout.splitlines())
    assert "6 groups over seed" in out.stdout

    out = stash.run("compare", str(folder), "--over", "value", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert table[0]["score.mean"] == "3.0" and table[0]["score.n"] == "2" and table[0]["n"] == "2"


def test_sort_by_any_column_missing_values_last(swept):
    stash, folder = swept
    data = rows(stash, str(folder), "--sort=-score")
    assert [r["score"] for r in data] == [4.0] * 4 + [2.0] * 4 + [None] * 4
    data = rows(stash, str(folder), "--sort", "score")
    assert [r["score"] for r in data] == [2.0] * 4 + [4.0] * 4 + [None] * 4
    data = rows(stash, str(folder), "--sort", "run")
    assert data[0]["run"].endswith("0_fx_a") and data[1]["run"].endswith("10_fx_crash")

    out = stash.run("compare", str(folder), "--sort", "experiment", "--format", "md")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "| run | tool | experiment | value | seed | score | status | duration | cpu_s | peak_mem_bytes |"
    assert lines[1] == "|---|---|---|---|---|---|---|---|---|---|" and len(lines) == 14
    assert "| crash | 1 | 0 | - | failed |" in lines[-4]


def test_run_dirs_and_selections_show_only_the_keys_that_vary(swept):
    stash, folder = swept
    data = rows(stash, str(folder / "0_fx_a"), str(folder / "2_fx_a"))
    assert [(r["value"], r["score"]) for r in data] == [("1", 2.0), ("2", 4.0)]
    assert "seed" not in data[0]  # the same in both: no column

    data = rows(stash, "--tool", "fx", "--experiment", "[ab]", "--last", "3")
    assert len(data) == 3 and {r["experiment"] for r in data} <= {"a", "b"}
    assert rows(stash, "--experiment", "nothing*") == []


def test_text_values_missing_values_and_nested_results(swept):
    stash, folder = swept
    copy = stash.root / "multirun" / "doctored"
    shutil.copytree(folder, copy)
    try:
        edits = {"0_fx_a": {"score": "n/a", "deep": {"depth": 3}}, "1_fx_a": {"score": float("nan")},
                 "2_fx_a": {"score": 7, "deep": {"depth": "x"}, "flag": True}}
        for name, result in edits.items():
            record = json.loads((copy / name / "run.json").read_text())
            record["result"] = result
            (copy / name / "run.json").write_text(json.dumps(record))
        out = stash.run("compare", str(copy), "--sort=-score")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split() == ["run", "tool", "experiment", "value", "seed", "score", "deep.depth", "status",
                                    "duration", "cpu_s", "peak_mem_bytes"]
        order = [line.split()[0].rsplit("/", 1)[-1] for line in lines[1:-1]]
        assert order[0] == "2_fx_a" and set(order[-6:-4]) == {"0_fx_a", "1_fx_a"}  # numbers, then text, then missing
        assert "n/a" in lines[1 + order.index("0_fx_a")] and "nan" in lines[1 + order.index("1_fx_a")]
        data = rows(stash, str(copy), "--over", "seed")
        group = next(r for r in data if r["experiment"] == "a" and r["value"] == "1")
        assert group["score"]["n"] == 1 and group["score"]["mean"] == "NaN"  # the text value is not averaged
        out = stash.run("compare", str(copy), "--over", "seed")
        assert "(n=1)" in out.stdout
    finally:
        shutil.rmtree(copy)


@pytest.mark.parametrize("args, says", [
    (["--over", "sed"], "--over sed: no run has a tool override 'sed' (their override keys: seed, value)"),
    (["--sort", "nope"], "--sort nope: no such column. The columns are: run, tool, experiment, value, seed, score"),
    (["--over", "tool"], "--over tool: runs of different tools ran different code"),
    (["--best", "score"], "--best score: give KEY:min or KEY:max"),
    (["--best", "nope:min"], "--best nope: no run has a result value or history 'nope' (they have: score)"),
    (["--since", "yesterday"], "--since yesterday: give a date (2025-01-31), a time (2025-01-31T14:00) or an age"),
    (["--commit", "xyz"], "--commit xyz: give at least 4 hex digits of it"),
    (["--status", "great"], "--status great: expected one of pending, running, succeeded"),
])
def test_bad_options_are_one_message_and_exit_2(swept, args, says):
    stash, folder = swept
    out = stash.run("compare", str(folder), *args)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("command", [["compare"], ["runs"], ["runs", "--json"], ["compare", "--format", "csv"]])
def test_an_unknown_tool_is_named_with_the_closest_one(swept, command):
    stash, _ = swept
    out = stash.run(*command, "--tool", "fz")
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stdout == ""
    assert "Unknown tool 'fz' (did you mean 'fx'?): the tools registered or with runs here are fx." in out.stderr


@pytest.mark.parametrize("args, says", [
    (["compare", "--experiment", "zz*"], "No runs match --experiment 'zz*'."),
    (["compare", "--experiment", "nope", "--over", "seed"], "No runs match --experiment nope."),
    (["runs", "--experiment", "nope"], "No runs match --experiment nope (12 recorded under outputs/ and multirun/)."),
    (["runs", "--experiment", "a", "--status", "timeout"], "No runs match --status timeout (12 recorded"),
    (["runs", "--fingerprint", "0000"], "No runs match --fingerprint 0000 (12 recorded"),
])
def test_a_filter_that_matches_no_run_is_named(swept, args, says):
    stash, _ = swept
    out = stash.run(*args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(says)


def test_paths_that_are_no_runs_are_refused(swept):
    stash, folder = swept
    out = stash.run("compare", "multirun/none")
    assert out.returncode == 2 and "multirun/none does not exist" in out.stderr
    out = stash.run("compare", "configs")
    assert out.returncode == 2 and "holds no run.json" in out.stderr
    bad = stash.root / "multirun" / "broken"
    bad.mkdir()
    (bad / "sweep.json").write_text('{"schema": 2, "jobs": "x"}')
    try:
        out = stash.run("compare", str(bad))
        assert out.returncode == 2 and "sweep.json: field 'jobs'" in out.stderr and "Traceback" not in out.stderr
    finally:
        shutil.rmtree(bad)


def test_the_end_of_sweep_summary_names_compare_and_report(swept):
    stash, folder = swept
    out = stash.run("status", str(folder))
    assert f"Compare: experimentstash compare multirun/{folder.name} --over seed" in out.stdout
    assert f"Report:  experimentstash report multirun/{folder.name}" in out.stdout


def doctored(swept, edits: dict, overrides: dict | None = None):
    """A copy of the swept sweep whose jobs' records carry other results (and overrides): {job dir: result}."""
    stash, folder = swept
    copy = stash.root / "multirun" / "doctored"
    shutil.copytree(folder, copy)
    for name, result in edits.items():
        record = json.loads((copy / name / "run.json").read_text())
        record["result"] = result
        record["overrides"] = (overrides or {}).get(name, record["overrides"])
        (copy / name / "run.json").write_text(json.dumps(record))
    if overrides:
        sweep = json.loads((copy / "sweep.json").read_text())
        for job in sweep["jobs"]:
            name = f"{job['num']}_fx_{job['experiment']}"
            job["overrides"] = overrides.get(name, job["overrides"])
        (copy / "sweep.json").write_text(json.dumps(sweep))
    return copy


def test_csv_cells_are_never_formulas_and_md_escapes_headers_and_cells(swept):
    stash, _ = swept
    formula = "=HYPERLINK(\"http://evil\",\"x\")"
    copy = doctored(swept, {"0_fx_a": {"=cmd|' /C calc'!A0": 1.5, "a|b": -2.5, "score": -1.5}},
                    {"0_fx_a": [f"note={formula}", "at=@SUM(A1)", "plus=+1+2", "tab=\tx", "neg=-1", "pipe=x|y"]})
    try:
        out = stash.run("compare", str(copy), "--format", "csv")
        assert out.returncode == 0, out.stderr
        table = list(csv.DictReader(io.StringIO(out.stdout)))
        header = next(csv.reader(io.StringIO(out.stdout)))
        assert "'=cmd|' /C calc'!A0" in header and "a|b" in header  # a header can be a formula too
        row = next(r for r in table if r["run"].endswith("0_fx_a"))
        assert row["note"] == "'" + formula and row["at"] == "'@SUM(A1)" and row["plus"] == "'+1+2"
        assert row["tab"] == "\\tx"  # control characters made visible: a tab never starts a cell
        assert row["neg"] == "-1" and row["score"] == "-1.5" and row["a|b"] == "-2.5"  # numbers stay numbers
        assert row["'=cmd|' /C calc'!A0"] == "1.5"
        assert all(not cell.startswith(("=", "+", "@", "\t", "\r")) for r in table for cell in r.values())

        out = stash.run("compare", str(copy), "--format", "md")
        assert out.returncode == 0, out.stderr
        head, rule, *lines = out.stdout.splitlines()
        assert "| a\\|b |" in head and "=cmd\\|' /C calc'!A0" in head
        columns = head.count(" | ") + 1
        assert rule == "|" + "---|" * columns
        for line in lines:  # every row has as many cells as the header: no '|' or newline breaks the table
            assert len(line.replace("\\|", "").split(" | ")) == columns, line
        assert any("x\\|y" in line for line in lines)
    finally:
        shutil.rmtree(copy)


def strict(text: str):
    def refuse(word):
        raise ValueError(f"{word} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_are_strict_json_everywhere(stash):
    """The tool writes NaN and Infinity (Python's json does): run.json, runs --json and compare's JSON stay JSON."""
    for value in ("nan", "inf", "-inf"):
        out = stash.run("tool=fx", "experiment=a", f"value={value}")
        assert out.returncode == 0, out.stderr
    records = sorted((p for p in (stash.root / "outputs").rglob("run.json")), key=lambda p: p.stat().st_mtime)
    assert [strict(p.read_text())["result"]["score"] for p in records] == ["NaN", "Infinity", "-Infinity"]
    listed = stash.run("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["result"]["score"] for r in strict(listed.stdout)] == ["NaN", "Infinity", "-Infinity"]
    out = stash.run("compare", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert sorted(r["score"] for r in strict(out.stdout)) == sorted(["NaN", "Infinity", "-Infinity"])
    table = stash.run("compare", "--sort", "score").stdout  # read back as numbers: sorted as numbers
    assert [line.split()[-6] for line in table.splitlines()[1:-1]] == ["-inf", "inf", "nan"]  # "25 MiB": 2 words
    diff = stash.run("diff", str(records[0].parent), str(records[1].parent), "--format", "json")
    assert diff.returncode == 0, diff.stderr
    assert strict(diff.stdout)["result"]["items"][0]["b"] == "Infinity"
    again = stash.run("tool=fx", "experiment=a", "value=nan", "stash.reuse=true")  # its signed record still holds
    assert again.returncode == 0 and f"reused: run {records[0].parent.name}" in again.stderr, again.stderr


# --- runs that must not be pooled, repeats, filters ------------------------------------------------------------

def new_sweep(stash, *args) -> Path:
    """Run a sweep of experiment a; its sweep dir."""
    before = set((stash.root / "multirun").iterdir()) if (stash.root / "multirun").exists() else set()
    out = stash.run("-m", "tool=fx", "experiment=a", *args)
    assert out.returncode == 0, out.stderr
    (folder,) = set((stash.root / "multirun").iterdir()) - before
    return folder


@pytest.fixture(scope="module")
def reruns(tmp_path_factory):
    """Runs of experiment a (score 2) at seeds 0 and 1: a sweep, the same sweep again, a reproduction of a run,
    a run without a seed, the sweep with the experiment file changed (a comment only), the sweep at a newer tool
    commit, and a run at seed 5 that failed after writing a score of 100 (in the year 2000)."""
    stash = new_stash(tmp_path_factory.mktemp("reruns"))
    sweeps = {"first": new_sweep(stash, "seed=0,1"), "again": new_sweep(stash, "seed=0,1")}
    out = stash.run("reproduce", str(sweeps["first"] / "0_fx_a"))
    assert out.returncode == 0, out.stderr
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    original = (stash.root / "configs/fx/experiment/a.yaml").read_text()
    stash.write("configs/fx/experiment/a.yaml", original + "# the same value, another file\n")
    sweeps["edited"] = new_sweep(stash, "seed=0,1")
    stash.write("configs/fx/experiment/a.yaml", original)
    (stash.tool / "VERSION").write_text("v2\n")
    git(stash.tool, "commit", "-qam", "v2")
    sweeps["newer"] = new_sweep(stash, "seed=0,1")
    failed = stash.root / "outputs" / "fx" / "a" / "failed-at-seed-5"
    shutil.copytree(sweeps["first"] / "1_fx_a", failed)
    record = json.loads((failed / "run.json").read_text())
    record.update(status="failed", exit_code=1, overrides=["seed=5"], result={"score": 100.0}, id="failed-at-seed-5",
                  run_dir="outputs/fx/a/failed-at-seed-5", started_at="2000-06-01T00:00:00.000Z",
                  ended_at="2000-06-01T00:01:00.000Z")
    record["fingerprint_parts"]["overrides"] = ["seed=5"]
    (failed / "run.json").write_text(json.dumps(record))
    return stash, sweeps


def test_runs_at_two_tool_commits_or_of_another_file_are_never_one_row(reruns):
    stash, sweeps = reruns
    data = rows(stash, "--tool", "fx", "--over", "seed")
    newer = git(stash.tool, "rev-parse", "HEAD")[:8] + "+"  # the checkout is no longer at the stash's pin
    older = json.loads((sweeps["first"] / "0_fx_a" / "run.json").read_text())["tool_commit"][:8]
    by_commit = {}
    for row in data:
        by_commit.setdefault(row["commit"], []).append(row)
    assert sorted(by_commit) == sorted([older, newer])
    (at_newer,) = by_commit[newer]
    assert (at_newer["seed"], at_newer["n"], at_newer["score"]["mean"]) == (["0", "1"], 2, 2.0)
    # at the older commit: with seeds (the sweeps, the failed run), without a seed, and of the edited file apart
    with_seed = [r for r in by_commit[older] if r["seed"] not in (None, ["0", "1"])]
    (no_seed,) = [r for r in by_commit[older] if r["seed"] is None]
    (edited,) = [r for r in by_commit[older] if r["seed"] == ["0", "1"]]
    assert no_seed["n"] == 1
    assert edited["n"] == 2 and edited["differs"].startswith("experiment files ")
    (group,) = with_seed
    assert group["seed"] == ["0", "1", "5"] and group["differs"] != edited["differs"]
    # the failed run is counted apart and its score is not averaged; each seed counts once
    assert group["n"] == 2 and group["status"] == "2 succeeded, 1 failed" and group["score"] == {
        "mean": 2.0, "std": 0.0, "n": 2}
    assert group["repeats"] == 3  # seed 0: twice and reproduced; seed 1: twice

    out = stash.run("compare", "--tool", "fx", "--over", "seed")
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0].split()
    assert header[:7] == ["tool", "experiment", "seed", "commit", "differs", "n", "score"]
    assert "2 (3 repeats left out)" in out.stdout
    assert "note: 3 repeats of a run (the same fingerprint) left out" in out.stderr
    assert "note: the runs of fx ran at 2 versions of its code: the commit column tells them apart" in out.stderr

    every = {row["commit"] + str(row["seed"]) + (row["differs"] or ""): row
             for row in rows(stash, "--tool", "fx", "--over", "seed", "--all-runs")}
    assert every[older + str(group["seed"]) + group["differs"]]["n"] == 5
    assert every[older + str(group["seed"]) + group["differs"]]["repeats"] == 0


def test_without_over_the_commit_column_shows_when_the_runs_span_commits(reruns):
    stash, sweeps = reruns
    out = stash.run("compare", str(sweeps["first"]), str(sweeps["again"]))
    assert out.returncode == 0, out.stderr
    assert "commit" not in out.stdout.splitlines()[0].split() and "note: the runs" not in out.stderr
    data = rows(stash, "--tool", "fx")
    assert len({r["commit"] for r in data}) == 2
    out = stash.run("compare", "--tool", "fx")
    assert "note: the runs of fx ran at 2 versions of its code" in out.stderr
    original = json.loads((sweeps["first"] / "0_fx_a" / "run.json").read_text())["id"]
    (reproduction,) = [r for r in data if "reproduces" in r and r["reproduces"]]
    assert reproduction["reproduces"] == original and reproduction["run"].startswith("outputs/fx/a/")


@pytest.mark.parametrize("args, count", [
    (["--status", "failed"], 1),
    (["--since", "1d"], 10),  # all but the failed run, which started in 2000
    (["--since", "2000-01-01"], 11),
    (["--last", "3"], 3),
])
def test_filters_choose_the_runs(reruns, args, count):
    stash, _ = reruns
    assert len(rows(stash, *args)) == count


def test_filters_by_commit_sweep_and_fingerprint(reruns):
    stash, sweeps = reruns
    newer = git(stash.tool, "rev-parse", "HEAD")
    assert {r["run"].split("/")[1] for r in rows(stash, "--commit", newer[:7])} == {sweeps["newer"].name}
    for given in (sweeps["edited"].name, str(sweeps["edited"])):
        assert {r["run"].split("/")[1] for r in rows(stash, "--sweep", given)} == {sweeps["edited"].name}
    fingerprint = json.loads((sweeps["first"] / "0_fx_a" / "run.json").read_text())["fingerprint"]
    same = rows(stash, "--fingerprint", fingerprint[:12])
    assert [r["run"].split("/")[1:] for r in same] == [[sweeps["first"].name, "0_fx_a"], [sweeps["again"].name, "0_fx_a"]]
    # the filters narrow a sweep dir's jobs too
    same = rows(stash, str(sweeps["first"]), "--fingerprint", fingerprint[:12])
    assert [r["run"] for r in same] == [f"multirun/{sweeps['first'].name}/0_fx_a"]
    out = stash.run("compare", "--since", "2999-01-01")
    assert out.returncode == 0 and out.stdout == "No runs match --since 2999-01-01.\n"


# --- result files and histories -------------------------------------------------------------------------------

def test_a_csv_result_by_glob_and_a_history_are_read_into_run_json_and_compared(curved):
    stash, folder = curved
    record = json.loads((folder / "0_curves_fit" / "run.json").read_text())
    history = [json.loads(line) for line in (folder / "0_curves_fit" / "history.jsonl").read_text().splitlines()]
    loss = history[-1]["loss"]
    # the one file metrics_summary_*.csv matched: numbers read as numbers, text kept
    assert record["result"] == {"final_loss": loss, "acc": 1 - loss / 2, "const": 1.5, "name": "fit"}
    assert {k: record["history"][k] for k in ("file", "steps", "x")} == {"file": "history.jsonl", "steps": 20,
                                                                          "x": "step"}
    assert record["history"]["keys"]["loss"] == {"n": 20, "first": 1.0, "last": loss, "min": loss, "max": 1.0}
    assert set(record["history"]["keys"]) == {"loss", "val.acc"}

    data = rows(stash, str(folder))
    assert (data[0]["final_loss"], data[0]["loss.last"], data[0]["loss.best"]) == (loss, loss, loss)
    assert "val.acc.last" in data[0] and "val.acc.best" not in data[0]  # no direction known: no best guessed
    out = stash.run("compare", str(folder))
    assert "note: best is the lowest value for loss (named like a loss or an error)" in out.stderr
    assert "note: no direction known for val.acc: give --best KEY:min or KEY:max to see its best" in out.stderr

    data = rows(stash, str(folder), "--over", "seed", "--best", "val.acc:max")
    top = max(r["val.acc.best"]["mean"] for r in data)
    assert top == data[-1]["val.acc.best"]["mean"] and data[-1]["lr"] == "0.1"  # the largest lr learns fastest


def test_yaml_results_with_lists_csv_histories_and_a_glob_that_matches_two_files(stash):
    add_curves_tool(stash)
    stash.write("configs/meta.local.yaml", "tools:\n  curves:\n    result: metrics.yaml\n")
    out = stash.run("tool=curves", "experiment=fit", "history_format=csv", "steps=5")
    assert out.returncode == 0, out.stderr
    (stash.root / "configs/meta.local.yaml").unlink()
    out = stash.run("tool=curves", "experiment=fit", "summaries=2")
    assert out.returncode == 0, out.stderr
    from_yaml, two_files = stash.runs()
    curve = [1 / (1 + 0.01 * 10 * step) for step in range(5)]
    assert from_yaml["result"] == {"final_loss": curve[-1], "curve": curve, "when": "2025-01-31"}
    assert from_yaml["history"]["file"] == "history.csv" and set(from_yaml["history"]["keys"]) == {"loss", "val.acc"}
    assert two_files["result"] is None
    assert "result: metrics_summary_*.csv matched 2 files (metrics_summary_fit_" in two_files["note"]

    data = rows(stash, "--tool", "curves")
    assert (data[0]["curve.last"], data[0]["final_loss"]) == (curve[-1], curve[-1])
    assert "curve.best" not in data[0]  # no direction known for it
    for command in (["compare", "--tool", "curves"], ["runs"]):
        out = stash.run(*command)
        assert out.returncode == 0, out.stderr
        assert "0.8333" not in out.stdout  # the middle of the curve: a list is never printed in full
    assert "curve=[1, 0.9091, ..., 0.7692, 0.7143] (5 values)" in stash.run("runs").stdout

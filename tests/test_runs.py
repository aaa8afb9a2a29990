"""`runs`: the table and JSON of past runs with filters; `list` with no arguments."""

from __future__ import annotations

import json
import re

from conftest import git


def runs_json(stash, *args) -> list[dict]:
    out = stash.run("runs", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_runs_lists_filters_and_marks(stash):
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    assert stash.run("tool=fx", "experiment=fig1/x", "value=2").returncode == 0
    assert stash.run("tool=fx", "experiment=crash").returncode != 0
    (stash.tool / "VERSION").write_text("dirty\n")
    assert stash.run("tool=fx", "experiment=b").returncode == 0
    assert stash.run("-m", "tool=fx", "experiment=a,c").returncode == 0  # two runs under multirun/

    every = runs_json(stash)
    assert [r["experiment"] for r in every][:4] == ["a", "fig1/x", "crash", "b"]  # oldest first
    assert {r["experiment"] for r in every[4:]} == {"a", "c"}
    assert len(every) == 6
    assert sum(r["run_dir"].startswith("multirun/") for r in every) == 2
    assert [r["experiment"] for r in runs_json(stash, "--status", "failed")] == ["crash"]
    assert {r["experiment"] for r in runs_json(stash, "--experiment", "a")} == {"a"}
    assert len(runs_json(stash, "--experiment", "a")) == 2
    assert [r["experiment"] for r in runs_json(stash, "--experiment", "fig1/*")] == ["fig1/x"]
    last = runs_json(stash, "--last", "2")
    assert last == every[-2:]
    assert runs_json(stash, "--tool", "fx", "--status", "succeeded", "--last", "1") == every[-1:]

    out = stash.run("runs")
    assert out.returncode == 0, out.stderr
    table = out.stdout
    for record in every:
        assert record["id"] in table
    commit = git(stash.tool, "rev-parse", "HEAD")[:8]
    assert f"{commit}*" in table  # the dirty run is marked
    assert "failed" in table and "succeeded" in table
    assert "score=2" in table and "score=4" in table  # result values (value 1 and 2, doubled)
    assert "6 of 6 runs" in table
    header, first = table.splitlines()[:2]
    assert header.split()[-5:] == ["duration", "cpu", "peak", "mem", "result"]
    assert re.search(r"succeeded +[\d.]+s +[\d.]+s +\d+ MiB +score=", first)  # what the run used

    out = stash.run("runs", "--experiment", "b")
    assert "1 of 6 runs" in out.stdout


def test_runs_skips_unreadable_records_and_handles_no_runs(stash):
    out = stash.run("runs")
    assert out.returncode == 0 and "No runs yet" in out.stdout
    assert runs_json(stash) == []
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    broken = stash.root / "outputs" / "fx" / "a" / "broken"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text("{half")
    out = stash.run("runs", "--json")
    assert out.returncode == 0
    assert len(json.loads(out.stdout)) == 1
    assert out.stderr == "warning: skipped outputs/fx/a/broken/run.json: is not valid JSON (line 1)\n"


def test_runs_bad_input(stash):
    out = stash.run("runs", "--status", "great")
    assert out.returncode == 2 and "--status great" in out.stderr
    out = stash.run("runs", "--last", "-1")
    assert out.returncode == 2 and "--last -1" in out.stderr


def test_no_arguments_lists_the_tools_and_how_to_run(stash):
    out = stash.run()
    assert out.returncode == 0, out.stderr
    assert "fx" in out.stdout and "at pin" in out.stdout
    assert "fig1/x" in out.stdout and "crash" in out.stdout  # the tool's experiments
    assert git(stash.root, "ls-tree", "HEAD", "tools/fx").split()[2][:10] in out.stdout
    assert "python -m experimentstash tool=<tool> experiment=<experiment>" in out.stdout
    assert out.stdout == stash.run("list").stdout


def test_runs_shows_the_overrides_and_tells_attempts_apart(stash):
    out = stash.run("-m", "tool=fx", "experiment=crash", "seed=range(2)", "+note=a_long_note_" + "x" * 60)
    assert out.returncode == 1
    (sweep,) = (stash.root / "multirun").iterdir()
    assert stash.run("rerun", str(sweep)).returncode == 1
    table = stash.run("runs").stdout
    lines = [line for line in table.splitlines() if " crash " in line]
    assert len(lines) == 4
    assert sum("seed=0" in line for line in lines) == 2 and sum("seed=1" in line for line in lines) == 2
    assert all("..." in line and "x" * 60 not in line for line in lines)  # shortened to fit
    assert sum(".attempt1" in line for line in lines) == 2


def test_credentials_in_older_records_are_not_printed(stash):
    """Records written before URLs' credentials were redacted: runs --json and diff show them redacted."""
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    assert stash.run("tool=fx", "experiment=b").returncode == 0
    a, b = sorted((p.parent for p in (stash.root / "outputs").rglob("run.json")), key=lambda p: p.name)
    record = json.loads((b / "run.json").read_text())
    record["env"]["variables"]["MLFLOW_TRACKING_URI"] = "https://ann:hunter2@mlflow.example/"
    record["env"]["variables"]["DATA_URL"] = "s3://AKIATOKEN@bucket/data"
    (b / "run.json").write_text(json.dumps(record))
    listed = stash.run("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    variables = next(r for r in json.loads(listed.stdout) if r["id"] == b.name)["env"]["variables"]
    assert variables["MLFLOW_TRACKING_URI"] == "https://ann:***@mlflow.example/"
    assert variables["DATA_URL"] == "s3://***@bucket/data"
    for args in (("diff", str(a), str(b)), ("diff", str(a), str(b), "--format", "json")):
        out = stash.run(*args)
        assert out.returncode == 0, out.stderr
        assert "ann:***@mlflow.example" in out.stdout and "hunter2" not in out.stdout and "AKIATOKEN" not in out.stdout


def test_runs_and_compare_show_gpu_memory_when_a_run_used_a_gpu(stash):
    """GPU figures as a run on a GPU records them (read from NVML), beside a run without: the largest peak of one
    device, in the table as a size and in compare's JSON in bytes."""
    assert stash.run("-m", "tool=fx", "experiment=a,b").returncode == 0
    path = next((stash.root / "multirun").rglob("0_fx_a/run.json"))
    record = json.loads(path.read_text())
    record["resources"]["gpus"] = [
        {"index": 0, "uuid": "GPU-0a", "name": "A100", "memory_total_bytes": 40 << 30, "peak_memory_bytes": 3 << 30},
        {"index": 1, "uuid": "GPU-1b", "name": "A100", "memory_total_bytes": 40 << 30, "peak_memory_bytes": 5 << 30}]
    path.write_text(json.dumps(record))
    table = stash.run("runs").stdout
    assert re.search(r"\d+ MiB \(GPU 5\.0 GiB\)", table) and table.count("GPU") == 1
    out = stash.run("compare", str(path.parent.parent), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert [row.get("gpu_mem_bytes") for row in json.loads(out.stdout)] == [5 << 30, None]

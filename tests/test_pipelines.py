"""Pipelines: configs/pipelines/<name>.yaml names stages (a tool and an experiment each) run after the stages they
need, the references between them filled in, each stage a run with its own record."""

from __future__ import annotations

import json
import signal

import pytest

from experimentstash.testing import Stash, experiment, run_json, sweep_dir, sweep_json, wait_for

THREE = """\
stages:
  train:
    tool: fx
    experiment: a
  evaluate:
    tool: fx
    experiment: b
    needs: [train]
    overrides: ["+checkpoint=${stages.train.run_dir}/result.json"]
  table:
    tool: fx
    experiment: c
    needs: [evaluate]
    gather: true
    overrides: ["+runs=${stages.evaluate.run_dirs}"]
"""


def with_pipeline(stash: Stash, text: str = THREE, name: str = "three") -> Stash:
    stash.write(f"configs/pipelines/{name}.yaml", text)
    stash.commit("a pipeline")
    return stash


def by_stage(stash: Stash, folder: str = "outputs") -> dict[str, dict]:
    return {r["stage"]: r for r in stash.runs(folder)}


def test_one_chain_runs_every_stage_in_order_with_references_and_records(stash):
    with_pipeline(stash)
    out = stash.run("pipeline=three", "train.value=5", "seed=3")
    assert out.returncode == 0, out.stdout + out.stderr
    runs = by_stage(stash)
    assert list(runs) == ["train", "evaluate", "table"]  # oldest first: in order
    train, evaluate, table = runs.values()
    assert all(r["pipeline"] == "three" and r["status"] == "succeeded" for r in runs.values())
    # a stage's override goes to that stage only, any other to every stage
    assert train["overrides"] == ["value=5", "seed=3"]
    assert train["result"]["score"] == 10.0 and evaluate["result"]["score"] == 4.0
    train_dir = stash.root / train["run_dir"]
    evaluate_dir = stash.root / evaluate["run_dir"]
    seen = json.loads((evaluate_dir / "seen.json").read_text())
    assert seen["cfg"]["checkpoint"] == f"{train_dir}/result.json" and seen["cfg"]["seed"] == 3
    seen = json.loads((stash.root / table["run_dir"] / "seen.json").read_text())
    assert seen["cfg"]["runs"] == [str(evaluate_dir)]  # a Hydra list
    assert train["upstream"] == [] and evaluate["upstream"] == [train["id"]]
    assert table["upstream"] == [train["id"], evaluate["id"]]
    for stage in runs:
        assert f"{stage}: succeeded" in out.stderr


def test_a_failed_stage_cancels_the_stages_after_it(stash):
    with_pipeline(stash)
    out = stash.run("pipeline=three", "evaluate.crash=true")
    assert out.returncode == 3, out.stdout + out.stderr
    runs = by_stage(stash)
    assert {s: r["status"] for s, r in runs.items()} == {"train": "succeeded", "evaluate": "failed"}
    assert "table: cancelled, upstream stage evaluate did not succeed" in out.stderr
    assert "boom" in (stash.root / runs["evaluate"]["run_dir"] / "stderr.log").read_text()


def test_old_records_without_the_pipeline_fields_stay_valid(stash):
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    (path,) = (stash.root / "outputs").rglob("run.json")
    record = json.loads(path.read_text())
    assert (record["pipeline"], record["stage"], record["upstream"]) == (None, None, [])
    for key in ("pipeline", "stage", "upstream"):
        del record[key]
    path.write_text(json.dumps(record))
    listed = stash.run("runs")
    assert listed.returncode == 0 and "skipped" not in listed.stdout + listed.stderr, listed.stdout + listed.stderr


BAD = {
    "cycle": ("stages:\n  a: {tool: fx, experiment: a, needs: [b]}\n  b: {tool: fx, experiment: b, needs: [a]}\n",
              "the stages need each other in a cycle (a -> b -> a)"),
    "unknown stage": ("stages:\n  a: {tool: fx, experiment: a, needs: [trian]}\n",
                      "stage 'a' needs 'trian', which is no stage of this pipeline"),
    "unknown tool": ("stages:\n  a: {tool: nope, experiment: a}\n", "stage 'a': Unknown tool 'nope'"),
    "unknown experiment": ("stages:\n  a: {tool: fx, experiment: zzz}\n",
                           "stage 'a': Unknown experiment 'zzz' for tool 'fx'"),
    "unresolvable reference": (
        "stages:\n  a: {tool: fx, experiment: a}\n  b: {tool: fx, experiment: b, overrides: ['+x=${stages.a.run_dir}']}\n",
        "stage 'b': '+x=${stages.a.run_dir}': ${stages.a.run_dir} cannot be resolved: 'a' is not a stage that 'b' needs"),
    "unknown field": (
        "stages:\n  a: {tool: fx, experiment: a}\n  b: {tool: fx, experiment: b, needs: [a], overrides: ['+x=${stages.a.out}']}\n",
        "stage 'b': '+x=${stages.a.out}': ${stages.a.out} cannot be resolved"),
    "run_dirs outside a gather stage": (
        "stages:\n  a: {tool: fx, experiment: a}\n  b: {tool: fx, experiment: b, needs: [a], overrides: ['+x=${stages.a.run_dirs}']}\n",
        "stage 'b': '+x=${stages.a.run_dirs}': ${stages.a.run_dirs} cannot be resolved"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_pipeline_file_is_one_error_and_nothing_runs(stash, case):
    text, message = BAD[case]
    with_pipeline(stash, text, "bad")
    out = stash.run("pipeline=bad")
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"error: configs/pipelines/bad.yaml: {message}" in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("error:") == 1
    assert not (stash.root / "outputs").exists()


def test_an_unknown_pipeline_or_a_tool_beside_it_is_refused(stash):
    with_pipeline(stash)
    out = stash.run("pipeline=thre")
    assert out.returncode == 2 and "Unknown pipeline 'thre' (did you mean 'three'?)" in out.stderr, out.stderr
    out = stash.run("pipeline=three", "tool=fx")
    assert out.returncode == 2 and "pipeline=three names the tool and experiment of each of its stages" in out.stderr
    assert not (stash.root / "outputs").exists()


def sweep_of(stash: Stash) -> tuple[dict, dict[int, dict]]:
    data = sweep_json(stash)
    return data, {job["num"]: job for job in data["jobs"]}


def seen(stash: Stash, job: dict) -> dict:
    return json.loads((stash.root / job["run_dir"] / "seen.json").read_text())


def test_a_pipeline_sweep_runs_its_chains_without_a_barrier_then_gathers(stash):
    with_pipeline(stash)
    out = stash.run("-m", "pipeline=three", "train.value=1,2", "seed=0,1", "hydra.launcher.max_parallel=2")
    assert out.returncode == 0, out.stdout + out.stderr
    data, jobs = sweep_of(stash)
    assert [(j["chain"], j["stage"], j["needs"]) for j in jobs.values()] == [
        (0, "train", []), (0, "evaluate", [0]), (1, "train", []), (1, "evaluate", [2]),
        (2, "train", []), (2, "evaluate", [4]), (3, "train", []), (3, "evaluate", [6]),
        (None, "table", [1, 3, 5, 7])]
    assert all(j["status"] == "succeeded" and j["pipeline"] == "three" for j in jobs.values())
    assert [jobs[n]["overrides"] for n in (0, 2, 4, 6)] == [
        ["value=1", "seed=0"], ["value=1", "seed=1"], ["value=2", "seed=0"], ["value=2", "seed=1"]]
    # each evaluate reads its own chain's train; the gather stage gets every evaluate's run dir, as a list
    for train, evaluate in ((0, 1), (2, 3), (4, 5), (6, 7)):
        assert seen(stash, jobs[evaluate])["cfg"]["checkpoint"] == str(stash.root / jobs[train]["run_dir"] / "result.json")
    table = seen(stash, jobs[8])
    assert table["cfg"]["runs"] == [str(stash.root / jobs[n]["run_dir"]) for n in (1, 3, 5, 7)]
    assert "seed" not in table["overrides"] and "value" not in table["overrides"]  # what tells the chains apart
    # no barrier: with two workers, the first evaluate starts before the last chains' train does
    assert min(seen(stash, jobs[n])["started"] for n in (1, 3)) < max(seen(stash, jobs[n])["started"] for n in (4, 6))
    record = run_json(stash, jobs[8])
    assert (record["pipeline"], record["stage"]) == ("three", "table")
    assert record["upstream"] == [f"{data['id']}_{n}" for n in range(8)]
    assert run_json(stash, jobs[3])["upstream"] == [f"{data['id']}_2"]
    for column in ("chain", "stage"):
        assert column in out.stdout
    assert "9 jobs: 9 succeeded" in out.stdout

    def compare(*words):
        shown = stash.run("compare", str(sweep_dir(stash)), "--format", "json", *words)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        return json.loads(shown.stdout)

    # one row per chain: its overrides as typed, the results of its last stage (or of the stage asked for)
    rows = compare()
    assert [(r["experiment"], r["train.value"], r["seed"], r["score"]) for r in rows] == [
        ("b", "1", "0", 4.0), ("b", "1", "1", 4.0), ("b", "2", "0", 4.0), ("b", "2", "1", 4.0)]
    assert [(r["experiment"], r["score"]) for r in compare("--stage", "train")] == [
        ("a", 2.0), ("a", 2.0), ("a", 4.0), ("a", 4.0)]
    assert [r["experiment"] for r in compare("--stage", "table")] == ["c"]
    wrong = stash.run("compare", str(sweep_dir(stash)), "--stage", "trian")
    assert wrong.returncode == 2 and "--stage trian: no job of" in wrong.stderr
    assert "(its stages: train, evaluate, table)" in wrong.stderr


def test_a_failed_chain_cancels_only_its_later_stages(stash):
    with_pipeline(stash)
    out = stash.run("-m", "pipeline=three", "train.crash=false,true", "seed=0")
    assert out.returncode == 1, out.stdout + out.stderr
    _, jobs = sweep_of(stash)
    assert [(j["stage"], j["status"], j.get("reason")) for j in jobs.values()] == [
        ("train", "succeeded", None), ("evaluate", "succeeded", None),
        ("train", "failed", None), ("evaluate", "cancelled", "upstream failed"),
        ("table", "cancelled", "upstream failed")]
    assert not (stash.root / jobs[3]["run_dir"]).exists()
    assert "cancelled (upstream failed)" in out.stdout and "job 2 failed, exit code 3" in out.stdout


def test_rerun_runs_a_failed_middle_stage_and_what_it_cancelled_in_order(stash):
    stash.write("configs/fx/experiment/flaky.yaml", experiment("crash: true\n"))
    with_pipeline(stash, THREE.replace("experiment: b", "experiment: flaky"))
    out = stash.run("-m", "pipeline=three", "seed=0,1")
    assert out.returncode == 1, out.stdout + out.stderr
    _, jobs = sweep_of(stash)
    assert [j["status"] for j in jobs.values()] == ["succeeded", "failed", "succeeded", "failed", "cancelled"]
    trains = [(stash.root / jobs[n]["run_dir"] / "run.json").read_text() for n in (0, 2)]
    stash.write("configs/fx/experiment/flaky.yaml", experiment("value: 4\n"))
    out = stash.run("rerun", str(sweep_dir(stash)))
    assert out.returncode == 0, out.stdout + out.stderr
    data, jobs = sweep_of(stash)
    assert [(j["status"], j.get("reason")) for j in jobs.values()] == [("succeeded", None)] * 5
    assert [r["jobs"] for r in data["reruns"]] == [[1, 3, 4]]
    assert [(stash.root / jobs[n]["run_dir"] / "run.json").read_text() for n in (0, 2)] == trains  # not run again
    assert seen(stash, jobs[4])["started"] > max(seen(stash, jobs[n])["ended"] for n in (1, 3))
    assert seen(stash, jobs[1])["cfg"]["checkpoint"] == str(stash.root / jobs[0]["run_dir"] / "result.json")


def test_reuse_takes_a_finished_prefix_of_an_interrupted_sweep_and_a_changed_stage_reruns_what_follows(stash):
    stash.write("configs/fx/experiment/long.yaml", experiment("sleep: 60\n"))
    with_pipeline(stash, THREE.replace("experiment: b", "experiment: long"))
    proc = stash.popen("-m", "pipeline=three", "seed=0,1", "stash.grace=1")
    wait_for(lambda: len(list((stash.root / "multirun").rglob("seen.json"))) >= 3, what="both trains and an evaluate")
    first = sweep_dir(stash)
    wait_for(lambda: [j["status"] for j in json.loads((first / "sweep.json").read_text())["jobs"][0:3:2]]
             == ["succeeded"] * 2, what="both trains ended")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    stash.write("configs/fx/experiment/long.yaml", experiment("value: 4\n"))

    def sweep(*words):
        out = stash.run("-m", "pipeline=three", "seed=0,1", "stash.reuse=true", *words)
        assert out.returncode == 0, out.stdout + out.stderr
        folder = max((p for p in (stash.root / "multirun").iterdir() if p.name not in done), key=lambda p: p.name)
        done.add(folder.name)
        return out, json.loads((folder / "sweep.json").read_text())["jobs"]

    done = {first.name}
    out, jobs = sweep()
    assert "2 of 5 jobs reuse earlier runs" in out.stdout + out.stderr
    assert [j["status"] for j in jobs] == ["reused", "succeeded", "reused", "succeeded", "succeeded"]
    train = stash.root / jobs[0]["run_dir"]
    assert train.parent == first  # the interrupted sweep's train
    assert seen(stash, jobs[1])["cfg"]["checkpoint"] == f"{train}/result.json"
    assert run_json(stash, jobs[1])["upstream"] == [run_json(stash, jobs[0])["id"]]
    out, jobs = sweep()  # everything done: every stage reused
    assert [j["status"] for j in jobs] == ["reused"] * 5
    stash.write("configs/fx/experiment/a.yaml", experiment("value: 9\n"))  # train changed: train and all after it
    out, jobs = sweep()
    assert [j["status"] for j in jobs] == ["succeeded"] * 5


def test_reproducing_a_stage_reproduces_its_upstream_runs_first(stash):
    with_pipeline(stash)
    out = stash.run("pipeline=three", "seed=2")
    assert out.returncode == 0, out.stdout + out.stderr
    original = by_stage(stash)
    out = stash.run("reproduce", str(stash.root / original["table"]["run_dir"]))
    assert out.returncode == 0, out.stdout + out.stderr
    said = " ".join(out.stderr.split())  # whatever the width
    assert said.index(f"upstream run {original['train']['id']} (stage train)") < said.index(
        f"upstream run {original['evaluate']['id']} (stage evaluate)") < said.index(
        f"reproducing run {original['table']['id']}")
    again = {r["reproduces"]: r for r in stash.runs() if "reproduces" in r}
    train, evaluate, table = (again[original[s]["id"]] for s in ("train", "evaluate", "table"))
    # each reproduction reads the reproductions before it, not the original runs
    assert seen(stash, evaluate)["cfg"]["checkpoint"] == f"{stash.root / train['run_dir']}/result.json"
    assert seen(stash, table)["cfg"]["runs"] == [str(stash.root / evaluate["run_dir"])]
    assert table["result"] == original["table"]["result"]

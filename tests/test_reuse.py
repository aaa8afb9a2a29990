"""stash.reuse: a job whose fingerprint matches a run that succeeded is not run again."""

import hashlib
import hmac
import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURE_TOOL, experiment, git, new_stash

FY = "  fy:\n    path: tools/fy\n    entrypoint: tool.py\n    env: current\n    result: result.json\n"


@pytest.fixture
def two_tools(stash):
    """fx (a submodule) and fy (an in-tree copy of the same tool), each with experiments a and b."""
    stash.write("tools/fy/tool.py", FIXTURE_TOOL)
    stash.write("tools/fy/conf/config.yaml", (stash.tool / "conf" / "config.yaml").read_text())
    stash.write("tools/fy/VERSION", "fy\n")
    stash.write("configs/meta.yaml", (stash.root / "configs/meta.yaml").read_text() + FY)
    for name in ("a", "b"):
        shutil.copy(stash.root / f"configs/fx/experiment/{name}.yaml", stash.root / f"configs/fy/experiment/{name}.yaml"
                    if (stash.root / "configs/fy/experiment").is_dir() else _mkdir(stash.root / "configs/fy/experiment") / f"{name}.yaml")
    stash.commit("a second tool")
    return stash


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def sweep(stash, marker: Path, *args):
    """The sweep, with every tool start counted in `marker`; returns (exit code, jobs of its sweep.json, starts)."""
    before = set((stash.root / "multirun").iterdir()) if (stash.root / "multirun").exists() else set()
    marker.write_text("")
    out = stash.run("-m", *args, "stash.reuse=true", env={"FX_MARKER": str(marker)})
    (folder,) = set((stash.root / "multirun").iterdir()) - before
    jobs = json.loads((folder / "sweep.json").read_text())["jobs"]
    return out, jobs, len(marker.read_text().splitlines())


def ran(jobs) -> list[tuple]:
    return [(j["tool"], j["experiment"], " ".join(j["overrides"])) for j in jobs if j["status"] != "reused"]


def test_an_identical_sweep_runs_nothing_and_gives_the_same_results(stash, tmp_path):
    marker = tmp_path / "starts"
    first, jobs, starts = sweep(stash, marker, "tool=fx", "experiment=a,b", "value=1,2")
    assert first.returncode == 0 and starts == 4
    second, again, starts = sweep(stash, marker, "tool=fx", "experiment=a,b", "value=1,2")
    assert second.returncode == 0, second.stderr
    assert starts == 0 and [j["status"] for j in again] == ["reused"] * 4
    assert [j["reused_from"] for j in again] == [j["run_dir"] for j in jobs]
    assert "4 jobs: 4 reused" in second.stdout
    for job in again:  # the earlier runs' results, and their fingerprints say the same
        earlier = json.loads((stash.root / job["reused_from"] / "run.json").read_text())
        assert earlier["status"] == "succeeded" and len(earlier["fingerprint"]) == 64


def test_each_part_of_the_fingerprint_reruns_exactly_the_jobs_it_affects(two_tools, tmp_path):
    stash, marker = two_tools, tmp_path / "starts"
    args = ["tool=fx,fy", "experiment=a,b", "value=1,2"]
    assert sweep(stash, marker, *args)[0].returncode == 0
    every_fx = [("fx", e, f"value={v}") for e in "ab" for v in (1, 2)]

    def rerun_and_expect(expected, *sweep_args):
        out, jobs, starts = sweep(stash, marker, *(sweep_args or args))
        assert out.returncode == 0, out.stdout + out.stderr
        assert sorted(ran(jobs)) == sorted(expected) and starts == len(expected)
        return out

    rerun_and_expect([])  # nothing changed
    stash.write("configs/fx/experiment/a.yaml", (stash.root / "configs/fx/experiment/a.yaml").read_text() + "# edit\n")
    out = rerun_and_expect([("fx", "a", f"value={v}") for v in (1, 2)])  # the experiment file: its own jobs only
    assert "reuse: 2 jobs ran again: configs/fx/experiment/a.yaml changed\n" in out.stderr
    stash.write("configs/fx/snapshots/v1/a.yaml", "value: 5\n")
    rerun_and_expect([])  # a new snapshot changes no experiment
    stash.write("configs/fx/extra/more.yaml", "x: 1\n")
    out = rerun_and_expect(every_fx)  # a config group of the tool, not committed
    assert "reuse: 4 jobs ran again: configs/fx/extra/more.yaml changed\n" in out.stderr
    stash.commit("configs")
    rerun_and_expect([])  # committed as it was: the same content, the same fingerprint
    rerun_and_expect([("fx", e, "value=3") for e in "ab"] + [("fy", e, "value=3") for e in "ab"],
                     "tool=fx,fy", "experiment=a,b", "value=1,3")  # one override
    (stash.tool / "VERSION").write_text("v1 patched\n")
    rerun_and_expect(every_fx)  # the tool's uncommitted changes
    (stash.tool / "VERSION").write_text("v1 patched again\n")
    rerun_and_expect(every_fx)  # their content, not only that there are some
    before = git(stash.tool, "rev-parse", "HEAD")
    git(stash.tool, "commit", "-qam", "v2")
    out = rerun_and_expect(every_fx)  # the tool's commit
    after = git(stash.tool, "rev-parse", "HEAD")
    assert f"reuse: 4 jobs ran again: tool_commit differs ({before[:7]} -> {after[:7]}); the tool's uncommitted " \
           "changes differ\n" in out.stderr
    stash.write("configs/meta.local.yaml", "tools:\n  fx:\n    overrides: [+tagged=1]\n")
    rerun_and_expect(every_fx)  # the tool's meta.yaml entry


def test_failed_and_unrecorded_runs_are_never_reused(stash, tmp_path):
    marker = tmp_path / "starts"
    out, jobs, _ = sweep(stash, marker, "tool=fx", "experiment=a,b,crash")
    assert out.returncode == 1
    shutil.rmtree(stash.root / jobs[0]["run_dir"])  # a run dir that is gone
    record = stash.root / jobs[1]["run_dir"] / "run.json"
    record.write_text(record.read_text().replace('"status": "succeeded"', '"status": "great"'))  # fails validation
    out, again, starts = sweep(stash, marker, "tool=fx", "experiment=a,b,crash")
    assert starts == 3 and [j["status"] for j in again] == ["succeeded", "succeeded", "failed"]


def test_a_single_run_reuses_and_says_which(stash):
    first = stash.run("tool=fx", "experiment=a", "value=4")
    assert first.returncode == 0
    (record,) = stash.runs()
    out = stash.run("tool=fx", "experiment=a", "value=4", "stash.reuse=true")
    assert out.returncode == 0, out.stderr
    assert "reused" in out.stderr and record["id"] in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"score": 8.0, "version": "v1"}
    assert len(stash.runs()) == 1  # no new run dir
    assert stash.run("tool=fx", "experiment=a", "value=4").returncode == 0  # without reuse: it runs
    assert len(stash.runs()) == 2


def test_reuse_as_a_tools_default_and_runs_by_fingerprint(stash):
    stash.write("configs/meta.local.yaml", "tools:\n  fx:\n    reuse: true\n")
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    assert "reused" in stash.run("tool=fx", "experiment=a").stderr
    assert "reused" not in stash.run("tool=fx", "experiment=a", "stash.reuse=false").stderr
    runs = stash.runs()
    assert len(runs) == 2 and runs[0]["fingerprint"] == runs[1]["fingerprint"]
    assert set(runs[0]["fingerprint_parts"]) >= {"tool_commit", "tool_changes", "configs", "experiment", "overrides",
                                                 "registration", "python", "lock_sha256"}
    out = stash.run("runs", "--fingerprint", runs[0]["fingerprint"][:10])
    assert out.returncode == 0 and out.stdout.count("\n") == 4  # header, two runs, footer
    assert stash.run("runs", "--fingerprint", "0000000").stdout.startswith("No runs match")


def test_optuna_gets_the_earlier_values(stash, tmp_path):
    args = ["tool=fx", "experiment=a", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4",
            "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=3", "value=range(1,5)",
            "stash.objective=score"]
    assert stash.run("-m", *args).returncode == 0
    marker = tmp_path / "starts"
    out, jobs, starts = sweep(stash, marker, *args)
    assert out.returncode == 0, out.stderr
    assert starts == 0 and {j["status"] for j in jobs} == {"reused"}
    folders = sorted((stash.root / "multirun").iterdir())
    best = [yaml.safe_load((f / "optimization_results.yaml").read_text())["best_value"] for f in folders]
    assert best[0] == best[1]


def test_the_lock_file_is_part_of_the_fingerprint(stash, tmp_path):
    pytest.importorskip("uv", reason="uv is installed with the test extras")
    import uv

    uv_bin = uv.find_uv_bin()
    hydra_pin = f"hydra-core=={importlib.metadata.version('hydra-core')}"
    (stash.tool / "pyproject.toml").write_text(
        f'[project]\nname = "fx"\nversion = "0.1.0"\nrequires-python = ">=3.10"\ndependencies = ["{hydra_pin}"]\n')
    if subprocess.run([uv_bin, "lock", "--project", str(stash.tool)], capture_output=True).returncode != 0:
        pytest.skip("uv lock needs the package index")
    (stash.tool / ".gitignore").write_text("__pycache__/\n.venv/\n")
    git(stash.tool, "add", "-A")
    git(stash.tool, "commit", "-qm", "uv project")
    stash.commit("pin the uv tool")
    stash.write("configs/meta.local.yaml", "tools:\n  fx:\n    env: uv\n")
    env = {"PATH": f"{Path(uv_bin).parent}:{os.environ['PATH']}"}
    first = stash.run("tool=fx", "experiment=a", env=env)
    if first.returncode != 0 and "Failed to fetch" in first.stderr:
        pytest.skip("uv could not download the tool's dependencies")
    assert first.returncode == 0, first.stderr
    assert "reused" in stash.run("tool=fx", "experiment=a", "stash.reuse=true", env=env).stderr
    lock = stash.tool / "uv.lock"
    lock.write_text(lock.read_text() + "\n# touched\n")
    out = stash.run("tool=fx", "experiment=a", "stash.reuse=true", env=env)
    assert out.returncode == 0 and "reused" not in out.stderr
    old, new = (r["fingerprint_parts"] for r in stash.runs())
    assert old["lock_sha256"] != new["lock_sha256"]


def test_compare_of_a_resumed_sweep_shows_the_reused_results(stash, tmp_path):
    marker = tmp_path / "starts"
    sweep(stash, marker, "tool=fx", "experiment=a", "value=1,2")
    out, jobs, starts = sweep(stash, marker, "tool=fx", "experiment=a", "value=1,2,3")
    assert starts == 1
    folder = sorted((stash.root / "multirun").iterdir())[-1]
    table = json.loads(stash.run("compare", str(folder), "--format", "json").stdout)
    assert sorted(row["score"] for row in table) == [2.0, 4.0, 6.0]


# --- what reuse trusts ------------------------------------------------------------------------------------------

def resign(stash, data: dict) -> dict:
    """The record signed with the stash's key: a record this stash's launchers wrote, whatever else is wrong."""
    key = (stash.root / ".git" / "experimentstash" / "record-key").read_bytes()
    body = {k: v for k, v in data.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {**body, "signature": hmac.new(key, text, hashlib.sha256).hexdigest()}


def edit_record(folder: Path, change, stash=None) -> None:
    path = folder / "run.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(resign(stash, data) if stash else data))


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """A stash with one run of `fx a value=4` (score 8.0), kept aside as a template: (stash, its run dir, copy)."""
    stash = new_stash(tmp_path_factory.mktemp("genuine"))
    assert stash.run("tool=fx", "experiment=a", "value=4").returncode == 0
    (record,) = stash.runs()
    template = stash.root.parent / "template"
    shutil.copytree(stash.root / record["run_dir"], template)
    return stash, record["run_dir"], template


def _put_back(stash, run_dir, template) -> Path:
    shutil.copytree(template, stash.root / run_dir)
    return stash.root / run_dir


def _beside(stash, run_dir, template) -> Path:
    folder = stash.root / "outputs/fx/a/2099-01-01_00-00-00_forged"
    folder.mkdir(parents=True)
    shutil.copy(template / "run.json", folder / "run.json")
    return folder


FORGERIES = {
    # the earlier run as it was: reused (the other cases differ from it in one thing)
    "untouched": (_put_back, lambda folder, stash: None, None),
    "a copied run.json alone, result 999": (
        _beside, lambda folder, stash: edit_record(folder, lambda d: d.update(result={"score": 999})),
        "not signed by this stash"),
    "its signature removed": (
        _put_back, lambda folder, stash: edit_record(folder, lambda d: d.pop("signature", None)), "unsigned"),
    "tool_commit all zeros": (
        _put_back, lambda folder, stash: edit_record(folder, lambda d: d.update(tool_commit="0" * 40)),
        "not signed by this stash"),
    "signed, but only its run.json": (
        lambda stash, run_dir, template: _put_back(stash, run_dir, template),
        lambda folder, stash: [p.unlink() for p in folder.iterdir() if p.name != "run.json" and p.is_file()],
        "experiment.yaml is missing"),
    "signed, fingerprint_parts garbage": (
        _put_back, lambda folder, stash: edit_record(folder, lambda d: d.update(fingerprint_parts={"x": 1}), stash),
        "fingerprint is not the one its parts give"),
    "signed, started_at not a date": (
        _put_back, lambda folder, stash: edit_record(folder, lambda d: d.update(started_at="zzzz not a date"), stash),
        "start or end time is not a time"),
    "signed, its result file changed": (
        _put_back, lambda folder, stash: (folder / "result.json").write_text('{"score": 999}'),
        "result file result.json is missing or not the recorded result"),
    "signed, its logs gone": (
        _put_back, lambda folder, stash: (folder / "stderr.log").unlink(), "its logs are missing"),
    "signed, copied to another run dir": (
        lambda stash, run_dir, template: shutil.copytree(template, stash.root / "outputs/fx/a/copy") and
        stash.root / "outputs/fx/a/copy", lambda folder, stash: None, "not where its record says"),
}


@pytest.mark.parametrize("case", FORGERIES)
def test_reuse_trusts_only_what_this_stash_wrote_and_still_holds(genuine, case):
    stash, run_dir, template = genuine
    for folder in ("outputs", "multirun"):
        shutil.rmtree(stash.root / folder, ignore_errors=True)
    place, change, why = FORGERIES[case]
    change(place(stash, run_dir, template), stash)
    out = stash.run("tool=fx", "experiment=a", "value=4", "stash.reuse=true")
    assert out.returncode == 0, out.stderr
    if why is None:
        assert "reused: run" in out.stderr and json.loads(out.stdout) == {"score": 8.0, "version": "v1"}
        return
    assert "reused" not in out.stderr and "fixture tool running" in out.stdout
    assert "reuse: 1 job ran again. 1 earlier run failed the checks: " in out.stderr and why in out.stderr
    assert json.loads((stash.root / stash.runs()[-1]["run_dir"] / "result.json").read_text())["score"] == 8.0


def test_a_forged_record_reaches_no_sweep_no_optimizer_and_no_compare(stash):
    args = ["-m", "tool=fx", "experiment=a", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1",
            "hydra.sweeper.direction=maximize", "value=choice(4)", "stash.objective=score", "stash.reuse=true"]
    assert stash.run(*args).returncode == 0
    (earlier,) = (stash.root / "multirun").iterdir()
    (record,) = earlier.rglob("run.json")
    forged = stash.root / "outputs/fx/a/2099-01-01_00-00-00_forged"
    forged.mkdir(parents=True)
    shutil.copy(record, forged / "run.json")
    edit_record(forged, lambda d: d.update(result={"score": 999}))
    shutil.rmtree(earlier)  # the forged copy is all there is
    out = stash.run(*args)
    assert out.returncode == 0, out.stderr
    (sweep_dir,) = (stash.root / "multirun").iterdir()
    assert [j["status"] for j in json.loads((sweep_dir / "sweep.json").read_text())["jobs"]] == ["succeeded"]
    assert yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())["best_value"] == 8.0
    table = json.loads(stash.run("compare", str(sweep_dir), "--format", "json").stdout)
    assert [row["score"] for row in table] == [8.0]


def test_a_clone_runs_again_what_the_original_ran(stash, tmp_path):
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    key = stash.root / ".git" / "experimentstash" / "record-key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    assert "signature" in stash.runs()[0]
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--recurse-submodules", str(stash.root), str(clone))
    shutil.copytree(stash.root / "outputs", clone / "outputs")
    copy = type(stash)(clone, stash.tool_repo)
    first = copy.run("tool=fx", "experiment=a", "stash.reuse=true")
    assert first.returncode == 0 and "reused" not in first.stderr
    assert "not signed by this stash (copied from a clone or a colleague" in first.stderr
    assert copy.run("runs").stdout.count("succeeded") == 2  # still shown: a fact someone claims
    second = copy.run("tool=fx", "experiment=a", "stash.reuse=true")  # the clone's own run is trusted
    assert "reused: run" in second.stderr


def test_a_record_changed_from_outside_is_signed_again_only_if_it_was_signed(stash, tmp_path):
    _, jobs, _ = sweep(stash, tmp_path / "starts", "tool=fx", "experiment=a,b")
    gone = subprocess.Popen(["true"])
    gone.wait()
    owner = {"pid": gone.pid, "host": socket.gethostname(), "started": 1.0}  # a launcher that is gone
    signed, unsigned = (stash.root / job["run_dir"] for job in jobs)
    edit_record(signed, lambda d: d.update(status="running", owner=owner), stash)
    edit_record(unsigned, lambda d: (d.update(status="running", owner=owner), d.pop("signature")))
    folder = signed.parent
    assert "2 jobs: 2 lost" in stash.run("status", str(folder)).stdout
    after = {path: json.loads((path / "run.json").read_text()) for path in (signed, unsigned)}
    assert {d["status"] for d in after.values()} == {"lost"}
    assert resign(stash, after[signed]) == after[signed]  # its signature is over what it says now
    assert "signature" not in after[unsigned]


# --- where a reused job lives ------------------------------------------------------------------------------------

def test_a_reused_job_points_to_its_run_and_every_view_counts_it(stash, tmp_path):
    marker = tmp_path / "starts"
    _, first, _ = sweep(stash, marker, "tool=fx", "experiment=a,b", "value=1,2")
    out, jobs, starts = sweep(stash, marker, "tool=fx", "experiment=a,b,c", "value=1,2")
    assert out.returncode == 0 and starts == 2
    reused = [j for j in jobs if j["status"] == "reused"]
    assert [j["run_dir"] for j in reused] == [j["run_dir"] for j in first] == [j["reused_from"] for j in reused]
    assert all((stash.root / j["run_dir"] / "result.json").is_file() for j in jobs)
    folder = sorted((stash.root / "multirun").iterdir())[-1]
    table = json.loads(stash.run("compare", str(folder), "--format", "json").stdout)
    assert sorted(row["score"] for row in table) == [2.0, 2.0, 2.0, 4.0, 4.0, 4.0]
    assert stash.run("report", str(folder)).returncode == 0
    page = (folder / "report.html").read_text()
    pins = page[page.index("<h2>Commits</h2>"):]
    assert sum(int(n) for n in re.findall(r"<td>(\d+)</td></tr>", pins[:pins.index("</table>")])) == 6
    status = stash.run("status", str(folder))
    assert "6 jobs: 4 reused, 2 succeeded" in status.stdout and "lost" not in status.stdout


@pytest.mark.parametrize("damage,said", [
    (lambda folder: shutil.rmtree(folder), "which is gone"),
    (lambda folder: (folder / "result.json").write_text('{"score": 999}'), "which no longer passes reuse's checks"),
])
def test_a_reused_run_that_is_gone_is_lost_and_rerun_runs_it(stash, tmp_path, damage, said):
    marker = tmp_path / "starts"
    _, first, _ = sweep(stash, marker, "tool=fx", "experiment=a,b")
    _, jobs, starts = sweep(stash, marker, "tool=fx", "experiment=a,b")
    assert starts == 0
    folder = sorted((stash.root / "multirun").iterdir())[-1]
    damage(stash.root / first[0]["run_dir"])
    status = stash.run("status", str(folder))
    assert status.returncode == 0
    assert f"job 0 reused {first[0]['run_dir']}, {said}" in status.stdout
    assert "`experimentstash rerun` runs it" in status.stdout
    assert "2 jobs: 1 lost, 1 reused" in status.stdout
    assert [j["status"] for j in json.loads((folder / "sweep.json").read_text())["jobs"]] == ["lost", "reused"]
    marker.write_text("")
    rerun = stash.run("rerun", str(folder), env={"FX_MARKER": str(marker)})
    assert rerun.returncode == 0, rerun.stderr
    assert len(marker.read_text().splitlines()) == 1
    again = json.loads((folder / "sweep.json").read_text())["jobs"]
    assert [j["status"] for j in again] == ["succeeded", "reused"]
    assert again[0]["run_dir"].startswith(str(folder.relative_to(stash.root))) and not again[0].get("reused_from")
    assert json.loads((stash.root / again[0]["run_dir"] / "result.json").read_text())["score"] == 2.0


def test_an_experiment_file_named_in_a_defaults_list_is_fingerprinted(stash, tmp_path):
    stash.write("configs/fx/experiment/parts/big.yaml", "# @package _global_\nvalue: 7\n")
    stash.write("configs/fx/experiment/derived.yaml", experiment("").replace("  - _self_", "  - parts/big\n  - _self_"))
    stash.commit("an experiment built on a part")
    marker = tmp_path / "starts"
    out, jobs, starts = sweep(stash, marker, "tool=fx", "experiment=a,derived")
    assert out.returncode == 0 and starts == 2
    assert json.loads((stash.root / jobs[1]["run_dir"] / "result.json").read_text())["score"] == 14.0
    stash.write("configs/fx/experiment/parts/big.yaml", "# @package _global_\nvalue: 8\n")
    out, jobs, starts = sweep(stash, marker, "tool=fx", "experiment=a,derived")
    assert [j["status"] for j in jobs] == ["reused", "succeeded"] and starts == 1
    assert "reuse: 1 job ran again: configs/fx/experiment/parts/big.yaml changed" in out.stderr

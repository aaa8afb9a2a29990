"""stash.reuse: a job whose fingerprint matches a run that succeeded is not run again."""

import importlib.metadata
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURE_TOOL, experiment, git

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

    rerun_and_expect([])  # nothing changed
    stash.write("configs/fx/experiment/a.yaml", (stash.root / "configs/fx/experiment/a.yaml").read_text() + "# edit\n")
    rerun_and_expect([("fx", "a", f"value={v}") for v in (1, 2)])  # the experiment file: its own jobs only
    stash.write("configs/fx/snapshots/v1/a.yaml", "value: 5\n")
    rerun_and_expect([])  # a new snapshot changes no experiment
    stash.write("configs/fx/extra/more.yaml", "x: 1\n")
    rerun_and_expect(every_fx)  # a config group of the tool, not committed
    stash.commit("configs")
    rerun_and_expect([])  # committed as it was: the same content, the same fingerprint
    rerun_and_expect([("fx", e, "value=3") for e in "ab"] + [("fy", e, "value=3") for e in "ab"],
                     "tool=fx,fy", "experiment=a,b", "value=1,3")  # one override
    (stash.tool / "VERSION").write_text("v1 patched\n")
    rerun_and_expect(every_fx)  # the tool's uncommitted changes
    (stash.tool / "VERSION").write_text("v1 patched again\n")
    rerun_and_expect(every_fx)  # their content, not only that there are some
    git(stash.tool, "commit", "-qam", "v2")
    rerun_and_expect(every_fx)  # the tool's commit
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

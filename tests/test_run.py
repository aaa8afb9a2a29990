"""One run: `python -m experimentstash tool=X experiment=Y` with a real submodule tool and real git."""

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import git, pid_alive

DESIGN_FIELDS = {
    "schema", "id", "status", "exit_code", "tool", "experiment", "experiment_file", "experiment_sha256",
    "overrides", "tool_commit", "tool_pinned_commit", "tool_dirty", "tool_diff", "stash_commit", "stash_dirty",
    "env", "command", "cwd", "run_dir", "host", "started_at", "ended_at", "duration_s", "logs", "result", "sweep",
}


def seen(stash, record):
    return json.loads((stash.root / record["run_dir"] / "seen.json").read_text())


def test_run_records_commits_hashes_and_logs(stash):
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    assert DESIGN_FIELDS <= set(record)
    head = git(stash.tool, "rev-parse", "HEAD")
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["tool_commit"] == head == record["tool_pinned_commit"]
    assert record["stash_commit"] == git(stash.root, "rev-parse", "HEAD")
    assert record["tool_dirty"] is False and record["stash_dirty"] is False and record["tool_diff"] is None
    exp = stash.root / "configs/fx/experiment/a.yaml"
    assert record["experiment_file"] == "configs/fx/experiment/a.yaml"
    assert record["experiment_sha256"] == hashlib.sha256(exp.read_bytes()).hexdigest()
    assert record["env"]["kind"] == "current" and record["env"]["python"] == sys.version.split()[0]
    assert record["cwd"] == "tools/fx"
    assert record["result"] == {"score": 2.0, "version": "v1"}
    run_dir = stash.root / record["run_dir"]
    assert run_dir.parent == stash.root / "outputs/fx/a"
    assert "fixture tool running" in (run_dir / "stdout.log").read_text()
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # the tool's own resolved config
    assert "fixture tool running" in out.stdout  # streamed to the terminal too
    argv = record["command"]
    assert argv[2:4] == [f"--config-dir={stash.root}/configs/fx", "--config-name=experiment/a"]
    assert argv[-1] == f"hydra.run.dir={run_dir}"


def test_tool_overrides_pass_through_as_typed(stash):
    out = stash.run("tool=fx", "experiment=a", "value=5", "+extra=1", "~seed", "stash.pin=off")
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    assert record["overrides"] == ["value=5", "+extra=1", "~seed"]
    tool_saw = seen(stash, record)
    assert tool_saw["overrides"] == ["value=5", "+extra=1", "~seed"]
    assert tool_saw["cfg"]["extra"] == 1 and "seed" not in tool_saw["cfg"] and tool_saw["cfg"]["value"] == 5


def test_meta_overrides_and_search_packages_reach_the_tool(stash):
    stash.write("configs/meta.local.yaml", "tools:\n  fx:\n    search_packages: [a.configs, b.configs]\n"
                "    overrides:\n      - +cache=${run_dir}/cache\n")
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    tool_saw = seen(stash, record)
    assert tool_saw["cfg"]["cache"] == str(stash.root / record["run_dir"] / "cache")
    assert tool_saw["search_packages"] == "a.configs:b.configs"


def test_tool_checkout_stays_clean(stash):
    before = git(stash.tool, "status", "--porcelain", "--ignored")
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    assert git(stash.tool, "status", "--porcelain", "--ignored") == before


def test_crash_keeps_logs_and_exit_code(stash):
    out = stash.run("tool=fx", "experiment=crash")
    assert out.returncode == 3
    (record,) = stash.runs()
    assert record["status"] == "failed" and record["exit_code"] == 3
    run_dir = stash.root / record["run_dir"]
    assert "boom" in (run_dir / "stderr.log").read_text()
    assert "fixture tool running" in (run_dir / "stdout.log").read_text()
    assert "failed" in out.stderr and "stderr.log" in out.stderr


def test_timeout(stash):
    start = time.monotonic()
    out = stash.run("tool=fx", "experiment=slow", "stash.timeout=1", "stash.grace=1")
    assert time.monotonic() - start < 20
    assert out.returncode == 124
    (record,) = stash.runs()
    assert record["status"] == "timeout" and record["duration_s"] < 10


def test_two_runs_in_the_same_second_get_their_own_dirs(stash):
    procs = [stash.popen("tool=fx", "experiment=a") for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    records = stash.runs()
    assert len({r["run_dir"] for r in records}) == 2 and len({r["id"] for r in records}) == 2


def test_run_from_a_subfolder_and_with_root_variable(stash, tmp_path):
    out = stash.run("tool=fx", "experiment=a", cwd=stash.root / "configs")
    assert out.returncode == 0
    assert "succeeded in" in out.stderr and f": {stash.root}/outputs/fx/a/" in out.stderr  # a path usable from there
    out = stash.run("tool=fx", "experiment=b", cwd=tmp_path, env={"EXPERIMENTSTASH_ROOT": str(stash.root)})
    assert out.returncode == 0, out.stderr
    assert len(stash.runs()) == 2


def test_sigint_ends_the_tool_and_records_interrupted(stash):
    proc = stash.popen("tool=fx", "experiment=slow", "spawn_child=true", "stash.grace=1")
    deadline = time.monotonic() + 30
    while not list((stash.root / "outputs").rglob("seen.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    (seen_file,) = (stash.root / "outputs").rglob("seen.json")
    tool_saw = json.loads(seen_file.read_text())
    proc.send_signal(2)
    assert proc.wait(timeout=30) == 130
    (record,) = stash.runs()
    assert record["status"] == "interrupted"
    assert not pid_alive(tool_saw["pid"]) and not pid_alive(tool_saw["child_pid"])


# --- pins -----------------------------------------------------------------------------------------------------

def move_tool(stash):
    (stash.tool / "VERSION").write_text("v2\n")
    git(stash.tool, "commit", "-qam", "v2")
    return git(stash.tool, "rev-parse", "HEAD")


def test_moved_pin_warn_runs_and_records_both(stash):
    pinned = git(stash.tool, "rev-parse", "HEAD")
    moved = move_tool(stash)
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("warning:") == 1 and "git submodule update tools/fx" in out.stderr
    (record,) = stash.runs()
    assert record["tool_pinned_commit"] == pinned and record["tool_commit"] == moved
    assert record["result"]["version"] == "v2"


def test_moved_pin_strict_refuses_and_off_is_silent(stash):
    move_tool(stash)
    out = stash.run("tool=fx", "experiment=a", "stash.pin=strict")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "git submodule update tools/fx" in out.stderr
    assert not (stash.root / "outputs").exists()
    out = stash.run("tool=fx", "experiment=a", "stash.pin=off")
    assert out.returncode == 0 and "warning" not in out.stderr


def test_dirty_tool_saves_a_patch_that_applies(stash, tmp_path):
    (stash.tool / "VERSION").write_text("v1-dirty\n")
    (stash.tool / "notes.txt").write_text("untracked\n")
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 0 and "uncommitted changes" in out.stderr
    (record,) = stash.runs()
    assert record["tool_dirty"] is True and record["tool_diff"] == "tool.diff"
    assert record["tool_untracked"] == ["notes.txt"]
    # the patch recreates the dirty checkout from the recorded commit
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(stash.tool_repo), str(clone)], check=True)
    git(clone, "checkout", "-q", record["tool_commit"])
    git(clone, "apply", str(stash.root / record["run_dir"] / "tool.diff"))
    assert (clone / "VERSION").read_text() == "v1-dirty\n" and (clone / "notes.txt").read_text() == "untracked\n"
    # and the real checkout was not touched
    assert [line.split() for line in git(stash.tool, "status", "--porcelain").splitlines()] == [
        ["M", "VERSION"], ["??", "notes.txt"]]


def test_dirty_tool_strict_refuses(stash):
    (stash.tool / "VERSION").write_text("v1-dirty\n")
    out = stash.run("tool=fx", "experiment=a", "stash.pin=strict")
    assert out.returncode == 2 and "uncommitted changes" in out.stderr and "git -C tools/fx stash" in out.stderr


def test_uninitialized_submodule(stash):
    git(stash.root, "submodule", "deinit", "-q", "-f", "tools/fx")
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 2 and "git submodule update --init tools/fx" in out.stderr
    assert "Traceback" not in out.stderr
    assert stash.run("list").returncode == 0  # the rest still works


def test_in_tree_tool_is_pinned_by_the_stash_commit(stash):
    local = stash.root / "tools" / "local"
    for name in ("tool.py", "VERSION", "conf/config.yaml"):
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_text((stash.tool / name).read_text())
    stash.write("configs/meta.local.yaml", "tools:\n  local:\n    path: tools/local\n    entrypoint: tool.py\n"
                "    env: current\n")
    stash.write("configs/local/experiment/a.yaml", (stash.root / "configs/fx/experiment/a.yaml").read_text())
    head = stash.commit("in-tree tool")
    assert stash.run("tool=local", "experiment=a").returncode == 0
    (local / "VERSION").write_text("changed\n")
    assert stash.run("tool=local", "experiment=a").returncode == 0
    clean, dirty = stash.runs()
    assert clean["tool_kind"] == "in-tree" and clean["tool_commit"] == clean["tool_pinned_commit"] == head
    assert clean["tool_dirty"] is False and dirty["tool_dirty"] is True
    assert "changed" in (stash.root / dirty["run_dir"] / "tool.diff").read_text()


def test_uv_tool_records_its_lock_file(stash):
    """env: uv runs `uv run --project <tool> --frozen`; the run records the lock file's sha256 and the python."""
    pytest.importorskip("uv", reason="uv is installed with the test extras")
    import uv

    uv_bin = uv.find_uv_bin()
    hydra_pin = f"hydra-core=={importlib.metadata.version('hydra-core')}"
    (stash.tool / "pyproject.toml").write_text(
        f'[project]\nname = "fx"\nversion = "0.1.0"\nrequires-python = ">=3.10"\ndependencies = ["{hydra_pin}"]\n'
    )
    lock = subprocess.run([uv_bin, "lock", "--project", str(stash.tool)], capture_output=True, text=True)
    if lock.returncode != 0:
        pytest.skip(f"uv lock needs the package index: {lock.stderr.strip()[-200:]}")
    (stash.tool / ".gitignore").write_text("__pycache__/\n.venv/\n")
    git(stash.tool, "add", "-A")
    git(stash.tool, "commit", "-qm", "uv project")
    stash.commit("pin the uv tool")
    stash.write("configs/meta.local.yaml", "tools:\n  fx:\n    env: uv\n")
    out = stash.run("tool=fx", "experiment=a", env={"PATH": f"{Path(uv_bin).parent}:{os.environ['PATH']}"})
    if out.returncode != 0 and "Failed to fetch" in out.stderr:
        pytest.skip("uv could not download the tool's dependencies")
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    env = record["env"]
    assert env["kind"] == "uv" and env["lock_file"] == "uv.lock"
    assert env["lock_sha256"] == hashlib.sha256((stash.tool / "uv.lock").read_bytes()).hexdigest()
    assert env["python"] and env["executable"].endswith("bin/python")
    assert record["command"][1:6] == ["run", "--project", str(stash.tool), "--frozen", "python"]
    assert not (stash.tool / ".venv").exists()  # the environment lives in the stash's cache, not the checkout


def test_numeric_experiment_ids_stay_file_names(stash):
    stash.write("configs/fx/experiment/2024.yaml", "# @package _global_\ndefaults:\n  - /config\n  - _self_\n")
    assert stash.run("tool=fx", "experiment=2024").returncode == 0
    out = stash.run("-m", "tool=fx", "experiment=glob(2*)")
    assert out.returncode == 0, out.stderr
    assert {r["experiment"] for r in stash.runs()} | {r["experiment"] for r in stash.runs("multirun")} == {"2024"}


def test_a_tool_that_cannot_start_is_a_failed_run(stash):
    python = stash.write("not-executable", "")
    stash.write("configs/meta.local.yaml", f"tools:\n  fx:\n    env: {{python: {python}}}\n")
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (record,) = stash.runs()
    assert record["status"] == "failed"
    assert "cannot start" in (stash.root / record["run_dir"] / "stderr.log").read_text()


def test_untracked_names_are_recorded_as_they_are(stash):
    (stash.tool / "é notes.txt").write_text("x\n")
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    (record,) = stash.runs()
    assert record["tool_untracked"] == ["é notes.txt"]


def test_files_a_run_writes_into_the_tools_checkout_are_named_and_recorded(stash):
    out = stash.run("tool=fx", "experiment=a", "litter=true")
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    assert record["tool_touched"] == ["litter.txt"] and (stash.tool / "litter.txt").is_file()
    assert out.stderr.count("wrote into the tool's checkout") == 1 and "hydra.runtime.output_dir" in out.stderr
    again = stash.run("tool=fx", "experiment=b")  # nothing new: nothing said
    assert again.returncode == 0 and "wrote into the tool's checkout" not in again.stderr


def test_hydra_run_dir_places_a_single_run_where_hydra_would(stash, tmp_path):
    sub = stash.root / "sub"
    sub.mkdir()
    out = stash.run("tool=fx", "experiment=a", "hydra.run.dir=mine/r1", cwd=sub)  # relative to where it is typed
    assert out.returncode == 0, out.stderr
    run_dir = sub / "mine" / "r1"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["run_dir"] == "sub/mine/r1" and record["command"][-1] == f"hydra.run.dir={run_dir}"
    assert seen(stash, record)["cfg"]["value"] == 1 and not (stash.root / "outputs").exists()

    # outside the stash, with Hydra's interpolations: recorded by its absolute path, and read from there
    out = stash.run("tool=fx", "experiment=b", f"hydra.run.dir={tmp_path}/elsewhere/${{now:%Y}}")
    assert out.returncode == 0, out.stderr
    (elsewhere,) = (tmp_path / "elsewhere").iterdir()
    assert elsewhere.name.isdigit()
    record = json.loads((elsewhere / "run.json").read_text())
    assert record["run_dir"] == str(elsewhere) and record["result"]["score"] == 4.0
    compare = stash.run("compare", str(elsewhere))
    assert compare.returncode == 0 and "succeeded" in compare.stdout, compare.stderr
    repro = stash.run("reproduce", str(elsewhere))
    assert repro.returncode == 0, repro.stderr
    (again,) = stash.runs()
    assert again["reproduces"] == record["id"] and again["result"] == record["result"]

    # a folder that holds files is never reused; none is made in a tool's checkout or left by a refused run
    out = stash.run("tool=fx", "experiment=a", "hydra.run.dir=mine/r1", cwd=sub)
    assert out.returncode == 2 and "holds files already, and a run dir is never reused" in out.stderr
    out = stash.run("tool=fx", "experiment=a", "hydra.run.dir=tools/fx/out")
    assert out.returncode == 2 and "is inside a tool's checkout" in out.stderr
    out = stash.run("tool=fx", "experiment=nope", "hydra.run.dir=mine/r2", cwd=sub)
    assert out.returncode == 2 and "Unknown experiment 'nope'" in out.stderr
    assert not (stash.tool / "out").exists() and not (sub / "mine" / "r2").exists()
    assert git(stash.tool, "status", "--porcelain", "--ignored") == ""


def test_launcher_options_apply_to_a_single_run_as_to_a_job_of_a_sweep(stash):
    stash.write("configs/meta.local.yaml", "local:\n  gpus: [3, 5]\n  gpus_per_job: 1\n")  # this machine's
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    assert seen(stash, record)["cuda"] == "3" and record["env"]["variables"]["CUDA_VISIBLE_DEVICES"] == "3"
    out = stash.run("tool=fx", "experiment=slow", "hydra.launcher.timeout=2", "stash.grace=1")
    assert out.returncode == 124 and "timeout in" in out.stderr

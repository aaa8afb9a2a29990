"""Faults around a run, with real processes, signals and file systems: what the record says afterwards."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, pid_alive
from experimentstash.testing import agreed, wait_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mounts a small tmpfs: needs root")


def seen_files(stash, folder):
    return [json.loads(p.read_text()) for p in (stash.root / folder).rglob("seen.json")]


def records(stash, folder):
    return [json.loads(p.read_text()) for p in (stash.root / folder).rglob("run.json")]


def all_gone(pids, timeout=15.0):
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout, f"processes {pids} to end")


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs; unmounted afterwards."""
    mounted = []

    def mount(path: Path, size: str = "2m", readonly: bool = False):
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if readonly else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


# --- the launcher killed ----------------------------------------------------------------------------------------

def test_kill_9_of_the_launcher_ends_the_run_and_its_record_says_so(stash):
    proc = stash.popen("tool=fx", "experiment=slow", "spawn_child=true", "daemon=true", "stash.grace=1")
    (saw,) = wait_for(lambda: seen_files(stash, "outputs"), what="the tool to start")
    proc.kill()  # SIGKILL: no handler runs in the process the user started
    proc.wait(timeout=30)
    all_gone([saw["pid"], saw["child_pid"], saw["daemon_pid"]])
    (record,) = wait_for(lambda: [r for r in records(stash, "outputs") if r["status"] != "running"], 15,
                         "a final record")
    assert record["status"] == "interrupted"
    out = stash.run("runs")
    assert "running" not in out.stdout


def test_kill_9_of_the_launcher_process_itself_leaves_no_tool_and_shows_lost(stash):
    proc = stash.popen("-m", "tool=fx", "experiment=slow,slow", "spawn_child=true", "daemon=true",
                       "hydra.launcher.max_parallel=2", "stash.grace=1")
    saws = wait_for(lambda: len(seen_files(stash, "multirun")) == 2 and seen_files(stash, "multirun"),
                    what="both tools to start")
    (launcher,) = {r["owner"]["pid"] for r in records(stash, "multirun")}
    os.kill(launcher, signal.SIGKILL)  # the launcher dies without a word; what it started must not live on
    proc.wait(timeout=30)
    all_gone([p for saw in saws for p in (saw["pid"], saw["child_pid"], saw["daemon_pid"])])
    assert {r["status"] for r in records(stash, "multirun")} == {"running"}  # nobody was left to say otherwise
    out = stash.run("runs", "--status", "lost")
    assert out.returncode == 0 and out.stdout.count("lost") >= 2
    (sweep,) = (stash.root / "multirun").iterdir()
    status = stash.run("status", str(sweep))
    assert status.returncode == 0 and "2 jobs: 2 lost" in status.stdout
    data = json.loads((sweep / "sweep.json").read_text())
    assert [j["status"] for j in data["jobs"]] == ["lost", "lost"]  # brought in line, run.json and sweep.json alike
    assert all(agreed(json.loads((stash.root / j["run_dir"] / "run.json").read_text()), j) for j in data["jobs"])
    stash.write("configs/fx/experiment/slow.yaml", "# @package _global_\ndefaults:\n  - /config\n  - _self_\n")
    rerun = stash.run("rerun", str(sweep))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert [j["status"] for j in json.loads((sweep / "sweep.json").read_text())["jobs"]] == ["succeeded"] * 2
    earlier = json.loads((sweep / "0_fx_slow.attempt1" / "run.json").read_text())
    assert earlier["status"] == "lost" and not (sweep / "0_fx_slow.attempt1" / "result.json").exists()


def test_kill_9_during_a_sweep_ends_every_tool_and_records_interrupted(stash):
    proc = stash.popen("-m", "tool=fx", "experiment=slow", "seed=range(2)", "ignore_term=true",
                       "hydra.launcher.max_parallel=2", "stash.grace=1")
    saws = wait_for(lambda: len(seen_files(stash, "multirun")) == 2 and seen_files(stash, "multirun"),
                    what="both tools to start")
    proc.kill()
    all_gone([saw["pid"] for saw in saws])
    (sweep,) = (stash.root / "multirun").iterdir()
    wait_for(lambda: [j["status"] for j in json.loads((sweep / "sweep.json").read_text())["jobs"]]
             == ["interrupted"] * 2, 15, "sweep.json to say interrupted")


def test_rerun_waits_for_an_attempt_that_still_runs(stash):
    out = stash.run("-m", "tool=fx", "experiment=crash,a")
    assert out.returncode == 1
    (sweep,) = (stash.root / "multirun").iterdir()
    stash.write("configs/fx/experiment/crash.yaml", "# @package _global_\ndefaults:\n  - /config\n  - _self_\nsleep: 4\n")
    first = stash.popen("rerun", str(sweep))
    wait_for(lambda: (sweep / "0_fx_crash.attempt1").exists() and (sweep / "0_fx_crash" / "seen.json").exists(),
             what="the first rerun to start job 0")
    second = stash.run("rerun", str(sweep))
    assert first.wait(timeout=60) == 0
    assert second.returncode == 0, second.stderr
    assert "is running jobs of this sweep: waiting for it to end" in second.stdout + second.stderr
    assert "nothing to rerun" in second.stdout + second.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.name.startswith("0_")) == ["0_fx_crash", "0_fx_crash.attempt1"]


def test_rerun_while_the_sweep_itself_still_runs_waits_for_it(stash):
    stash.write("configs/fx/experiment/medium.yaml", "# @package _global_\ndefaults:\n  - /config\n  - _self_\nsleep: 3\n")
    first = stash.popen("-m", "tool=fx", "experiment=crash,medium,medium", "hydra.launcher.max_parallel=1")
    sweep = wait_for(lambda: next((stash.root / "multirun").glob("*/1_fx_medium/seen.json"), None), what="job 1")
    sweep = sweep.parent.parent
    second = stash.run("rerun", str(sweep))  # job 2 is still pending in the first launcher: not run twice
    assert first.wait(timeout=60) == 1
    assert second.returncode == 1 and "waiting for it to end" in second.stderr
    jobs = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["failed", "succeeded", "succeeded"]
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".") and p.is_dir()) == [
        "0_fx_crash", "0_fx_crash.attempt1", "1_fx_medium", "2_fx_medium"]


# --- output and disk --------------------------------------------------------------------------------------------

def test_a_closed_stdout_costs_the_terminal_copy_only(stash):
    cmd = f"{sys.executable} -m experimentstash tool=fx experiment=a print_lines=20000 | head -c 100"
    out = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], cwd=stash.root, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    (record,) = records(stash, "outputs")
    assert record["status"] == "succeeded"
    log = (stash.root / record["run_dir"] / "stdout.log").read_text()
    assert log.count("\n") >= 20001 and "line 19999 " in log


@needs_root
def test_disk_full_during_a_run_keeps_the_tools_code_and_message(stash, tmpfs):
    tmpfs(stash.root / "outputs", size="1m")
    out = stash.run("tool=fx", "experiment=a", "fill=true")
    assert out.returncode == 7, out.stderr
    assert "Traceback" not in out.stderr
    assert "disk full" in out.stderr  # the terminal got the tool's message
    (record,) = records(stash, "outputs")
    assert record["status"] == "failed" and record["exit_code"] == 7
    stderr = (stash.root / record["run_dir"] / "stderr.log").read_text()
    assert "fixture tool: disk full" in stderr


@needs_root
def test_disk_full_during_a_sweep_keeps_sweep_json_true(stash, tmpfs):
    tmpfs(stash.root / "multirun", size="1m")
    out = stash.run("-m", "tool=fx", "experiment=a", "fill=true,false", "hydra.launcher.max_parallel=1")
    assert "Traceback" not in out.stderr + out.stdout
    (sweep,) = (stash.root / "multirun").iterdir()
    jobs = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert jobs[0]["status"] == "failed" and jobs[0]["exit_code"] == 7
    assert jobs[1]["status"] != "pending"  # it ran (and failed or succeeded as the disk allowed), never unknown


@needs_root
def test_a_full_disk_before_the_run_is_a_clear_error_and_leaves_nothing(stash, tmpfs):
    outputs = tmpfs(stash.root / "outputs", size="512k")
    with open(outputs / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "No space left on device" in out.stderr and "outputs" in out.stderr
    assert [p.name for p in outputs.iterdir()] == ["filler"] or not list((outputs / "fx").rglob("*.*"))


def test_outputs_that_is_a_file_is_a_clear_error(stash):
    stash.write("outputs", "not a folder\n")
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "outputs" in out.stderr and "Not a directory" in out.stderr


@needs_root
def test_a_read_only_multirun_is_a_clear_error(stash, tmpfs):
    tmpfs(stash.root / "multirun", readonly=True)
    out = stash.run("-m", "tool=fx", "experiment=a,b")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "multirun" in out.stderr and "Read-only file system" in out.stderr


@pytest.fixture
def immutable():
    """`chattr +i` on paths, undone afterwards; the test is skipped where the flag cannot be set."""
    done = []

    def make(path: Path) -> None:
        out = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True) if shutil.which("chattr") \
            else None
        if out is None or out.returncode != 0:
            pytest.skip("the immutable flag cannot be set here (`chattr +i` needs root and a file system that has "
                        f"it): {out.stderr.strip() if out else 'no chattr'}")
        done.append(path)

    yield make
    for path in done:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def lost_job(stash) -> Path:
    """A sweep whose job 0 is recorded `running` by a launcher that is gone, and whose job 1 failed."""
    out = stash.run("-m", "tool=fx", "experiment=a,crash")
    assert out.returncode == 1, out.stderr
    (sweep,) = (stash.root / "multirun").iterdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    record = json.loads((sweep / "0_fx_a" / "run.json").read_text())
    record.update(status="running", exit_code=None, ended_at=None, duration_s=None,
                  owner={"pid": gone.pid, "host": socket.gethostname(), "started": 0})
    (sweep / "0_fx_a" / "run.json").write_text(json.dumps(record))
    return sweep


@pytest.mark.parametrize("command", ["status", "rerun"])
@pytest.mark.parametrize("unwritable, named", [("0_fx_a", "0_fx_a/run.json"), (".", "sweep.json")])
def test_a_record_that_cannot_be_written_stops_the_command_and_changes_nothing(stash, immutable, command,
                                                                               unwritable, named):
    sweep = lost_job(stash)
    records = lambda: {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file() and p.name != ".experimentstash.lock"}
    before = records()
    immutable(sweep / unwritable)
    out = stash.run(command, str(sweep))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert f"Cannot write {sweep / named}: Operation not permitted" in out.stderr and "nothing was changed" in out.stderr
    assert records() == before  # and no attempt was moved aside


# --- hydra.sweep.dir ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, said", [
    ("a file", "multirun/here is a file, not a folder"),
    ("a file above it", "multirun/file is a file, not a folder"),
    ("a dangling link", "multirun/here is a link that leads nowhere (to nowhere)"),
    ("a link loop", "multirun/here is a link that leads round in a loop"),
    ("a named pipe", "multirun/here is a named pipe, not a folder"),
    ("a device", "/dev/null is a device, not a folder"),
    ("an immutable folder", "multirun/here cannot be written: Operation not permitted"),
])
def test_a_sweep_dir_that_cannot_be_one_is_refused_with_the_reason(stash, request, kind, said):
    folder = stash.root / "multirun"
    folder.mkdir()
    target = folder / "here"
    if kind == "a file":
        target.write_text("mine\n")
    elif kind == "a file above it":
        (folder / "file").write_text("mine\n")
        target = folder / "file" / "here"
    elif kind == "a dangling link":
        target.symlink_to("nowhere")
    elif kind == "a link loop":
        target.symlink_to("here")
    elif kind == "a named pipe":
        os.mkfifo(target)
    elif kind == "a device":
        target = Path("/dev/null")
    else:
        target.mkdir()
        request.getfixturevalue("immutable")(target)
    before = sorted(folder.rglob("*"))
    out = stash.run("-m", "tool=fx", "experiment=a", f"hydra.sweep.dir={target}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert said in out.stderr and "holds a sweep already" not in out.stderr
    assert sorted(folder.rglob("*")) == before  # nothing written
    assert not (stash.root / "outputs").exists()


# --- what a run leaves behind -----------------------------------------------------------------------------------

def test_a_setsid_daemon_is_ended_with_its_run(stash):
    start = time.monotonic()
    out = stash.run("tool=fx", "experiment=a", "daemon=true", "stash.grace=1")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - start < 15  # not held up by the daemon
    (record,) = records(stash, "outputs")
    saw = json.loads((stash.root / record["run_dir"] / "seen.json").read_text())
    all_gone([saw["daemon_pid"]], timeout=5)


# --- one sweep dir, one sweep -----------------------------------------------------------------------------------

def test_a_second_sweep_into_the_same_dir_is_refused(stash):
    out = stash.run("-m", "tool=fx", "experiment=a", "hydra.sweep.dir=multirun/mine")
    assert out.returncode == 0, out.stderr
    before = (stash.root / "multirun/mine/sweep.json").read_text()
    again = stash.run("-m", "tool=fx", "experiment=b", "hydra.sweep.dir=multirun/mine")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "holds a sweep already" in again.stderr and "rerun" in again.stderr
    assert (stash.root / "multirun/mine/sweep.json").read_text() == before


def test_two_sweeps_into_one_dir_at_the_same_moment(stash):
    procs = [stash.popen("-m", "tool=fx", f"experiment={e}", "hydra.sweep.dir=multirun/same") for e in ("a", "b")]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2]
    assert all("Traceback" not in err for _, err in results)
    data = json.loads((stash.root / "multirun/same/sweep.json").read_text())
    assert len(data["jobs"]) == 1 and data["jobs"][0]["status"] == "succeeded"


def test_a_sweep_into_a_closed_stdout_keeps_its_exit_code(stash):
    for experiments, code in (("a,b", 0), ("a,crash", 1)):
        cmd = f"{sys.executable} -m experimentstash -m tool=fx experiment={experiments} | head -c 10"
        out = subprocess.run(["bash", "-c", f"{cmd}; exit ${{PIPESTATUS[0]}}"], cwd=stash.root, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert out.returncode == code, out.stderr
        assert "Traceback" not in out.stderr


def test_a_stdout_nobody_reads_does_not_hold_up_the_tool(stash):
    proc = stash.popen("tool=fx", "experiment=a", "print_lines=40000")  # ~4 MB, far more than a pipe holds
    try:
        code = proc.wait(timeout=60)  # nobody reads the launcher's stdout meanwhile
    finally:
        proc.stdout.close()
    assert code == 0, proc.stderr.read()
    (record,) = records(stash, "outputs")
    assert record["status"] == "succeeded"
    assert "line 39999 " in (stash.root / record["run_dir"] / "stdout.log").read_text()

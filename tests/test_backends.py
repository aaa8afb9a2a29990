"""What every sweep backend does alike, written once and run on each registered backend (local, and the real
Slurm of .ci/slurm-up): statuses, failure isolation, results and records, rerun, Ctrl-C.

A new backend gets these tests by one row in BACKEND_OPTIONS: the words that select it and keep its limits short.
"""

import json
import signal
import time
from pathlib import Path

import pytest

from conftest import experiment, pid_alive
from experimentstash.backends import BACKENDS

# per backend: the launcher words of its sweeps, and the marks of its tests (what it needs to run)
BACKEND_OPTIONS = {
    "local": (["hydra.launcher.max_parallel=4"], []),
    "slurm": (["hydra/launcher=stash_slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.signal_delay_s=5"],
              [pytest.mark.slurm]),
}


@pytest.fixture(params=[pytest.param(name, marks=BACKEND_OPTIONS.get(name, ([], []))[1]) for name in BACKENDS])
def backend(request) -> str:
    return request.param


def sweep(stash, backend: str, *words: str):
    return stash.run("-m", *BACKEND_OPTIONS[backend][0], *words, timeout=300)


def sweep_dir(stash) -> Path:
    (folder,) = [p for p in (stash.root / "multirun").iterdir() if p.is_dir()]
    return folder


def sweep_json(stash) -> dict:
    return json.loads((sweep_dir(stash) / "sweep.json").read_text())


def run_json(stash, job: dict) -> dict:
    return json.loads((stash.root / job["run_dir"] / "run.json").read_text())


def agreed(record: dict, job: dict) -> bool:
    """A job's run.json and its sweep.json entry say the same: status, exit code, duration and end time."""
    fields = ("status", "exit_code", "duration_s", "ended_at")
    return record["ended_at"] is not None and [record[f] for f in fields] == [job[f] for f in fields]


def test_every_registered_backend_has_its_options_here():
    assert set(BACKEND_OPTIONS) == set(BACKENDS)


def test_every_job_ends_with_its_status_result_and_record(stash, backend):
    stash.write("configs/fx/experiment/crash2.yaml", experiment("crash: true\nvalue: 7\n"))
    out = sweep(stash, backend, "tool=fx", "experiment=a,crash,b,crash2")
    assert out.returncode == 1, out.stdout + out.stderr
    data = sweep_json(stash)
    assert data["backend"] == backend
    jobs = data["jobs"]
    # a failed job never hides the others
    assert [(j["num"], j["experiment"], j["status"], j["exit_code"]) for j in jobs] == [
        (0, "a", "succeeded", 0), (1, "crash", "failed", 3), (2, "b", "succeeded", 0), (3, "crash2", "failed", 3)]
    assert all(j["duration_s"] is not None for j in jobs)
    for job in jobs:  # one run.json per job, in its run dir, that says the same and knows its sweep
        record = run_json(stash, job)
        assert record["sweep"] == {"id": data["id"], "num": job["num"]}
        assert agreed(record, job)
    results = [run_json(stash, j)["result"] for j in jobs]  # the tool's result file, read into its record
    assert [result["score"] if result else None for result in results] == [2.0, None, 4.0, None]
    # the table of every job, then every failure with the tail of its stderr, then the counts
    for column in ("tool", "experiment", "overrides", "status", "duration", "run dir"):
        assert column in out.stdout
    assert "job 1 failed, exit code 3" in out.stdout and "job 3 failed, exit code 3" in out.stdout
    assert out.stdout.count("boom: the fixture tool was asked to crash") == 2
    assert "4 jobs: 2 succeeded, 2 failed" in out.stdout


def test_rerun_relaunches_only_what_failed(stash, backend):
    out = sweep(stash, backend, "tool=fx", "experiment=a,crash")
    assert out.returncode == 1, out.stdout + out.stderr
    folder = sweep_dir(stash)
    first = (folder / "0_fx_a" / "run.json").read_text()
    stash.write("configs/fx/experiment/crash.yaml", experiment())
    out = stash.run("rerun", str(folder), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (folder / "0_fx_a" / "run.json").read_text() == first  # not run again
    data = sweep_json(stash)
    assert [j["status"] for j in data["jobs"]] == ["succeeded", "succeeded"]
    assert [r["jobs"] for r in data["reruns"]] == [[1]]
    assert json.loads((folder / "1_fx_crash.attempt1" / "run.json").read_text())["status"] == "failed"
    assert "2 jobs: 2 succeeded" in out.stdout
    status = stash.run("status", str(folder))
    assert status.returncode == 0 and "2 jobs: 2 succeeded" in status.stdout


def test_ctrl_c_ends_every_job_and_records_it_interrupted(stash, backend):
    proc = stash.popen("-m", *BACKEND_OPTIONS[backend][0], "tool=fx", "experiment=slow", "seed=range(3)",
                       "spawn_child=true", "ignore_term=true", "stash.grace=1")
    deadline = time.monotonic() + 120
    while len(list((stash.root / "multirun").rglob("seen.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    saw = [json.loads(p.read_text()) for p in (stash.root / "multirun").rglob("seen.json")]
    assert len(saw) == 3
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130
    jobs = sweep_json(stash)["jobs"]
    assert [j["status"] for j in jobs] == ["interrupted"] * 3
    assert all(agreed(run_json(stash, j), j) for j in jobs)
    assert "3 jobs: 3 interrupted" in stdout
    for tool_saw in saw:
        assert not pid_alive(tool_saw["pid"]) and not pid_alive(tool_saw["child_pid"])
    status = stash.run("status", str(sweep_dir(stash)))
    assert status.returncode == 0 and "3 jobs: 3 interrupted" in status.stdout

"""On a real Slurm: a sweep submitted without waiting finishes itself (a final job brings its records in line and
tells its end)."""

import subprocess
import time

import pytest

from sinks import HttpSink
from test_slurm import SLURM, squeue, sweep_dir, sweep_json, wait_for_status


def wait_for_sweep(stash, done, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while not done(data := sweep_json(stash)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return data


@pytest.fixture
def http():
    sink = HttpSink()
    yield sink
    sink.close()


@pytest.mark.slurm
def test_a_detached_sweep_is_finished_by_its_final_job_after_the_launcher_exited(stash, http):
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "tool=fx", "experiment=a,crash", "sleep=2",
                    f"stash.notify={http.url('detached-secret')}")
    assert out.returncode == 0, out.stdout + out.stderr
    launched = sweep_json(stash)
    final_id = launched["backend_state"]["finisher"]["job_id"]
    assert f"When they end, the final Slurm job {final_id} brings the records in line" in out.stderr
    assert [job["status"] for job in launched["jobs"]] == ["pending", "pending"]
    # the launcher is gone: the final job posts the end and writes sweep.json, with nobody typing `status`
    (posted,) = http.wait_for(1, timeout=180)
    assert posted["path"] == "/detached-secret"
    assert posted["title"] == f"sweep {launched['id']} ended: 1 succeeded, 1 failed"
    assert f"Rerun:  experimentstash rerun multirun/{launched['id']}" in posted["message"]
    data = wait_for_sweep(stash, lambda d: "ended_at" in d["backend_state"]["finisher"])
    assert data["backend_state"]["finisher"]["notified"] == "sent"
    assert [(job["status"], job["exit_code"]) for job in data["jobs"]] == [("succeeded", 0), ("failed", 3)]
    assert [job["slurm_state"] for job in data["jobs"]] == ["COMPLETED", "COMPLETED"]  # from sacct, not run.json
    status = stash.run("status", str(sweep_dir(stash)))
    assert status.returncode == 0, status.stderr
    assert f"The sweep's final Slurm job {final_id} ran at" in status.stdout + status.stderr
    # the URL reached the final job through its environment, never through a file
    for path in sweep_dir(stash).rglob("*"):
        if path.is_file():
            assert b"detached-secret" not in path.read_bytes(), path


@pytest.mark.slurm
def test_a_rerun_replaces_the_final_job_that_has_not_run_yet(stash):
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "tool=fx", "experiment=a,crash")
    assert out.returncode == 0, out.stdout + out.stderr
    held = sweep_json(stash)["backend_state"]["finisher"]["job_id"]
    subprocess.run(["scontrol", "hold", held], check=True)  # it waits, as it may for a busy cluster
    wait_for_status(stash, sweep_dir(stash), "2 jobs: 1 succeeded, 1 failed")
    rerun = stash.run("rerun", str(sweep_dir(stash)))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert held not in squeue(f"stash-{sweep_json(stash)['id']}")
    new = sweep_json(stash)["backend_state"]["finisher"]["job_id"]
    assert new != held and f"the final Slurm job {new}" in rerun.stderr
    wait_for_sweep(stash, lambda d: "ended_at" in d["backend_state"]["finisher"])

"""Sweeps on a real Slurm (single node, started by .ci/slurm-up): one job array per sweep, through submitit."""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import submitit


def slurm_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return ping.returncode == 0 and "UP" in ping.stdout


# CI sets EXPERIMENTSTASH_REQUIRE_SLURM=1 after .ci/slurm-up, so there a missing Slurm fails instead of skipping
needs_slurm = pytest.mark.skipif(
    not slurm_up() and not os.environ.get("EXPERIMENTSTASH_REQUIRE_SLURM"),
    reason="no Slurm controller answers here; .ci/slurm-up starts one",
)
SLURM = ["hydra/launcher=stash_slurm", "hydra.launcher.signal_delay_s=5", "hydra.launcher.timeout_min=5"]


def sweep_dir(stash) -> Path:
    (folder,) = [p for p in (stash.root / "multirun").iterdir() if p.is_dir()]
    return folder


def sweep_json(stash) -> dict:
    return json.loads((sweep_dir(stash) / "sweep.json").read_text())


def wait_for_status(stash, folder, needle, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = stash.run("status", str(folder))
        assert out.returncode == 0, out.stderr
        if needle in out.stdout:
            return out.stdout
        time.sleep(2)
    raise AssertionError(f"'{needle}' not in: {out.stdout}")


def submit_one_and_wait_until_running(stash, *args):
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "tool=fx", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = sweep_json(stash)["jobs"]
    deadline = time.monotonic() + 60
    while not (stash.root / job["run_dir"] / "seen.json").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    return sweep_dir(stash), job


@needs_slurm
def test_a_sweep_is_one_job_array_with_records_from_every_task(stash):
    out = stash.run("-m", *SLURM, "tool=fx", "experiment=a,b,c,fig1/x", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    data = sweep_json(stash)
    assert data["backend"] == "slurm"
    ids = [job["slurm_job_id"] for job in data["jobs"]]
    arrays = {i.split("_")[0] for i in ids}
    assert len(arrays) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1", "2", "3"]  # one sbatch
    assert [job["status"] for job in data["jobs"]] == ["succeeded"] * 4
    records = stash.runs("multirun")
    assert sorted(r["slurm_job_id"] for r in records) == sorted(ids)
    assert {r["node"] for r in records} == {socket.gethostname()}
    assert sorted(r["result"]["score"] for r in records) == [2.0, 4.0, 6.0, 20.0]
    assert "4 jobs: 4 succeeded" in out.stdout


@needs_slurm
def test_failed_and_slurm_timed_out_tasks_are_reported(stash):
    stash.write("configs/fx/experiment/slower.yaml",
                "# @package _global_\ndefaults:\n  - /config\n  - _self_\nsleep: 300\n")
    out = stash.run("-m", "hydra/launcher=stash_slurm", "hydra.launcher.timeout_min=1",
                    "hydra.launcher.signal_delay_s=5", "tool=fx", "experiment=a,crash,slower", timeout=400)
    assert out.returncode == 1
    jobs = sweep_json(stash)["jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "failed", "timeout"]
    assert jobs[2]["slurm_state"] == "TIMEOUT" and jobs[1]["exit_code"] == 3
    timed_out = json.loads((stash.root / jobs[2]["run_dir"] / "run.json").read_text())
    assert timed_out["status"] == "timeout"
    assert "boom: the fixture tool was asked to crash" in out.stdout


@needs_slurm
def test_submit_and_go_then_status_until_done(stash):
    start = time.monotonic()
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "tool=fx", "experiment=a,b", "sleep=3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert time.monotonic() - start < 30
    assert "experimentstash status" in out.stderr
    data = sweep_json(stash)
    assert all(j["slurm_job_id"] for j in data["jobs"])
    wait_for_status(stash, sweep_dir(stash), "2 jobs: 2 succeeded")


@needs_slurm
def test_rerun_of_the_failed_tasks(stash):
    out = stash.run("-m", *SLURM, "tool=fx", "experiment=a,crash", timeout=300)
    assert out.returncode == 1
    first_ids = [j["slurm_job_id"] for j in sweep_json(stash)["jobs"]]
    stash.write("configs/fx/experiment/crash.yaml", "# @package _global_\ndefaults:\n  - /config\n  - _self_\n")
    out = stash.run("rerun", str(sweep_dir(stash)), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = sweep_json(stash)["jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert jobs[0]["slurm_job_id"] == first_ids[0] and jobs[1]["slurm_job_id"] != first_ids[1]


@needs_slurm
def test_scancel_of_a_running_array_is_reported_cancelled(stash):
    folder, job = submit_one_and_wait_until_running(stash, "experiment=slow")
    subprocess.run(["scancel", job["slurm_job_id"].split("_")[0]], check=True)
    wait_for_status(stash, folder, "1 jobs: 1 cancelled")


@needs_slurm
def test_preempted_task_is_requeued_and_says_so(stash):
    folder, job = submit_one_and_wait_until_running(stash, "hydra.launcher.timeout_min=30", "experiment=a", "sleep=20")
    # what Slurm sends before a preemption; submitit's signal (USR2 in submitit >= 1.5)
    subprocess.run(["scancel", f"--signal={submitit.JobEnvironment.USR_SIG}", job["slurm_job_id"]], check=True)
    # Slurm holds a requeued job for two minutes before it may start again; let it start now
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job["slurm_job_id"], "-o", "%T"], capture_output=True, text=True)
        if state.stdout.strip() == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job['slurm_job_id']}", "StartTime=now"], check=True)
            break
        time.sleep(0.5)
    wait_for_status(stash, folder, "1 jobs: 1 succeeded", timeout=240)
    record = json.loads((stash.root / job["run_dir"] / "run.json").read_text())
    assert record["requeued"] == 1 and record["previous_attempts"] == [Path(job["run_dir"]).name + ".preempted1"]
    earlier = json.loads((stash.root / (job["run_dir"] + ".preempted1") / "run.json").read_text())
    assert earlier["status"] == "preempted"


# --- bad input (no Slurm needed) --------------------------------------------------------------------------------

def test_unknown_slurm_option_lists_the_known_ones(stash):
    out = stash.run("-m", "hydra/launcher=stash_slurm", "hydra.launcher.partion=gpu", "tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "hydra.launcher.partion" in out.stderr and "partition" in out.stderr and "timeout_min" in out.stderr


def test_unknown_slurm_option_in_meta_local_yaml(stash):
    stash.write("configs/meta.local.yaml", "slurm:\n  partishun: gpu\n")
    out = stash.run("-m", "hydra/launcher=stash_slurm", "tool=fx", "experiment=a")
    assert out.returncode == 2 and "Unknown option 'partishun' under 'slurm:'" in out.stderr


def test_slurm_not_installed_means_nothing_is_submitted(stash, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for name in ("git",):
        os.symlink(shutil.which(name), bare / name)
    out = stash.run("-m", "hydra/launcher=stash_slurm", "tool=fx", "experiment=a", env={"PATH": str(bare)})
    assert out.returncode == 2 and "sbatch" in out.stderr and "Traceback" not in out.stderr
    assert not (stash.root / "multirun").exists()


@needs_slurm
def test_controller_down_means_nothing_is_submitted(stash, tmp_path):
    conf = Path("/etc/slurm/slurm.conf").read_text()
    dead = tmp_path / "slurm.conf"
    dead.write_text(conf + "\nSlurmctldPort=1\n")
    out = stash.run("-m", *SLURM, "tool=fx", "experiment=a", env={"SLURM_CONF": str(dead)}, timeout=120)
    assert out.returncode == 2 and "not reachable" in out.stderr
    assert not (stash.root / "multirun").exists()

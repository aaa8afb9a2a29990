"""On a real Slurm (single node, .ci/slurm-up): a task that outlives its time limit retried by `rerun` with a longer
one, through a profile that chooses the Slurm backend; max_running held across several arrays (from sacct's start
and end times)."""

import json
import re
import subprocess
from datetime import datetime

import pytest

from conftest import experiment
from experimentstash.testing import run_json, sweep_dir, sweep_json

pytestmark = pytest.mark.slurm
SLURM = ["hydra/launcher=stash_slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.signal_delay_s=5"]


def test_a_timed_out_task_rerun_with_a_longer_time_limit_succeeds(stash):
    """Slurm ends a task at the next time-limit check after its minute (60-90 s): the tool sleeps longer."""
    stash.write("configs/meta.local.yaml", "profiles:\n  minute: {backend: slurm, timeout_min: 1, signal_delay_s: 5}\n")
    stash.write("configs/fx/experiment/long.yaml", experiment("sleep: 100\n"))
    out = stash.run("-m", "stash.profile=minute", "tool=fx", "experiment=long", timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    data = sweep_json(stash)
    assert data["backend"] == "slurm" and data["profile"] == "minute" and data["launcher"]["timeout_min"] == 1
    (job,) = data["jobs"]
    assert job["status"] == "timeout" and job["slurm_state"] == "TIMEOUT"

    out = stash.run("rerun", str(sweep_dir(stash)), "hydra.launcher.timeout_min=3", timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    data = sweep_json(stash)
    (job,) = data["jobs"]
    assert job["status"] == "succeeded"
    (entry,) = data["reruns"]
    assert entry["overrides"] == ["hydra.launcher.timeout_min=3"] and entry["profile"] == "minute"
    assert entry["launcher"]["timeout_min"] == 3 and entry["launcher"]["signal_delay_s"] == 5  # the profile's stays
    launcher = run_json(stash, job)["launcher"]
    assert launcher["backend"] == "slurm" and launcher["profile"] == "minute"
    assert launcher["options"]["timeout_min"] == 3 and "timeout_min" in launcher["given"]
    earlier = json.loads((sweep_dir(stash) / "0_fx_long.attempt1" / "run.json").read_text())
    assert earlier["status"] == "timeout" and earlier["launcher"]["options"]["timeout_min"] == 1
    limit = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "Timelimit", "-j", job["slurm_job_id"]],
                           capture_output=True, text=True, check=True).stdout.split()
    assert limit == ["00:03:00"]  # Slurm had the longer limit


def sacct_intervals(array_ids: list[str]) -> list[tuple[datetime, datetime]]:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,Start,End", "-j", ",".join(array_ids)],
                         capture_output=True, text=True, check=True).stdout
    spans = []
    for line in out.splitlines():
        _, start, end = line.split("|")
        spans.append((datetime.fromisoformat(start), datetime.fromisoformat(end)))
    return spans


def test_max_running_holds_across_the_arrays_of_a_sweep(stash):
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    size = int(re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE).group(1))
    if size > 6:
        pytest.skip(f"MaxArraySize is {size}: 12 jobs would be one array (.ci/slurm-up sets 4)")
    stash.write("configs/fx/experiment/nap.yaml", experiment("sleep: 2\n"))
    out = stash.run("-m", *SLURM,
                    "hydra.launcher.max_running=2", "tool=fx", "experiment=nap", "seed=range(12)", timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    data = sweep_json(stash)
    arrays = data["backend_state"]["arrays"]
    assert len(arrays) >= 3 and data["launcher"]["max_running"] == 2
    assert [j["status"] for j in data["jobs"]] == ["succeeded"] * 12
    spans = sacct_intervals(arrays)
    assert len(spans) == 12
    at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert at_once <= 2


def test_max_running_below_one_is_refused(stash):
    out = stash.run("-m", "hydra/launcher=stash_slurm", "hydra.launcher.max_running=0", "tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "hydra.launcher.max_running=0: give at least 1" in out.stderr


def test_watch_follows_a_sweep_submitted_without_waiting_to_its_end(stash):
    out = stash.run("-m", *SLURM,
                    "hydra.launcher.wait=false", "tool=fx", "experiment=a,crash")
    assert out.returncode == 0, out.stdout + out.stderr
    watched = stash.run("status", "--watch", str(sweep_dir(stash)), timeout=300)
    assert watched.returncode == 0, watched.stderr
    assert "job 1 failed, exit code 3: fx crash" in watched.stdout
    assert "boom: the fixture tool was asked to crash" in watched.stdout
    assert [j["status"] for j in sweep_json(stash)["jobs"]] == ["succeeded", "failed"]  # brought in line with Slurm

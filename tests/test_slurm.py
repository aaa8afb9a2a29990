"""What only the Slurm backend does, on a real Slurm (single node, started by .ci/slurm-up): arrays of at most
MaxArraySize tasks, Slurm's TIMEOUT, scancel, preemption, a cluster without accounting, a controller that does
not answer, options Slurm refuses. What every backend does is in test_backends.py."""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import submitit

from conftest import experiment, new_stash, pid_alive
from experimentstash.testing import agreed

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
        time.sleep(1)
    raise AssertionError(f"'{needle}' not in: {out.stdout}")


def wait_for_files(folder: Path, name: str, count: int, timeout: float = 120) -> list[Path]:
    deadline = time.monotonic() + timeout
    while len(found := list(folder.rglob(name))) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def submit_one_and_wait_until_running(stash, *args):
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "tool=fx", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = sweep_json(stash)["jobs"]
    wait_for_files(stash.root / job["run_dir"], "seen.json", 1, timeout=60)
    return sweep_dir(stash), job


def squeue(name: str) -> str:
    return subprocess.run(["squeue", "-h", f"--name={name}", "-o", "%i %T"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def max_array_size() -> int:
    """The cluster's MaxArraySize, as `scontrol show config` says."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    size = int(re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE).group(1))
    if size > 8:
        pytest.skip(f"MaxArraySize is {size}: splitting a sweep would take too many jobs (.ci/slurm-up sets 4)")
    return size


def expected_task_ids(arrays: list[str], jobs: int, size: int) -> list[str]:
    """Job k is task k % size of array k // size; an array of one task is a plain Slurm job."""
    ids = []
    for k in range(jobs):
        chunk = k // size
        alone = min(size, jobs - chunk * size) == 1
        ids.append(arrays[chunk] if alone else f"{arrays[chunk]}_{k % size}")
    return ids


# --- Slurm's TIMEOUT: started first, checked last ---------------------------------------------------------------

@pytest.fixture(scope="module")
def timeout_sweep(tmp_path_factory):
    """A sweep whose second job outlives its one-minute limit (the shortest Slurm has). Slurm looks at time limits
    every 30 s, so the task ends 60-90 s after it started: the sweep runs while the other Slurm tests of this
    module do, and test_slurm_time_limit_is_reported_as_timeout (the last one) checks it."""
    stash = new_stash(tmp_path_factory.mktemp("timeout"))
    stash.write("configs/fx/experiment/slower.yaml", experiment("sleep: 300\n"))
    proc = stash.popen("-m", "hydra/launcher=stash_slurm", "hydra.launcher.timeout_min=1",
                       "hydra.launcher.signal_delay_s=5", "tool=fx", "experiment=a,slower")
    yield stash, proc
    if proc.poll() is None:  # its test was not selected: the launcher cancels its tasks
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)


@pytest.fixture(autouse=True)
def timeout_sweep_running(request):
    if request.node.get_closest_marker("slurm"):
        request.getfixturevalue("timeout_sweep")


# --- arrays of at most MaxArraySize tasks -----------------------------------------------------------------------

@pytest.mark.slurm
def test_a_sweep_larger_than_max_array_size_is_split_into_arrays(stash, max_array_size):
    size = max_array_size
    seeds = size + 1  # experiment=a,crash: 2 * (size + 1) jobs, the last size + 1 fail
    out = stash.run("-m", *SLURM, "tool=fx", "experiment=a,crash", f"seed=range({seeds})", timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    data = sweep_json(stash)
    jobs, arrays = data["jobs"], data["backend_state"]["arrays"]
    assert len(arrays) == math.ceil(len(jobs) / size) and len(set(arrays)) == len(arrays)
    assert [j["slurm_job_id"] for j in jobs] == expected_task_ids(arrays, len(jobs), size)
    assert [j["status"] for j in jobs] == ["succeeded"] * seeds + ["failed"] * seeds
    records = [json.loads((stash.root / j["run_dir"] / "run.json").read_text()) for j in jobs]
    assert [r["slurm_job_id"] for r in records] == [j["slurm_job_id"] for j in jobs]
    assert {r["node"] for r in records} == {socket.gethostname()}
    counts = f"{len(jobs)} jobs: {seeds} succeeded, {seeds} failed"
    assert counts in out.stdout
    status = stash.run("status", str(sweep_dir(stash)))
    assert status.returncode == 0 and counts in status.stdout and "no record" not in status.stdout

    # the failed jobs, more than one array holds, again: new arrays, recorded beside the first ones
    stash.write("configs/fx/experiment/crash.yaml", experiment())
    out = stash.run("rerun", str(sweep_dir(stash)), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    data = sweep_json(stash)
    again = data["backend_state"]["arrays"][len(arrays):]
    assert data["backend_state"]["arrays"][:len(arrays)] == arrays
    assert len(again) == math.ceil(seeds / size) and not set(again) & set(arrays)
    assert [j["slurm_job_id"] for j in data["jobs"][seeds:]] == expected_task_ids(again, seeds, size)
    assert [j["slurm_job_id"] for j in data["jobs"][:seeds]] == [j["slurm_job_id"] for j in jobs[:seeds]]
    assert f"{len(jobs)} jobs: {len(jobs)} succeeded" in out.stdout
    status = stash.run("status", str(sweep_dir(stash)))
    assert status.returncode == 0 and f"{len(jobs)} jobs: {len(jobs)} succeeded" in status.stdout


@pytest.mark.slurm
def test_submit_and_go_across_arrays_then_status_until_done(stash, max_array_size):
    jobs = max_array_size + 1
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "tool=fx", "experiment=a", f"seed=range({jobs})",
                    "sleep=8")
    assert out.returncode == 0, out.stdout + out.stderr
    data = sweep_json(stash)
    arrays = data["backend_state"]["arrays"]
    assert len(arrays) == 2 and f"Submitted {jobs} jobs as Slurm 2 arrays" in out.stderr
    assert [j["slurm_job_id"] for j in data["jobs"]] == expected_task_ids(arrays, jobs, max_array_size)
    assert f"experimentstash status multirun/{data['id']}" in out.stderr
    assert f"squeue --name=stash-{data['id']}" in out.stderr
    # never two attempts of one job: no rerun while Slurm still has its tasks
    out = stash.run("rerun", str(sweep_dir(stash)))
    assert out.returncode == 2 and "still pending or running on Slurm" in out.stderr, out.stdout + out.stderr
    assert sweep_json(stash)["backend_state"]["arrays"] == arrays
    assert not list(sweep_dir(stash).glob("*.attempt1"))
    wait_for_status(stash, sweep_dir(stash), f"{jobs} jobs: {jobs} succeeded")


@pytest.mark.slurm
def test_the_follow_hint_speaks_of_the_arrays_this_launch_submitted(stash, max_array_size):
    crash = ",".join(["false"] * max_array_size + ["true"])  # two arrays; the last job, alone in the second, fails
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "tool=fx", "experiment=a", f"crash={crash}")
    assert out.returncode == 0, out.stdout + out.stderr
    first = sweep_json(stash)["backend_state"]["arrays"]
    assert f"Submitted {max_array_size + 1} jobs as Slurm 2 arrays ({first[0]}, {first[1]})." in out.stderr
    wait_for_status(stash, sweep_dir(stash), f"{max_array_size + 1} jobs: {max_array_size} succeeded, 1 failed")
    rerun = stash.run("rerun", str(sweep_dir(stash)))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    arrays = sweep_json(stash)["backend_state"]["arrays"]
    assert arrays[:2] == first and len(arrays) == 3  # the record keeps every array
    assert f"Submitted 1 job as Slurm array {arrays[2]}. Follow them with:" in rerun.stderr
    wait_for_status(stash, sweep_dir(stash), f"{max_array_size} succeeded, 1 failed")


@pytest.mark.slurm
def test_ctrl_c_cancels_every_array_running_and_pending(stash, max_array_size):
    jobs = max_array_size + 1  # two arrays, each running one task at a time: the others are pending
    proc = stash.popen("-m", *SLURM, "hydra.launcher.array_parallelism=1", "tool=fx", "experiment=slow",
                       f"seed=range({jobs})")
    saw = wait_for_files(stash.root / "multirun", "seen.json", 2)
    assert len(saw) == 2
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130
    data = sweep_json(stash)
    assert len(data["backend_state"]["arrays"]) == 2
    # the first task of each array ran and is interrupted; the pending ones never started: cancelled, no run dir
    started = [0, max_array_size]
    assert [j["status"] for j in data["jobs"]] == [
        "interrupted" if j["num"] in started else "cancelled" for j in data["jobs"]]
    assert [(stash.root / j["run_dir"]).exists() for j in data["jobs"]] == [
        j["num"] in started for j in data["jobs"]]
    assert squeue(f"stash-{data['id']}") == ""  # nothing of either array is left
    for seen in saw:
        assert not pid_alive(json.loads(seen.read_text())["pid"])
    counts = f"{jobs} jobs: {jobs - 2} cancelled, 2 interrupted"
    assert counts in stdout
    status = stash.run("status", str(sweep_dir(stash)))
    assert status.returncode == 0 and counts in status.stdout


# --- what Slurm does to tasks -----------------------------------------------------------------------------------

@pytest.mark.slurm
def test_scancel_of_running_and_pending_tasks_ends_the_wait(stash):
    proc = stash.popen("-m", *SLURM, "hydra.launcher.array_parallelism=1", "tool=fx", "experiment=slow",
                       "seed=range(2)")
    assert len(wait_for_files(stash.root / "multirun", "seen.json", 1)) == 1  # the second task is pending
    (array,) = sweep_json(stash)["backend_state"]["arrays"]
    subprocess.run(["scancel", array], check=True)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stdout + stderr
    jobs = sweep_json(stash)["jobs"]
    assert [j["status"] for j in jobs] == ["cancelled", "cancelled"]
    record = json.loads((stash.root / jobs[0]["run_dir"] / "run.json").read_text())
    assert record["slurm_state"] == "CANCELLED" and agreed(record, jobs[0])
    assert "2 jobs: 2 cancelled" in stdout
    status = stash.run("status", str(sweep_dir(stash)))
    assert status.returncode == 0 and "2 jobs: 2 cancelled" in status.stdout and "no record" not in status.stdout


@pytest.mark.slurm
def test_scancel_of_a_task_not_waited_for_is_cancelled_in_every_record(stash):
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "tool=fx", "experiment=slow,a")
    assert out.returncode == 0, out.stdout + out.stderr
    first = sweep_json(stash)["jobs"][0]
    wait_for_files(stash.root / first["run_dir"], "seen.json", 1, timeout=60)
    subprocess.run(["scancel", first["slurm_job_id"]], check=True)  # while it runs
    wait_for_status(stash, sweep_dir(stash), "2 jobs: 1 cancelled, 1 succeeded")
    jobs = sweep_json(stash)["jobs"]
    records = [json.loads((stash.root / j["run_dir"] / "run.json").read_text()) for j in jobs]
    assert [r["status"] for r in records] == ["cancelled", "succeeded"]
    assert records[0]["slurm_state"] == "CANCELLED"
    assert all(agreed(record, job) for record, job in zip(records, jobs))
    out = stash.run("runs", "--status", "cancelled", "--json")
    assert out.returncode == 0 and [r["id"] for r in json.loads(out.stdout)] == [records[0]["id"]]


@pytest.mark.slurm
def test_preempted_task_is_requeued_and_says_so(stash):
    folder, job = submit_one_and_wait_until_running(stash, "hydra.launcher.timeout_min=30", "experiment=a", "sleep=8")
    # what Slurm sends before a preemption: submitit's signal (USR2 in submitit >= 1.5). The task requeues itself;
    # the test Slurm lets a requeued job start again after 11 s (AuthInfo=cred_expire=10 in .ci/slurm-up)
    subprocess.run(["scancel", f"--signal={submitit.JobEnvironment.USR_SIG}", job["slurm_job_id"]], check=True)
    wait_for_status(stash, folder, "1 jobs: 1 succeeded", timeout=120)
    record = json.loads((stash.root / job["run_dir"] / "run.json").read_text())
    assert record["requeued"] == 1 and record["previous_attempts"] == [Path(job["run_dir"]).name + ".preempted1"]
    earlier = json.loads((stash.root / (job["run_dir"] + ".preempted1") / "run.json").read_text())
    assert earlier["status"] == "preempted"


@pytest.mark.slurm
def test_reused_jobs_are_not_submitted(stash):
    first = stash.run("-m", *SLURM, "tool=fx", "experiment=a,b", "stash.reuse=true", timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    out = stash.run("-m", *SLURM, "tool=fx", "experiment=a,b,c", "stash.reuse=true", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    folders = sorted((stash.root / "multirun").iterdir())
    second = json.loads((folders[1] / "sweep.json").read_text())
    assert [j["status"] for j in second["jobs"]] == ["reused", "reused", "succeeded"]
    assert [j["slurm_job_id"] is None for j in second["jobs"]] == [True, True, False]
    again = stash.run("-m", *SLURM, "tool=fx", "experiment=a,b,c", "stash.reuse=true", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    third = json.loads((sorted((stash.root / "multirun").iterdir())[2] / "sweep.json").read_text())
    assert {j["status"] for j in third["jobs"]} == {"reused"}
    assert not third["backend_state"].get("arrays")  # nothing submitted at all
    assert not (sorted((stash.root / "multirun").iterdir())[2] / ".submitit").exists()


@pytest.mark.slurm
def test_without_accounting_the_sweep_is_followed_through_squeue(stash, tmp_path):
    conf = re.sub(r"(?m)^AccountingStorageType=.*$", "AccountingStorageType=accounting_storage/none",
                  Path("/etc/slurm/slurm.conf").read_text())
    (tmp_path / "slurm.conf").write_text(conf)
    env = {"SLURM_CONF": str(tmp_path / "slurm.conf")}
    assert subprocess.run(["sacct", "-n", "-X"], env={**os.environ, **env}, capture_output=True).returncode != 0
    out = stash.run("-m", *SLURM, "tool=fx", "experiment=a,crash", env=env, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert [j["status"] for j in sweep_json(stash)["jobs"]] == ["succeeded", "failed"]
    assert "2 jobs: 1 succeeded, 1 failed" in out.stdout


# --- nothing is submitted when Slurm cannot take the sweep --------------------------------------------------------

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


@pytest.mark.slurm
def test_controller_down_means_nothing_is_submitted(stash, tmp_path):
    conf = Path("/etc/slurm/slurm.conf").read_text()
    dead = tmp_path / "slurm.conf"
    dead.write_text(conf + "\nSlurmctldPort=1\n")
    out = stash.run("-m", *SLURM, "tool=fx", "experiment=a", env={"SLURM_CONF": str(dead)}, timeout=120)
    assert out.returncode == 2 and "not reachable" in out.stderr
    assert not (stash.root / "multirun").exists()


@pytest.mark.slurm
def test_options_slurm_refuses_mean_nothing_is_submitted(stash):
    out = stash.run("-m", *SLURM, "hydra.launcher.partition=nowhere", "tool=fx", "experiment=a,b")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Slurm refuses these hydra.launcher options" in out.stderr and "Invalid partition" in out.stderr
    assert not (stash.root / "multirun").exists()


# --- last: the TIMEOUT sweep started by the first Slurm test ------------------------------------------------------

@pytest.mark.slurm
def test_slurm_time_limit_is_reported_as_timeout(timeout_sweep):
    stash, proc = timeout_sweep
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout + stderr
    jobs = sweep_json(stash)["jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "timeout"]
    assert jobs[1]["slurm_state"] == "TIMEOUT"
    assert json.loads((stash.root / jobs[1]["run_dir"] / "run.json").read_text())["status"] == "timeout"
    assert "job 1 timeout" in stdout and "2 jobs: 1 succeeded, 1 timeout" in stdout


PIPELINE = """\
stages:
  train: {tool: fx, experiment: a}
  evaluate: {tool: fx, experiment: b, needs: [train], overrides: ['+checkpoint=${stages.train.run_dir}']}
  table: {tool: fx, experiment: c, needs: [evaluate], gather: true, overrides: ['+runs=${stages.evaluate.run_dirs}']}
"""


@pytest.mark.slurm
def test_a_pipeline_is_submitted_at_once_as_stage_arrays_that_depend_on_each_other(stash, max_array_size):
    stash.write("configs/pipelines/three.yaml", PIPELINE)
    stash.commit("a pipeline")
    chains = max_array_size + 1  # each chain stage takes two arrays
    out = stash.run("-m", *SLURM, "hydra.launcher.wait=false", "pipeline=three", f"seed=range({chains})")
    assert out.returncode == 0, out.stdout + out.stderr  # submitted, not waited for
    folder = sweep_dir(stash)
    arrays = sweep_json(stash)["backend_state"]["arrays"]
    assert len(arrays) == 2 * math.ceil(chains / max_array_size) + 1  # ceil(jobs / MaxArraySize) per stage
    said = wait_for_status(stash, folder, f"{2 * chains + 1} jobs: {2 * chains + 1} succeeded", timeout=600)
    jobs = sweep_json(stash)["jobs"]
    assert "chain" in said and "stage" in said
    seen = [json.loads((stash.root / j["run_dir"] / "seen.json").read_text()) for j in jobs]
    for train in range(0, 2 * chains, 2):  # each evaluate after its own chain's train, reading its run dir
        assert seen[train + 1]["cfg"]["checkpoint"] == str(stash.root / jobs[train]["run_dir"])
        assert seen[train + 1]["started"] > seen[train]["ended"]
    assert seen[-1]["cfg"]["runs"] == [str(stash.root / jobs[n]["run_dir"]) for n in range(1, 2 * chains, 2)]
    assert seen[-1]["started"] > max(s["ended"] for s in seen[1:-1:2])  # the gather after every evaluate

"""On a real Slurm: a job of several tasks is one allocation whose ranks find each other (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), with one record holding every rank; a failing rank fails the job, and scancel leaves no
rank running."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

from conftest import META, pid_alive
from test_slurm import SLURM, sweep_json, wait_for_files, wait_for_status

TWO_TASKS = ["hydra.launcher.nodes=1", "hydra.launcher.tasks_per_node=2", "stash.distributed=srun"]

# a tool whose ranks meet over TCP, as torch.distributed's would: rank 0 listens on MASTER_PORT, the others connect
RANKS_TOOL = '''
import json, os, socket, sys, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    seen = {k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    seen["pid"] = os.getpid()
    if rank == 0:
        server = socket.create_server(("", int(os.environ["MASTER_PORT"])))
        server.settimeout(60)
        seen["heard"] = []
        for _ in range(world - 1):
            conn, _ = server.accept()
            seen["heard"].append(conn.recv(100).decode())
    else:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = socket.create_connection((os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        conn.sendall(f"rank {rank} of {world}".encode())
    (out / f"seen{rank}.json").write_text(json.dumps(seen))
    print(f"rank {rank} met the others", flush=True)
    if cfg.fail_rank == rank:
        print(f"rank {rank} fails on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(cfg.hold)


if __name__ == "__main__":
    main()
'''


# torch is not installed here: a stand-in with torchrun's command line (python -m torch.distributed.run), found first
# on the path of the tool's folder, that starts --nproc-per-node copies of the script with the variables torchrun
# gives its workers (one node: node rank 0)
TORCHRUN_STAND_IN = '''
import argparse, os, subprocess, sys

parser = argparse.ArgumentParser()
for flag in ("--nnodes", "--nproc-per-node", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id"):
    parser.add_argument(flag, required=True)
parser.add_argument("script")
parser.add_argument("args", nargs=argparse.REMAINDER)
given = parser.parse_args()
assert given.rdzv_backend == "c10d" and given.nnodes == "1"
host, port = given.rdzv_endpoint.rsplit(":", 1)
count = int(given.nproc_per_node)
workers = [subprocess.Popen([sys.executable, given.script, *given.args], env={
    **os.environ, "RANK": str(k), "LOCAL_RANK": str(k), "WORLD_SIZE": str(count), "MASTER_ADDR": host,
    "MASTER_PORT": port, "TORCHELASTIC_RUN_ID": given.rdzv_id}) for k in range(count)]
sys.exit(max(worker.wait() for worker in workers))
'''


@pytest.fixture
def ranks_stash(stash):
    stash.write("tools/ranks/tool.py", RANKS_TOOL)
    stash.write("configs/meta.yaml", META + "  ranks:\n    path: tools/ranks\n    entrypoint: tool.py\n"
                                            "    env: current\n")
    stash.write("configs/ranks/experiment/meet.yaml", "# @package _global_\nfail_rank: -1\nhold: 0\n")
    stash.commit("a tool of two ranks")
    return stash


@pytest.mark.slurm
def test_two_ranks_of_one_job_meet_and_its_record_holds_each_rank(ranks_stash):
    out = ranks_stash.run("-m", *SLURM, *TWO_TASKS, "tool=ranks", "experiment=meet", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = sweep_json(ranks_stash)["jobs"]
    run_dir = ranks_stash.root / job["run_dir"]
    seen = [json.loads((run_dir / f"seen{k}.json").read_text()) for k in (0, 1)]
    assert [(s["RANK"], s["LOCAL_RANK"], s["WORLD_SIZE"]) for s in seen] == [("0", "0", "2"), ("1", "1", "2")]
    assert seen[0]["heard"] == ["rank 1 of 2"]
    assert seen[0]["MASTER_PORT"] == seen[1]["MASTER_PORT"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert [(r["rank"], r["exit_code"], r["stdout"], r["stderr"]) for r in record["ranks"]] == [
        (0, 0, "rank0.stdout.log", "rank0.stderr.log"), (1, 0, "rank1.stdout.log", "rank1.stderr.log")]
    assert {r["node"] for r in record["ranks"]} == {record["node"]}
    assert (run_dir / "rank1.stdout.log").read_text() == "rank 1 met the others\n"


@pytest.mark.slurm
def test_a_failing_rank_fails_the_job_ends_the_others_and_the_table_names_it(ranks_stash):
    out = ranks_stash.run("-m", *SLURM, *TWO_TASKS, "tool=ranks", "experiment=meet", "fail_rank=1", "hold=60",
                          timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    (job,) = sweep_json(ranks_stash)["jobs"]
    assert job["status"] == "failed"
    assert "rank 1 on " in out.stdout and "exited with code 3" in out.stdout
    assert "rank 1 fails on purpose" in out.stdout
    record = json.loads((ranks_stash.root / job["run_dir"] / "run.json").read_text())
    by_rank = {r["rank"]: r["exit_code"] for r in record["ranks"]}
    assert by_rank[1] == 3 and by_rank[0] != 0  # rank 0 did not hold on for its minute


@pytest.mark.slurm
def test_torchrun_starts_the_ranks_of_each_node_after_the_tools_interpreter(ranks_stash):
    for rel in ("torch/__init__.py", "torch/distributed/__init__.py"):
        ranks_stash.write(f"tools/ranks/{rel}", "")
    ranks_stash.write("tools/ranks/torch/distributed/run.py", TORCHRUN_STAND_IN)
    ranks_stash.commit("torchrun's stand-in")
    words = ["hydra.launcher.nodes=1", "hydra.launcher.tasks_per_node=2", "stash.distributed=torchrun"]
    out = ranks_stash.run("-m", *SLURM, *words, "tool=ranks", "experiment=meet", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = sweep_json(ranks_stash)["jobs"]
    run_dir = ranks_stash.root / job["run_dir"]
    seen = [json.loads((run_dir / f"seen{k}.json").read_text()) for k in (0, 1)]
    assert seen[0]["heard"] == ["rank 1 of 2"]
    record = json.loads((run_dir / "run.json").read_text())
    tool_command = record["command"][record["command"].index("--") + 1:]
    assert tool_command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert [(r["rank"], r["exit_code"]) for r in record["ranks"]] == [(0, 0)]  # one torchrun on the one node


@pytest.mark.slurm
def test_scancel_of_a_two_rank_job_leaves_no_rank_running(ranks_stash):
    out = ranks_stash.run("-m", *SLURM, *TWO_TASKS, "hydra.launcher.wait=false", "tool=ranks", "experiment=meet",
                          "hold=120")
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = sweep_json(ranks_stash)["jobs"]
    run_dir = ranks_stash.root / job["run_dir"]
    deadline = time.monotonic() + 120
    while not all((run_dir / f"seen{k}.json").is_file() for k in (0, 1)) and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = [json.loads((run_dir / f"seen{k}.json").read_text())["pid"] for k in (0, 1)]
    assert all(pid_alive(pid) for pid in pids)
    subprocess.run(["scancel", f"--name=stash-{sweep_json(ranks_stash)['id']}", f"--user={os.getuid()}"], check=True)
    deadline = time.monotonic() + 120
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(pid_alive(pid) for pid in pids)
    status = ranks_stash.run("status", str(Path(run_dir).parent))
    assert status.returncode == 0 and "cancelled" in status.stdout, status.stdout + status.stderr


@pytest.mark.slurm
def test_a_preempted_two_rank_job_ends_its_ranks_and_is_requeued(ranks_stash):
    out = ranks_stash.run("-m", *SLURM, *TWO_TASKS, "hydra.launcher.wait=false", "hydra.launcher.timeout_min=30",
                          "tool=ranks", "experiment=meet", "hold=8")
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = sweep_json(ranks_stash)["jobs"]
    run_dir = ranks_stash.root / job["run_dir"]
    pids = [json.loads(path.read_text())["pid"] for path in wait_for_files(run_dir, "seen?.json", 2)]
    # what Slurm sends a multi-task job before a preemption: submitit's signal, to its batch process (B:)
    subprocess.run(["scancel", "--batch", f"--signal={submitit.JobEnvironment.USR_SIG}", job["slurm_job_id"]],
                   check=True)
    wait_for_status(ranks_stash, run_dir.parent, "1 jobs: 1 succeeded", timeout=180)
    assert not any(pid_alive(pid) for pid in pids)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["requeued"] == 1 and [r["exit_code"] for r in record["ranks"]] == [0, 0]
    earlier = json.loads((run_dir.with_name(run_dir.name + ".preempted1") / "run.json").read_text())
    assert earlier["status"] == "preempted"


def test_stash_distributed_without_slurm_is_one_message_and_nothing_starts(stash):
    out = stash.run("-m", "tool=fx", "experiment=a,b", "stash.distributed=srun")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert ("stash.distributed=srun: the local backend runs each job as one process; run it on Slurm "
            "(hydra/launcher=stash_slurm).") in out.stderr
    assert not (stash.root / "multirun").exists()


@pytest.mark.parametrize("word, said", [
    ("hydra.launcher.tasks_per_node=0", "hydra.launcher.tasks_per_node=0: give at least 1."),
    ("stash.distributed=mpi", "stash.distributed=mpi: give one of srun, torchrun."),
])
def test_bad_rank_options_are_one_message(stash, word, said):
    out = stash.run("-m", *SLURM, "tool=fx", "experiment=a", word)
    assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr, out.stderr

"""What each run used: real processes that hold and burn known amounts, measured by the resources sampler.

The sampler's own tests start a driver process that does what the launcher does for its runs: every tool started in
a session of its own, `watch` just after, `os.wait4` for its end, `finish` with the rusage, then the run's leftovers
ended. GPU figures come from a fake `pynvml` module on the driver's PYTHONPATH: the same code path a real GPU takes.
The tests after them run a Hydra tool through the launcher, in a single run, a parallel sweep and on Slurm, and read
the figures in run.json."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Stash, experiment, new_stash
from experimentstash.testing import wait_for

MIB = 1 << 20
GIB = 1 << 30

DRIVER = '''
import json, os, signal, subprocess, sys, threading
if os.environ.get("NO_PYNVML"):
    sys.modules["pynvml"] = None  # as if nvidia-ml-py were not installed
from experimentstash.launch import resources

runs = json.loads(sys.argv[1])
figures = {}

def run(key, argv, env):
    env = {**os.environ, **env}
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    resources.watch(key, proc.pid, env.get("CUDA_VISIBLE_DEVICES"))
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    figures[key] = resources.finish(key, rusage)
    figures[key]["exit_code"] = proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what the run left behind
    except ProcessLookupError:
        pass

threads = [threading.Thread(target=run, args=(key, *spec)) for key, spec in runs.items()]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(figures))
'''

# a tool: starts one worker per mode, waits for its direct children, waits until every worker is ready
# (allocated and burnt), sleeps `after` seconds, and writes the CPU time of itself and the children it waited for
# (as `time` would say it) to <ready>.cpu
TOOL = '''
import os, subprocess, sys, time
modes, (mib, burn, hold, ready), after = sys.argv[1].split(","), sys.argv[2:6], float(sys.argv[6])
gpu = sys.argv[7] if len(sys.argv) > 7 else ""
worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
if gpu:  # this process holds GPU memory too
    device, used = gpu.split(":")
    with open(os.path.join(os.environ["FAKE_NVML_DIR"], device, str(os.getpid())), "w") as f:
        f.write(used)
children = [subprocess.Popen([sys.executable, "-I", "-S", worker, mode, mib, burn, hold, ready, str(len(modes)), gpu])
            for mode in modes]
for child in children:
    child.wait()
deadline = time.monotonic() + 60
while len(os.listdir(ready)) < len(modes) and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(after)
with open(ready + ".cpu", "w") as f:
    f.write(str(sum(os.times()[:4])))
'''

# a worker: `wait` (a child its parent waits for), `setsid` (leaves the tool's session), `orphan` (forks and
# lets its parent end, so that nobody in the run waits for it) or `daemon` (an orphan that leaves the session
# once it has burnt its CPU time); holds `mib` MiB, burns `burn` s of CPU, says it is ready, waits for the others,
# holds on for `hold` seconds
WORKER = '''
import os, sys, time
mode, mib, burn, hold, ready, n, gpu = sys.argv[1:]
mib, burn, hold, n = int(mib), float(burn), float(hold), int(n)
if mode == "setsid":
    os.setsid()
if mode in ("orphan", "daemon") and os.fork():
    os._exit(0)
block = bytearray(mib * 1024 * 1024)
block[::4096] = b"\\x01" * len(range(0, len(block), 4096))  # touch every page: resident, not only reserved
if gpu:
    device, used = gpu.split(":")
    with open(os.path.join(os.environ["FAKE_NVML_DIR"], device, str(os.getpid())), "w") as f:
        f.write(used)
start = time.process_time()
while time.process_time() - start < burn:
    pass
if mode == "daemon":
    os.setsid()
cpu = sum(os.times()[:2])
with open(os.path.join(ready, f"{os.getpid()}.tmp"), "w") as f:
    f.write(str(cpu))
os.rename(os.path.join(ready, f"{os.getpid()}.tmp"), os.path.join(ready, str(os.getpid())))
deadline = time.monotonic() + 60
while len([name for name in os.listdir(ready) if name.isdigit()]) < n and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(hold)
'''

# NVML as the tests need it: two devices, each process that "holds GPU memory" has a file
# $FAKE_NVML_DIR/<device index>/<pid> with its bytes ("n/a": NVML cannot say, as under Windows' WDDM)
FAKE_PYNVML = '''
import os
from types import SimpleNamespace

DEVICES = [("GPU-0a0a0a0a-1111-2222-3333-444444444444", "Fake GPU 40GB", 40 << 30, 30),
           ("GPU-1b1b1b1b-5555-6666-7777-888888888888", "Fake GPU 80GB", 80 << 30, 70)]


class NVMLError(Exception):
    pass


def nvmlInit():
    if os.environ.get("FAKE_NVML_FAIL"):
        raise NVMLError("Driver Not Loaded")


def nvmlDeviceGetCount():
    return len(DEVICES)


def nvmlDeviceGetHandleByIndex(index):
    if not 0 <= index < len(DEVICES):
        raise NVMLError("Invalid Argument")
    return index


def nvmlDeviceGetUUID(handle):
    return DEVICES[handle][0]


def nvmlDeviceGetName(handle):
    return DEVICES[handle][1].encode()  # older nvidia-ml-py versions return bytes


def nvmlDeviceGetMemoryInfo(handle):
    return SimpleNamespace(total=DEVICES[handle][2], free=DEVICES[handle][2], used=0)


def nvmlDeviceGetUtilizationRates(handle):
    return SimpleNamespace(gpu=DEVICES[handle][3], memory=0)


def nvmlDeviceGetComputeRunningProcesses(handle):
    folder = os.path.join(os.environ["FAKE_NVML_DIR"], str(handle))
    processes = []
    for name in os.listdir(folder):
        if os.path.exists(f"/proc/{name}"):
            with open(os.path.join(folder, name)) as f:
                used = f.read()
            processes.append(SimpleNamespace(pid=int(name), usedGpuMemory=None if used == "n/a" else int(used)))
    return processes
'''

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process tree is read from /proc")


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "tool.py").write_text(TOOL)
    (folder / "worker.py").write_text(WORKER)
    (folder / "driver.py").write_text(DRIVER)
    return folder


def tool(tools: Path, name: str, modes: str, mib: int = 0, burn: float = 0, hold: float = 0, after: float = 0,
         gpu: str = "") -> tuple[list[str], Path]:
    """The argv of one run of the tool and the folder where its workers say they are ready."""
    ready = tools / f"ready-{name}"
    ready.mkdir()
    argv = [sys.executable, "-I", "-S", str(tools / "tool.py"), modes, str(mib), str(burn), str(hold), str(ready),
            str(after)]
    return argv + ([gpu] if gpu else []), ready


def measure(tools: Path, runs: dict[str, tuple[list[str], dict]], env: dict | None = None) -> dict[str, dict]:
    """Run the tools at once under one sampler; each run's `resources` record. `env` adds variables to the
    driver's environment (None: takes one out)."""
    env = {key: value for key, value in {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}.items()
           if value is not None}
    out = subprocess.run([sys.executable, str(tools / "driver.py"), json.dumps(runs)], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    for key, record in figures.items():
        assert record.pop("exit_code") == 0, f"{key} failed"
    return figures


def cpu(record: dict) -> float:
    return record["cpu_user_s"] + record["cpu_system_s"]


def worker_cpu(ready: Path) -> float:
    """The CPU time the workers said they had used when they were ready."""
    return sum(float(path.read_text()) for path in ready.iterdir())


def tool_cpu(ready: Path) -> float:
    """The CPU time of the tool and the children it waited for, as the tool said it just before it ended."""
    return float(Path(f"{ready}.cpu").read_text())


def test_peak_memory_is_the_whole_tree(tools):
    """4 workers of 125 MiB each (two of them in sessions of their own): 500 MiB more than the same tree holding
    nothing (5 interpreters of their own, ~45 MiB), where the largest single process holds 125 MiB."""
    argv, _ = tool(tools, "mem", "wait,wait,setsid,setsid", mib=125, hold=3)
    idle, _ = tool(tools, "idle", "wait,wait,setsid,setsid", mib=0, hold=3)
    figures = measure(tools, {"mem": (argv, {}), "idle": (idle, {})})
    record = figures["mem"]
    assert 450 * MIB <= record["peak_rss_bytes"] - figures["idle"]["peak_rss_bytes"] <= 550 * MIB
    assert 125 * MIB <= record["max_process_rss_bytes"] <= 150 * MIB
    assert record["max_processes"] == figures["idle"]["max_processes"] == 5
    assert record["samples"] >= 2


def test_cpu_burnt_in_a_child_counts(tools):
    argv, ready = tool(tools, "burn", "wait", burn=2)
    record = measure(tools, {"burn": (argv, {})})["burn"]
    assert 1.8 <= cpu(record) <= 2.2
    assert cpu(record) >= worker_cpu(ready)


def test_short_run_gets_its_cpu_from_rusage(tools):
    """Over before the first samples could tell: the CPU time is still exact (the tool and its child, as `time`
    would say), the memory is at least the largest process's."""
    argv, ready = tool(tools, "short", "wait", mib=20, burn=0.2)
    record = measure(tools, {"short": (argv, {})})["short"]
    assert worker_cpu(ready) >= 0.2
    assert tool_cpu(ready) <= cpu(record) <= tool_cpu(ready) + 0.05
    assert record["peak_rss_bytes"] >= record["max_process_rss_bytes"] >= 20 * MIB


def test_cpu_of_a_process_still_running_when_the_tool_ends(tools):
    """An orphan the tool never waits for burns 2 s; the tool ends while it still runs: its CPU time counts."""
    argv, _ = tool(tools, "left", "orphan", burn=2, hold=60)
    record = measure(tools, {"left": (argv, {})})["left"]
    assert 1.8 <= cpu(record) <= 2.2


def test_cpu_of_a_daemon_that_ended_before_the_tool(tools):
    """An orphan burns 2 s, leaves the tool's session and ends (reaped by init, never by the tool) before the tool
    ends: it still counts, as the run's process it was seen to be."""
    argv, _ = tool(tools, "daemon", "daemon", burn=2, hold=2, after=5)
    record = measure(tools, {"orphan": (argv, {})})["orphan"]
    assert 1.8 <= cpu(record) <= 2.2


def test_runs_sampled_together_keep_their_own_figures(tools):
    """One sampler, two runs at once: one holds memory, the other burns CPU in three processes."""
    holds, _ = tool(tools, "holds", "wait", mib=300, hold=3)
    burns, ready = tool(tools, "burns", "wait,wait,setsid", burn=0.7, hold=3)
    figures = measure(tools, {"holds": (holds, {}), "burns": (burns, {})})
    assert 270 * MIB <= figures["holds"]["peak_rss_bytes"] <= 330 * MIB
    assert figures["burns"]["peak_rss_bytes"] < 60 * MIB
    assert figures["holds"]["max_processes"] == 2
    assert figures["burns"]["max_processes"] == 4
    assert cpu(figures["holds"]) < 0.5
    assert worker_cpu(ready) >= 2.0
    assert tool_cpu(ready) <= cpu(figures["burns"]) <= tool_cpu(ready) + 0.05


@pytest.fixture
def nvml(tmp_path: Path) -> dict:
    """The fake pynvml on the driver's PYTHONPATH, its device folders, and a process outside every run holding
    5 GiB on each device."""
    folder = tmp_path / "fake-nvml"
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "pynvml.py").write_text(FAKE_PYNVML)
    for device in ("0", "1"):
        (folder / "gpus" / device).mkdir(parents=True)
        (folder / "gpus" / device / str(os.getpid())).write_text(str(5 * GIB))
    return {"PYTHONPATH": f"{REPO}{os.pathsep}{folder / 'lib'}", "FAKE_NVML_DIR": str(folder / "gpus")}


def test_gpu_memory_and_utilization_per_device(tools, nvml):
    """Runs given a device by index, by UUID prefix, or no CUDA_VISIBLE_DEVICES at all; two runs share device 1."""
    by_index, _ = tool(tools, "by-index", "wait", hold=3, gpu=f"1:{GIB}")  # the tool and its worker: 2 GiB
    by_uuid, _ = tool(tools, "by-uuid", "wait,wait", hold=3, gpu=f"1:{3 * GIB}")  # 9 GiB
    unset, _ = tool(tools, "unset", "wait", hold=3, gpu=f"0:{2 * GIB}")  # 4 GiB
    unknown, _ = tool(tools, "unknown", "wait", hold=3, gpu="0:n/a")
    no_gpu, _ = tool(tools, "no-gpu", "wait", hold=3)
    figures = measure(tools, {"by-index": (by_index, {"CUDA_VISIBLE_DEVICES": "1"}),
                              "by-uuid": (by_uuid, {"CUDA_VISIBLE_DEVICES": "GPU-1b1b1b1b,0"}),
                              "unset": (unset, {}),
                              "unknown": (unknown, {"CUDA_VISIBLE_DEVICES": "0"}),
                              "no-gpu": (no_gpu, {"CUDA_VISIBLE_DEVICES": ""})},
                      env={**nvml, "CUDA_VISIBLE_DEVICES": None})
    device0 = {"index": 0, "uuid": "GPU-0a0a0a0a-1111-2222-3333-444444444444", "name": "Fake GPU 40GB",
               "memory_total_bytes": 40 * GIB}
    device1 = {"index": 1, "uuid": "GPU-1b1b1b1b-5555-6666-7777-888888888888", "name": "Fake GPU 80GB",
               "memory_total_bytes": 80 * GIB}
    assert figures["by-index"]["gpus"] == [{**device1, "peak_memory_bytes": 2 * GIB, "mean_utilization_pct": 70.0}]
    # the ids in the order given, each as the run had it: the run used device 0 not at all
    assert figures["by-uuid"]["gpus"] == [{**device1, "peak_memory_bytes": 9 * GIB, "mean_utilization_pct": 70.0},
                                          {**device0, "peak_memory_bytes": 0, "mean_utilization_pct": 30.0}]
    # without CUDA_VISIBLE_DEVICES: the devices its processes used
    assert figures["unset"]["gpus"] == [{**device0, "peak_memory_bytes": 4 * GIB, "mean_utilization_pct": 30.0}]
    # NVML cannot say the run's memory: none is recorded
    assert figures["unknown"]["gpus"] == [{**device0, "mean_utilization_pct": 30.0}]
    assert "gpus" not in figures["no-gpu"]


@pytest.mark.parametrize("without", ["NO_PYNVML", "FAKE_NVML_FAIL"])
def test_no_gpu_figures_without_nvml(tools, nvml, without):
    """Without nvidia-ml-py, or when NVML does not start (no driver): no GPU figures, the others as always."""
    argv, _ = tool(tools, "run", "wait", hold=1.5, gpu=f"0:{GIB}")
    record = measure(tools, {"run": (argv, {"CUDA_VISIBLE_DEVICES": "0"})}, env={**nvml, without: "1"})["run"]
    assert "gpus" not in record
    assert record["max_processes"] == 2


# --- every run records what it used ---------------------------------------------------------------------------

# a Hydra tool that starts `workers` workers (WORKER in `mode`), each holding `mib` MiB and burning `burn` s of
# CPU, all holding on `hold` s once every one is ready; it waits until every one is ready, sleeps `after` s, writes the CPU time of itself and of the workers it
# waited for (as `time` would say it) to cpu.txt in its run dir, and ends at once
HOG = '''
import os, subprocess, sys, time
import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = HydraConfig.get().runtime.output_dir
    ready = os.path.join(out, "ready")
    os.mkdir(ready)
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
    args = [cfg.mode, str(cfg.mib), str(cfg.burn), str(cfg.hold), ready, str(cfg.workers), ""]
    for child in [subprocess.Popen([sys.executable, "-I", "-S", worker, *args]) for _ in range(cfg.workers)]:
        child.wait()
    deadline = time.monotonic() + 60
    while len([name for name in os.listdir(ready) if name.isdigit()]) < cfg.workers and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(cfg.after)
    with open(os.path.join(out, "cpu.txt"), "w") as f:
        f.write(str(sum(os.times()[:4])))
    os._exit(0)  # no interpreter teardown after the count


if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def hog(tmp_path_factory) -> Stash:
    """A stash with the tool `hog` in its own tree beside the fixture tool."""
    stash = new_stash(tmp_path_factory.mktemp("hog"))
    stash.write("tools/hog/hog.py", HOG)
    stash.write("tools/hog/worker.py", WORKER)
    stash.write("tools/hog/conf/config.yaml", "workers: 1\nmode: wait\nmib: 0\nburn: 0\nhold: 0\nafter: 0\n")
    stash.write("configs/hog/experiment/tree.yaml", experiment())
    stash.write("configs/hog/experiment/holds.yaml", experiment("workers: 4\nmib: 125\nhold: 3\n"))
    stash.write("configs/hog/experiment/burns.yaml", experiment("workers: 4\nburn: 0.5\nhold: 3\n"))
    meta = stash.root / "configs/meta.yaml"
    meta.write_text(meta.read_text() + "  hog:\n    path: tools/hog\n    entrypoint: hog.py\n    env: current\n")
    stash.commit("the hog tool")
    return stash


def recorded(stash: Stash, run_dir: Path) -> tuple[dict, float]:
    """A run's `resources`, and the CPU time its tool said it used with the workers it waited for."""
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded", (run_dir / "stderr.log").read_text()
    return record["resources"], float((run_dir / "cpu.txt").read_text())


def test_a_run_records_the_cpu_time_its_child_burnt(hog):
    out = hog.run("tool=hog", "experiment=tree", "burn=2", "hydra.run.dir=outputs/burn")
    assert out.returncode == 0, out.stderr
    used, told = recorded(hog, hog.root / "outputs/burn")
    assert told >= 2.0
    assert told <= cpu(used) <= told + 0.1  # the tool, its interpreter's start and its child: exactly, from wait4
    assert used["max_processes"] == 2 and used["samples"] >= 1


def test_a_short_run_gets_its_cpu_time_exactly(hog):
    out = hog.run("tool=hog", "experiment=tree", "burn=0.2", "mib=20", "hydra.run.dir=outputs/short")
    assert out.returncode == 0, out.stderr
    used, told = recorded(hog, hog.root / "outputs/short")
    assert told <= cpu(used) <= told + 0.1
    assert used["peak_rss_bytes"] >= used["max_process_rss_bytes"] >= 20 * MIB


def test_an_orphan_the_keeper_reaped_counts_exactly(hog):
    """A worker forks and ends at once; its orphan (re-parented to the launcher's keeper, never waited for by the
    tool) burns 2 s of CPU and ends while the tool still runs: its CPU time counts to the last tick."""
    out = hog.run("tool=hog", "experiment=tree", "mode=orphan", "burn=2", "after=2.5", "hydra.run.dir=outputs/orphan")
    assert out.returncode == 0, out.stderr
    used, told = recorded(hog, hog.root / "outputs/orphan")
    orphan = worker_cpu(hog.root / "outputs/orphan/ready")
    assert orphan >= 1.9  # os.times counts in ticks of 10 ms
    assert told + orphan <= cpu(used) <= told + orphan + 0.1


def test_parallel_jobs_of_a_sweep_keep_their_own_figures(hog):
    """Two jobs at once, a tool and four workers each: one holds 125 MiB per worker (500 MiB where its largest
    process holds 125 MiB), the other burns 0.5 s of CPU per worker."""
    out = hog.run("-m", "tool=hog", "experiment=holds,burns", timeout=240)
    assert out.returncode == 0, out.stderr
    (sweep,) = (hog.root / "multirun").iterdir()
    (holds_dir,) = sweep.glob("*_hog_holds")
    (burns_dir,) = sweep.glob("*_hog_burns")
    holds, holds_told = recorded(hog, holds_dir)
    burns, burns_told = recorded(hog, burns_dir)
    assert 450 * MIB <= holds["peak_rss_bytes"] - burns["peak_rss_bytes"] <= 550 * MIB
    assert 125 * MIB <= holds["max_process_rss_bytes"] <= 150 * MIB
    assert holds["max_processes"] == burns["max_processes"] == 5
    assert burns_told >= 2.0
    assert burns_told <= cpu(burns) <= burns_told + 0.1
    assert holds_told <= cpu(holds) <= holds_told + 0.1 < burns_told


@pytest.mark.slurm
def test_a_slurm_task_records_what_it_used_and_slurms_accounting(hog):
    """A task holding 4 x 125 MiB with 2 GB requested: the node's own measure, Slurm's figures once the task has
    ended (gathered by the waiting launcher, or by `status` where sacct lagged), and `status` setting the request against the use."""
    out = hog.run("-m", "hydra/launcher=stash_slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.mem_gb=2",
                  "tool=hog", "experiment=holds", "hydra.sweep.dir=multirun/on-slurm", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (run_dir,) = (hog.root / "multirun/on-slurm").glob("0_hog_holds")

    def accounted() -> str | None:
        """`status` once Slurm's figures are in run.json (sacct may lag behind the task's end for a while)."""
        status = hog.run("status", "multirun/on-slurm")
        assert status.returncode == 0, status.stderr
        used = json.loads((run_dir / "run.json").read_text())["resources"]
        return status.stdout if "max_rss_bytes" in used.get("slurm", {}) else None

    status = wait_for(accounted, timeout=60, what="Slurm's figures in run.json")
    used, told = recorded(hog, run_dir)
    assert 500 * MIB <= used["peak_rss_bytes"] <= 650 * MIB
    assert told <= cpu(used) <= told + 0.1
    slurm = used["slurm"]
    assert slurm["req_mem_bytes"] == 2 * GIB and slurm["timelimit_s"] == 300 and slurm["alloc_cpus"] >= 1
    assert slurm["elapsed_s"] >= 3 and slurm["total_cpu_s"] >= told
    assert slurm["max_rss_bytes"] >= 500 * MIB  # the step's processes together, as Slurm's gatherer sums them

    peak = f"{slurm['max_rss_bytes'] / MIB:.0f} MiB"
    assert f"memory: peak {peak} of 2.0 GiB requested: mem_gb=1 would do" in status
    assert re.search(r"time: longest [\d.]+ min of 5.0 min allowed: timeout_min=1 would do", status)


def test_sacct_lines_fold_into_each_tasks_figures():
    """sacct's lines as a cluster writes them (a per-CPU request of older Slurm, GPU memory tracked, a task still
    running, pending tasks shown together): each ended task's figures, its steps folded in."""
    from experimentstash.backends.slurm import accounting

    text = """7_0|COMPLETED|1-00:00:02.500|500Mc|4|2-00:00:00|1-01:00:00||
7_0.batch|COMPLETED|00:00.100||4||1-01:00:00|2048K|cpu=00:00:00,mem=2048K
7_0.0|COMPLETED|1-00:00:02.400||4||1-00:59:59|3.50G|cpu=1-00:00:02,gres/gpumem=12G,mem=3.50G
7_1|OUT_OF_MEMORY|00:10.000|8G|1|UNLIMITED|00:00:11||
7_1.0|OUT_OF_MEMORY|00:10.000||1||00:00:11|8G|mem=8G
7_2|RUNNING|00:00:00|8G|1|01:00:00|00:00:05||
7_[3-4%1]|PENDING|00:00:00|8G|1|01:00:00|00:00:00||"""
    states, figures = accounting([line.split("|") for line in text.splitlines()])
    assert states == {"7_0": "COMPLETED", "7_1": "OUT_OF_MEMORY", "7_2": "RUNNING", "7_3": "PENDING",
                      "7_4": "PENDING"}
    assert figures == {
        "7_0": {"total_cpu_s": 86402.5, "req_mem_bytes": 4 * 500 * MIB, "alloc_cpus": 4, "timelimit_s": 172800.0,
                "elapsed_s": 90000.0, "max_rss_bytes": int(3.5 * GIB), "max_gpu_memory_bytes": 12 * GIB},
        "7_1": {"total_cpu_s": 10.0, "req_mem_bytes": 8 * GIB, "alloc_cpus": 1, "elapsed_s": 11.0,
                "max_rss_bytes": 8 * GIB},
    }

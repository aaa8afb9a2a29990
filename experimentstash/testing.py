"""For the tests of experimentstash and of the backends other packages add: a real stash to run in, and BackendSuite,
the tests every backend passes.

    from experimentstash.testing import BackendSuite

    class TestMyBackend(BackendSuite):
        backend = "mine"                                   # its name, as sweep.json records it
        words = ["hydra/launcher=stash_mine"]              # the launcher words of its sweeps
        one_at_a_time = ["hydra.launcher.workers=1"]       # words that make it run one job at a time

A stash (new_stash) is a git repository with a fixture tool `fx` added by `git submodule add`: a small Hydra tool
that records what it saw and can crash, sleep, ignore SIGTERM, leave a child behind or write into its checkout.
Every command runs as a user types it (`python -m experimentstash ...`), with real git, Hydra and signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]  # the folder that holds this experimentstash package
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}

# a small Hydra tool: it records what it saw, and can crash, sleep, ignore SIGTERM or leave a child behind
FIXTURE_TOOL = '''
import json, os, signal, subprocess, sys, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    if os.environ.get("FX_MARKER"):  # every start of the tool leaves a line there
        with open(os.environ["FX_MARKER"], "a") as marker:
            marker.write(f"{out}\\n")
    if cfg.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seen = {
        "overrides": list(HydraConfig.get().overrides.task),
        "cfg": OmegaConf.to_container(cfg, resolve=True),
        "cwd": os.getcwd(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "search_packages": os.environ.get("HYDRA_SEARCH_PACKAGES"),
        "version": (HERE / "VERSION").read_text().strip(),
        "pid": os.getpid(),
        "started": time.time(),
    }
    if cfg.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        seen["child_pid"] = child.pid
    if cfg.daemon:  # a daemon that leaves the tool's process group and session, as `setsid` does
        daemon = subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(120)"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen["daemon_pid"] = daemon.pid
    (out / "seen.json").write_text(json.dumps(seen))
    if cfg.litter:  # a relative path: the working dir is the tool's folder
        Path("litter.txt").write_text("left in the checkout\\n")
    print("fixture tool running", flush=True)
    for i in range(cfg.print_lines):
        print(f"line {i} " + "x" * 100)
    if cfg.fill:  # write until the disk is full, then fail with a message of the tool's own
        try:
            with open(out / "filler.bin", "wb") as f:
                while True:
                    f.write(bytes(65536))
                    f.flush()
        except OSError as err:
            print(f"fixture tool: disk full ({err.strerror}), giving up", file=sys.stderr, flush=True)
            sys.exit(7)
    time.sleep(cfg.sleep)
    if cfg.crash:
        print("boom: the fixture tool was asked to crash", file=sys.stderr, flush=True)
        sys.exit(3)
    seen["ended"] = time.time()
    (out / "seen.json").write_text(json.dumps(seen))
    (out / "result.json").write_text(json.dumps({"score": float(cfg.value) * 2, "version": seen["version"]}))


if __name__ == "__main__":
    main()
'''

FIXTURE_CONFIG = """\
seed: 0
value: 1
crash: false
sleep: 0
ignore_term: false
spawn_child: false
daemon: false
print_lines: 0
fill: false
litter: false
"""

META = """\
# tools of the test stash
tools:
  fx:
    path: tools/fx
    entrypoint: tool.py
    description: fixture tool
    env: current
    result: result.json
"""


def experiment(body: str = "") -> str:
    return "# @package _global_\ndefaults:\n  - /config\n  - _self_\n" + textwrap.dedent(body)


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"git {' '.join(args)} failed: {out.stderr}"
    return out.stdout.strip()


@dataclass
class Stash:
    root: Path
    tool_repo: Path
    paths: tuple[str, ...] = ()  # more folders for the import path of every command (a backend's package)

    @property
    def tool(self) -> Path:
        return self.root / "tools" / "fx"

    def run(self, *args: str, timeout: float = 120, cwd: Path | None = None, env: dict | None = None):
        """`python -m experimentstash ARGS` in this stash, as a user would type it."""
        return subprocess.run(
            [sys.executable, "-m", "experimentstash", *args], cwd=cwd or self.root, capture_output=True,
            text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": self.pythonpath, **(env or {})},
        )

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "experimentstash", *args], cwd=self.root, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": self.pythonpath}, **kwargs,
        )

    @property
    def pythonpath(self) -> str:
        return os.pathsep.join([str(REPO), *self.paths])

    def runs(self, folder: str = "outputs") -> list[dict]:
        """Every run.json below outputs/ (or multirun/), oldest first."""
        records = [json.loads(p.read_text()) for p in (self.root / folder).rglob("run.json")]
        return sorted(records, key=lambda r: r["started_at"])

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def commit(self, message: str = "update") -> str:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message)
        return git(self.root, "rev-parse", "HEAD")


def make_tool_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    git(folder, "init", "-q", "-b", "main")
    (folder / "tool.py").write_text(FIXTURE_TOOL)
    (folder / "conf").mkdir()
    (folder / "conf" / "config.yaml").write_text(FIXTURE_CONFIG)
    (folder / "VERSION").write_text("v1\n")
    (folder / ".gitignore").write_text("__pycache__/\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "fixture tool v1")
    return folder


def new_stash(folder: Path, paths: tuple[str, ...] = ()) -> Stash:
    """A stash in `folder` with the fixture tool `fx` as a submodule and its experiments."""
    tool_repo = make_tool_repo(folder / "fx-repo")
    root = folder / "stash"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    s = Stash(root, tool_repo, tuple(paths))
    s.write("configs/meta.yaml", META)
    s.write(".gitignore", "outputs/\nmultirun/\n.cache/\nconfigs/meta.local.yaml\n")
    for name, body in {
        "a": "value: 1\n", "b": "value: 2\n", "c": "value: 3\n",
        "fig1/x": "value: 10\n", "fig1/y": "value: 11\n",
        "crash": "crash: true\n", "slow": "sleep: 30\n",
    }.items():
        s.write(f"configs/fx/experiment/{name}.yaml", experiment(body))
    git(root, "submodule", "add", "-q", str(tool_repo), "tools/fx")
    s.commit("stash with the fixture tool")
    return s


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, timeout: float = 120, what: str = "condition"):
    """Poll `condition()` until it returns something true, at most `timeout` seconds; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:.0f}s")


def sweep_dir(stash: Stash) -> Path:
    (folder,) = [p for p in (stash.root / "multirun").iterdir() if p.is_dir()]
    return folder


def sweep_json(stash: Stash) -> dict:
    return json.loads((sweep_dir(stash) / "sweep.json").read_text())


def run_json(stash: Stash, job: dict) -> dict:
    return json.loads((stash.root / job["run_dir"] / "run.json").read_text())


def agreed(record: dict, job: dict) -> bool:
    """A job's run.json and its sweep.json entry say the same: status, exit code, duration and end time."""
    fields = ("status", "exit_code", "duration_s", "ended_at")
    return record["ended_at"] is not None and [record[f] for f in fields] == [job[f] for f in fields]


class BackendSuite:
    """What every sweep backend does alike, as a user sees it: statuses, failures that hide nothing, results and
    records, results returned to Hydra, files written into the tool's checkout, timeouts, Ctrl-C, rerun, and
    (where the backend has them) fail-fast and submitting without waiting. A subclass names its backend."""

    backend: str = ""  # its name, as sweep.json records it
    words: list[str] = []  # the launcher words that choose it, with options that keep its limits short
    one_at_a_time: list[str] = []  # words that make it run one job at a time
    fail_fast: list[str] | None = None  # words that end the sweep at the first failure, if it has them
    no_wait: list[str] | None = None  # words that submit and return, if it has them (follow with `status`)
    timeout = 300  # seconds one command of the suite may take
    follows_needs = True  # as its Backend.follows_needs: it runs a pipeline's stages (else it refuses them)

    @pytest.fixture
    def backend_paths(self) -> tuple[str, ...]:
        """Folders the backend's package needs on the import path (override with a fixture of this name)."""
        return ()

    @pytest.fixture
    def stash(self, tmp_path: Path, backend_paths) -> Stash:
        for key, value in GIT_IDENTITY.items():
            os.environ.setdefault(key, value)
        return new_stash(tmp_path, backend_paths)

    def sweep(self, stash: Stash, *words: str) -> subprocess.CompletedProcess:
        return stash.run("-m", *self.words, *words, timeout=self.timeout)

    def test_every_job_ends_with_its_status_result_and_record(self, stash):
        stash.write("configs/fx/experiment/crash2.yaml", experiment("crash: true\nvalue: 7\n"))
        out = self.sweep(stash, "tool=fx", "experiment=a,crash,b,crash2")
        assert out.returncode == 1, out.stdout + out.stderr
        data = sweep_json(stash)
        assert data["backend"] == self.backend
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

    def test_results_reach_hydra(self, stash):
        """An optimizing sweeper gets each job's objective (stash.objective) back through the launcher."""
        out = self.sweep(stash, "tool=fx", "experiment=a", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                         "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=1", "value=range(1,5)",
                         "stash.objective=score")
        assert out.returncode == 0, out.stdout + out.stderr
        best = (sweep_dir(stash) / "optimization_results.yaml").read_text()
        scores = [r["result"]["score"] for r in stash.runs("multirun")]
        assert len(scores) == 2 and f"best_value: {max(scores)}" in best

    def test_files_a_job_writes_into_the_tools_checkout_are_recorded(self, stash):
        out = self.sweep(stash, "tool=fx", "experiment=a", "litter=true")
        assert out.returncode == 0, out.stdout + out.stderr
        (job,) = sweep_json(stash)["jobs"]
        assert run_json(stash, job)["tool_touched"] == ["litter.txt"]

    def test_timeout_ends_the_job_and_says_so(self, stash):
        out = self.sweep(stash, "tool=fx", "experiment=slow,a", "stash.timeout=20", "stash.grace=1")
        assert out.returncode == 1, out.stdout + out.stderr
        jobs = sweep_json(stash)["jobs"]
        assert [j["status"] for j in jobs] == ["timeout", "succeeded"]
        assert all(agreed(run_json(stash, j), j) for j in jobs)
        assert "2 jobs: 1 succeeded, 1 timeout" in out.stdout or "2 jobs: 1 timeout, 1 succeeded" in out.stdout

    def test_rerun_relaunches_only_what_failed(self, stash):
        out = self.sweep(stash, "tool=fx", "experiment=a,crash")
        assert out.returncode == 1, out.stdout + out.stderr
        folder = sweep_dir(stash)
        first = json.loads((folder / "0_fx_a" / "run.json").read_text())
        stash.write("configs/fx/experiment/crash.yaml", experiment())
        out = stash.run("rerun", str(folder), timeout=self.timeout)
        assert out.returncode == 0, out.stdout + out.stderr
        again = json.loads((folder / "0_fx_a" / "run.json").read_text())
        # not run again (Slurm's figures may have joined its record since: sacct can lag behind a task's end)
        assert (again["started_at"], again["owner"]) == (first["started_at"], first["owner"])
        data = sweep_json(stash)
        assert [j["status"] for j in data["jobs"]] == ["succeeded", "succeeded"]
        assert [r["jobs"] for r in data["reruns"]] == [[1]]
        assert json.loads((folder / "1_fx_crash.attempt1" / "run.json").read_text())["status"] == "failed"
        assert "2 jobs: 2 succeeded" in out.stdout
        status = stash.run("status", str(folder))
        assert status.returncode == 0 and "2 jobs: 2 succeeded" in status.stdout

    def test_ctrl_c_ends_every_job_and_records_it_interrupted(self, stash):
        proc = stash.popen("-m", *self.words, "tool=fx", "experiment=slow", "seed=range(3)", "spawn_child=true",
                           "ignore_term=true", "stash.grace=1")
        saw = wait_for(lambda: len(found := list((stash.root / "multirun").rglob("seen.json"))) == 3 and found,
                       what="three running jobs")
        saw = [json.loads(p.read_text()) for p in saw]
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=self.timeout)
        assert proc.returncode == 130
        jobs = sweep_json(stash)["jobs"]
        assert [j["status"] for j in jobs] == ["interrupted"] * 3
        assert all(agreed(run_json(stash, j), j) for j in jobs)
        assert "3 jobs: 3 interrupted" in stdout
        for tool_saw in saw:
            assert not pid_alive(tool_saw["pid"]) and not pid_alive(tool_saw["child_pid"])
        status = stash.run("status", str(sweep_dir(stash)))
        assert status.returncode == 0 and "3 jobs: 3 interrupted" in status.stdout

    def test_ctrl_c_cancels_the_jobs_that_never_started(self, stash):
        proc = stash.popen("-m", *self.words, *self.one_at_a_time, "tool=fx", "experiment=slow", "seed=range(3)",
                           "stash.grace=1")
        (seen,) = wait_for(lambda: list((stash.root / "multirun").rglob("seen.json")), what="a running job")
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=self.timeout)
        assert proc.returncode == 130
        jobs = sweep_json(stash)["jobs"]
        assert [j["status"] for j in jobs] == ["interrupted", "cancelled", "cancelled"]
        assert agreed(run_json(stash, jobs[0]), jobs[0])
        assert not pid_alive(json.loads(seen.read_text())["pid"])
        for job in jobs[1:]:  # never started: no run dir, no duration
            assert not (stash.root / job["run_dir"]).exists() and job["duration_s"] is None
        assert "3 jobs: 2 cancelled, 1 interrupted" in stdout

    def test_fail_fast_cancels_the_rest(self, stash):
        if self.fail_fast is None:
            pytest.skip(f"the {self.backend} backend has no fail-fast")
        out = self.sweep(stash, *self.one_at_a_time, *self.fail_fast, "tool=fx", "experiment=crash,a,b")
        assert out.returncode == 1, out.stdout + out.stderr
        jobs = sweep_json(stash)["jobs"]
        assert [j["status"] for j in jobs] == ["failed", "cancelled", "cancelled"]
        assert not any((stash.root / j["run_dir"]).exists() for j in jobs[1:])

    def test_a_pipelines_stages_run_after_what_they_need_or_are_refused(self, stash):
        """Job.needs: a stage starts once the jobs it needs succeeded, and is cancelled when one did not; a backend
        that does not follow needs (Backend.follows_needs) is refused a pipeline before anything runs."""
        stash.write("configs/pipelines/two.yaml", "stages:\n  first: {tool: fx, experiment: a}\n"
                    "  second: {tool: fx, experiment: b, needs: [first], overrides: ['+up=${stages.first.run_dir}']}\n")
        out = self.sweep(stash, "pipeline=two", "first.crash=true,false")
        if not self.follows_needs:
            assert out.returncode == 2 and "cannot run a pipeline's stages" in out.stderr, out.stdout + out.stderr
            assert not (stash.root / "multirun").exists()
            return
        assert out.returncode == 1, out.stdout + out.stderr
        jobs = sweep_json(stash)["jobs"]
        assert [(j["stage"], j["status"]) for j in jobs] == [
            ("first", "failed"), ("second", "cancelled"), ("first", "succeeded"), ("second", "succeeded")]
        assert jobs[1]["reason"] == "upstream failed" and not (stash.root / jobs[1]["run_dir"]).exists()
        first, second = (json.loads((stash.root / j["run_dir"] / "seen.json").read_text()) for j in jobs[2:])
        assert second["cfg"]["up"] == str(stash.root / jobs[2]["run_dir"]) and second["started"] > first["ended"]

    def test_submitted_without_waiting_then_followed_by_status(self, stash):
        if self.no_wait is None:
            pytest.skip(f"the {self.backend} backend always waits for its jobs")
        out = self.sweep(stash, *self.no_wait, "tool=fx", "experiment=a,crash")
        assert out.returncode == 0, out.stdout + out.stderr
        folder = sweep_dir(stash)
        assert f"experimentstash status multirun/{folder.name}" in out.stdout + out.stderr
        said = wait_for(lambda: (s := stash.run("status", str(folder))).returncode == 0
                        and "2 jobs: 1 succeeded, 1 failed" in s.stdout and s, what="both jobs ended")
        assert "job 1 failed, exit code 3" in said.stdout
        assert all(agreed(run_json(stash, j), j) for j in sweep_json(stash)["jobs"])

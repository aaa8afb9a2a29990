"""Real stashes for the tests: `git init`, a fixture tool repository, `git submodule add` over the file protocol."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

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


@pytest.fixture(scope="session", autouse=True)
def git_identity():
    for key, value in {
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        os.environ.setdefault(key, value)
    os.environ.pop("EXPERIMENTSTASH_ROOT", None)
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)


@dataclass
class Stash:
    root: Path
    tool_repo: Path

    @property
    def tool(self) -> Path:
        return self.root / "tools" / "fx"

    def run(self, *args: str, timeout: float = 120, cwd: Path | None = None, env: dict | None = None):
        """`python -m experimentstash ARGS` in this stash, as a user would type it."""
        return subprocess.run(
            [sys.executable, "-m", "experimentstash", *args], cwd=cwd or self.root, capture_output=True,
            text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        )

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "experimentstash", *args], cwd=self.root, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}, **kwargs,
        )

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


def new_stash(folder: Path) -> Stash:
    """A stash in `folder` with the fixture tool `fx` as a submodule and its experiments."""
    tool_repo = make_tool_repo(folder / "fx-repo")
    root = folder / "stash"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    s = Stash(root, tool_repo)
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


@pytest.fixture
def stash(tmp_path: Path) -> Stash:
    return new_stash(tmp_path)


# --- Slurm ----------------------------------------------------------------------------------------------------

@functools.cache
def slurm_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return ping.returncode == 0 and "UP" in ping.stdout


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Tests marked `slurm` need a Slurm controller: skipped when none answers, except where
    EXPERIMENTSTASH_REQUIRE_SLURM is set (CI, after .ci/slurm-up), where they fail instead."""
    if item.get_closest_marker("slurm") and not os.environ.get("EXPERIMENTSTASH_REQUIRE_SLURM") and not slurm_up():
        pytest.skip("no Slurm controller answers here; .ci/slurm-up starts one")


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


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Stash, Path]:
    """A stash with one ended sweep of 12 jobs, shared by a module's tests, and its sweep dir: experiments a
    (value 1) and b (value 2) x value=1,2 x seed=0,1 succeed (the tool writes score = 2 * value), crash fails."""
    stash = new_stash(tmp_path_factory.mktemp("swept"))
    out = stash.run("-m", "tool=fx", "experiment=a,b,crash", "value=1,2", "seed=0,1")
    assert out.returncode == 1, out.stderr  # the crash jobs fail
    (folder,) = (stash.root / "multirun").iterdir()
    return stash, folder

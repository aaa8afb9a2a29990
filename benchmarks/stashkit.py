"""Shared helpers of the benchmarks: build a throw-away stash, run the launcher, time commands."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the experimentstash checkout whose code is measured
PYTHON = sys.executable

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}

# a Hydra tool that returns at once (its config: conf/config.yaml)
HYDRA_NOOP_TOOL = '''\
import hydra


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    return None


if __name__ == "__main__":
    main()
'''

# a plain script that ignores its arguments and exits at once
PLAIN_NOOP_TOOL = "pass\n"

# a plain script that sleeps for the value of its `sleep=SECONDS` argument (`++sleep=` from other launchers)
SLEEP_TOOL = '''\
import sys, time

for word in sys.argv[1:]:
    if word.lstrip("+").startswith("sleep="):
        time.sleep(float(word.split("=", 1)[1]))
'''

# a two-stage pipeline (configs/pipelines/two.yaml) of a tool `noop`: `second` needs `first` and is given its run dir
TWO_STAGE_PIPELINE = """\
stages:
  first: {tool: noop, experiment: noop}
  second: {tool: noop, experiment: noop, needs: [first], overrides: ['+up=${stages.first.run_dir}']}
"""

EXPERIMENT = "# @package _global_\ndefaults:\n  - /config\n  - _self_\n"


def env(**extra: str) -> dict[str, str]:
    """The environment every launcher run gets: this checkout's code first on the path."""
    out = {**os.environ, **GIT_ENV, "PYTHONPATH": str(REPO)}
    out.pop("EXPERIMENTSTASH_ROOT", None)
    out.pop("CUDA_VISIBLE_DEVICES", None)
    out.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode: compiling it is no one's cost
    out.update(extra)
    return out


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env(), check=True, capture_output=True)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_stash(parent: Path, tools: dict[str, dict]) -> Path:
    """A git stash under `parent` with in-tree tools.

    tools: name -> {"files": {relative path: text}, "entrypoint": str, "experiment": text of
    configs/<name>/experiment/<name>.yaml}. Every tool is registered with `env: current`.
    """
    root = parent / "stash"
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    meta = ["tools:"]
    for name, spec in tools.items():
        for rel, text in spec["files"].items():
            write(root / "tools" / name / rel, text)
        write(root / "configs" / name / "experiment" / f"{name}.yaml", spec.get("experiment", EXPERIMENT))
        meta += [f"  {name}:", f"    path: tools/{name}", f"    entrypoint: {spec['entrypoint']}",
                 "    env: current"]
    write(root / "configs" / "meta.yaml", "\n".join(meta) + "\n")
    write(root / ".gitignore", "outputs/\nmultirun/\n.cache/\nconfigs/meta.local.yaml\n__pycache__/\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "benchmark stash")
    return root


def launcher_argv(*words: str) -> list[str]:
    return [PYTHON, "-m", "experimentstash", *words]


def run(argv: list[str], cwd: Path, extra_env: dict | None = None, log: Path | None = None,
        check: bool = True) -> float:
    """Run a command to its end; returns its wall time in seconds. Output goes to `log` (or nowhere)."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env(**(extra_env or {})), stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
        wall = time.perf_counter() - start
    finally:
        if log:
            out.close()
    if check and proc.returncode != 0:
        detail = log.read_text()[-3000:] if log else ""
        raise SystemExit(f"command failed with exit code {proc.returncode}: {' '.join(argv)}\n{detail}")
    return wall


def median(values) -> float:
    return statistics.median(values)


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)


def dedent(text: str) -> str:
    return textwrap.dedent(text)

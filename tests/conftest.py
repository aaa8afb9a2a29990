"""Real stashes for the tests (experimentstash/testing.py builds them: `git init`, a fixture tool repository, `git
submodule add` over the file protocol), Slurm's marker, and the sweep a module's tests share."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.register_assert_rewrite("experimentstash.testing")  # the conformance suite's asserts explain their failures

from experimentstash.testing import (FIXTURE_CONFIG, FIXTURE_TOOL, GIT_IDENTITY, META, REPO, Stash,  # noqa: F401
                                     experiment, git, make_tool_repo, new_stash, pid_alive)


@pytest.fixture(scope="session", autouse=True)
def git_identity():
    for key, value in GIT_IDENTITY.items():
        os.environ.setdefault(key, value)
    os.environ.pop("EXPERIMENTSTASH_ROOT", None)
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)


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


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Stash, Path]:
    """A stash with one ended sweep of 12 jobs, shared by a module's tests, and its sweep dir: experiments a
    (value 1) and b (value 2) x value=1,2 x seed=0,1 succeed (the tool writes score = 2 * value), crash fails."""
    stash = new_stash(tmp_path_factory.mktemp("swept"))
    out = stash.run("-m", "tool=fx", "experiment=a,b,crash", "value=1,2", "seed=0,1")
    assert out.returncode == 1, out.stderr  # the crash jobs fail
    (folder,) = (stash.root / "multirun").iterdir()
    return stash, folder

"""What every sweep backend does alike (experimentstash.testing.BackendSuite), run on local, on the real Slurm of
.ci/slurm-up, and on the thread-pool backend that docs/backends.md writes, taken from there and registered the way it
says. And backends that cannot run: refused with one message, the others untouched."""

import re
from pathlib import Path

import pytest

from conftest import REPO
from experimentstash.backends import BACKENDS, backend_class
from experimentstash.testing import BackendSuite, sweep_json


class TestLocal(BackendSuite):
    backend = "local"
    words = ["hydra.launcher.max_parallel=4"]
    one_at_a_time = ["hydra.launcher.max_parallel=1"]
    fail_fast = ["hydra.launcher.fail_fast=true"]


@pytest.mark.slurm
class TestSlurm(BackendSuite):
    backend = "slurm"
    words = ["hydra/launcher=stash_slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.signal_delay_s=5"]
    one_at_a_time = ["hydra.launcher.array_parallelism=1"]
    no_wait = ["hydra.launcher.wait=false"]


def readme_blocks(language: str) -> list[str]:
    """The code blocks of one language in the docs' "Adding a backend"."""
    return re.findall(rf"```{language}\n(.*?)```", (REPO / "docs" / "backends.md").read_text(), re.DOTALL)


def installed(folder: Path, module: str, code: str, entry_points: str) -> Path:
    """`module` with `code` in `folder`, registered by a dist-info folder beside it, as pip would install it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(code)
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return folder


class TestThreadPoolFromTheDocs(BackendSuite):
    """The backend as docs/backends.md writes it: one module, one line of registration."""

    backend = "threads"
    follows_needs = False
    words = ["hydra/launcher=stash_threads", "hydra.launcher.workers=4"]
    one_at_a_time = ["hydra.launcher.workers=1"]

    @pytest.fixture
    def backend_paths(self, tmp_path) -> tuple[str, ...]:
        (code,) = readme_blocks("python")
        (toml,) = readme_blocks("toml")
        group, line = toml.strip().splitlines()
        assert group == '[project.entry-points."experimentstash.backends"]'
        name, _, target = line.partition(" = ")
        module = target.strip('"').split(":")[0]
        entry = f"[experimentstash.backends]\n{name} = {target.strip(chr(34))}\n"
        return (str(installed(tmp_path / "site", module, code, entry)),)


def test_every_built_in_backend_runs_the_suite():
    assert {cls.backend for cls in BackendSuite.__subclasses__()} >= set(BACKENDS)


BROKEN = "import a_library_that_is_not_installed\n"
NO_RUN = """from dataclasses import dataclass

from experimentstash.backends.base import Backend


@dataclass
class Options:
    workers: int = 1


class HalfBackend(Backend):
    Options = Options
"""


@pytest.fixture
def broken(stash, tmp_path):
    """A stash where two other packages' backends are installed: one fails to import, one lacks run()."""
    site = installed(tmp_path / "site", "broken_backend", BROKEN, "[experimentstash.backends]\n"
                     "broken = broken_backend:Backend\nhalf = half_backend:HalfBackend\n")
    (site / "half_backend.py").write_text(NO_RUN)
    stash.paths = (str(site),)
    return stash


def test_a_backend_that_cannot_be_loaded_breaks_only_itself(broken):
    out = broken.run("-m", "tool=fx", "experiment=a,b")
    assert out.returncode == 0, out.stdout + out.stderr
    assert [j["status"] for j in sweep_json(broken)["jobs"]] == ["succeeded", "succeeded"]
    out = broken.run("-m", "hydra/launcher=stash_broken", "tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: The broken backend (broken_backend:Backend) cannot be loaded: ModuleNotFoundError: No module named "
        "'a_library_that_is_not_installed'. Fix or remove it; the other backends work."]
    out = broken.run("--help")
    assert out.returncode == 0 and "hydra/launcher=stash_broken (broken): The broken backend" in out.stdout


def test_a_backend_without_a_required_hook_is_refused_before_anything_runs(broken):
    out = broken.run("-m", "hydra/launcher=stash_half", "tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "The half backend (half_backend:HalfBackend) does not implement run" in out.stderr
    assert not (broken.root / "multirun").exists()


def test_every_built_in_backend_says_in_the_suite_whether_it_follows_needs():
    for suite in BackendSuite.__subclasses__():
        if suite.backend in BACKENDS:
            assert suite.follows_needs == backend_class(suite.backend).follows_needs, suite.backend

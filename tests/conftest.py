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


# a Hydra tool that trains nothing but writes what training tools write: a history (one JSON line, or CSV row, per
# step: its loss falls faster with a larger lr), a one-row CSV of metrics named like manylatents' (metrics_summary_
# <name>_<time>.csv), and the same metrics with the loss curve as a list in metrics.yaml
CURVES_TOOL = '''
import csv, json, sys, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    losses = [1 / (1 + float(cfg.lr) * 10 * step) + int(cfg.seed) / 100 for step in range(cfg.steps)]
    rows = [{"step": step, "loss": loss, "val": {"acc": 1 - loss / 2}} for step, loss in enumerate(losses)]
    if cfg.history_format == "csv":
        with open(out / "history.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "loss", "val.acc"])
            writer.writerows([r["step"], r["loss"], r["val"]["acc"]] for r in rows)
    else:
        (out / "history.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
    metrics = {"final_loss": losses[-1], "acc": 1 - losses[-1] / 2, "const": 1.5, "name": cfg.name}
    stamp = time.strftime("%Y%m%d_%H%M%S")
    for copy in range(cfg.summaries):
        with open(out / f"metrics_summary_{cfg.name}_{stamp}_{copy}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(metrics))
            writer.writeheader()
            writer.writerow(metrics)
    (out / "metrics.yaml").write_text(f"final_loss: {losses[-1]}\\ncurve: {losses}\\nwhen: 2025-01-31\\n")
    if cfg.crash:
        sys.exit("curves: asked to crash")


if __name__ == "__main__":
    main()
'''

CURVES_CONFIG = "lr: 0.01\nseed: 0\nsteps: 20\nname: fit\nhistory_format: jsonl\nsummaries: 1\ncrash: false\n"
CURVES_META = """\
  curves:
    path: tools/curves
    entrypoint: tool.py
    env: current
    result: metrics_summary_*.csv
    history: history.*
"""

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


def add_curves_tool(stash: Stash) -> None:
    """The in-tree tool `curves` (CURVES_TOOL) and its experiment `fit`, committed."""
    stash.write("tools/curves/tool.py", CURVES_TOOL)
    stash.write("tools/curves/conf/config.yaml", CURVES_CONFIG)
    stash.write("configs/curves/experiment/fit.yaml", experiment())
    stash.write("configs/meta.yaml", (stash.root / "configs/meta.yaml").read_text() + CURVES_META)
    stash.commit("the curves tool")


@pytest.fixture(scope="module")
def curved(tmp_path_factory) -> tuple[Stash, Path]:
    """A stash with one ended sweep of the curves tool and its sweep dir: lr=0.001,0.01,0.1 (log-spaced) x
    seed=0,1, each run with a 20-step history."""
    stash = new_stash(tmp_path_factory.mktemp("curved"))
    add_curves_tool(stash)
    out = stash.run("-m", "tool=curves", "experiment=fit", "lr=0.001,0.01,0.1", "seed=0,1")
    assert out.returncode == 0, out.stderr
    (folder,) = (stash.root / "multirun").iterdir()
    return stash, folder

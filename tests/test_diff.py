"""`experimentstash diff RUN_A RUN_B`: two real runs of the fixture tool, apart in commit, experiment, overrides."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, add_curves_tool, experiment, git


def run_dirs(stash) -> list[Path]:
    return [stash.root / r["run_dir"] for r in stash.runs()]


def two_runs(stash) -> tuple[Path, Path, str]:
    """Run a; then a new tool commit, an uncommitted change, an edited experiment and other overrides; run b."""
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    (stash.tool / "VERSION").write_text("v2\n")
    git(stash.tool, "commit", "-qam", "fixture tool v2: a new version")
    (stash.tool / "VERSION").write_text("v3\n")  # uncommitted: the run records tool.diff
    stash.write("configs/fx/experiment/a.yaml", experiment("value: 1\nseed: 5\n"))
    out = stash.run("tool=fx", "experiment=a", "value=3", "+extra=1")
    assert out.returncode == 0, out.stderr
    a, b = run_dirs(stash)
    return a, b, git(stash.tool, "rev-parse", "HEAD")


def test_what_differs_between_two_runs(stash):
    a, b, v2 = two_runs(stash)
    out = stash.run("diff", str(a), str(b))
    assert out.returncode == 0, out.stderr
    text = out.stdout

    def section(name: str) -> str:  # its lines, with runs of spaces as one
        return re.sub(" +", " ", text.split(f"\n{name}: ")[1].split("\n\n")[0])

    tool = section("tool")
    assert tool.startswith("differs")
    assert f"-> {v2}" in tool and "dirty false -> true" in tool
    assert f"+ {v2[:10]} fixture tool v2: a new version (only in b)" in tool
    assert "tool.diff sha256" in tool
    assert section("experiment").splitlines()[-1] == " +seed: 5"
    config = section("composed config (.hydra/config.yaml)")
    assert "seed 0 -> 5" in config and "value 1 -> 3" in config and "extra (missing) -> 1" in config
    overrides = section("overrides")
    assert "value (missing) -> 3" in overrides and "extra (missing) -> 1" in overrides
    assert section("environment").startswith("same")
    result = section("result")
    assert "score 2 -> 6 (+4)" in result and "version v1 -> v3" in result
    assert text.rstrip().endswith("The runs differ in: tool, experiment, composed config (.hydra/config.yaml), "
                                  "overrides, result.")

    out = stash.run("diff", str(a.relative_to(stash.root)), str(b), "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["differs"] == ["tool", "experiment", "config", "overrides", "result"]
    assert data["a"]["run_dir"] == str(a.relative_to(stash.root))
    assert [c["subject"] for c in data["tool"]["commits"]] == ["fixture tool v2: a new version"]
    score = next(i for i in data["result"]["items"] if i["key"] == "score")
    assert (score["a"], score["b"], score["delta"]) == (2.0, 6.0, 4.0)


def test_a_run_against_itself_differs_in_nothing(stash):
    assert stash.run("tool=fx", "experiment=b").returncode == 0
    (run,) = run_dirs(stash)
    out = stash.run("diff", str(run), str(run))
    assert out.returncode == 0, out.stderr
    assert "No difference in what was compared." in out.stdout
    assert re.search(r"\n  score +4\n", out.stdout)


def test_commits_not_in_the_checkout_are_named_not_listed(stash):
    a, b, v2 = two_runs(stash)
    record = json.loads((b / "run.json").read_text())
    record["tool_commit"] = "0" * 40
    (b / "run.json").write_text(json.dumps(record))
    out = stash.run("diff", str(a), str(b))
    assert out.returncode == 0, out.stderr
    assert "commits between them not listed: 0000000000 not in tools/fx (fetch it to see the commits between)" \
        in out.stdout


def test_run_dirs_are_untrusted(stash, tmp_path):
    a, b, _ = two_runs(stash)
    secret = tmp_path / "secret.yaml"
    secret.write_text("password: hunter2\n")
    (b / "experiment.yaml").unlink()
    os.symlink(secret, b / "experiment.yaml")
    bomb = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 7))
    (b / ".hydra" / "config.yaml").write_text("l0: &l0 [x]\n" + bomb)  # a million items when expanded
    out = stash.run("diff", str(a), str(b))
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout
    assert "b: experiment.yaml not compared: it leads outside the run dir" in out.stdout
    assert ("b: .hydra/config.yaml not compared: it is not valid YAML (its aliases expand to more than 100000 "
            "items)") in out.stdout

    record = json.loads((b / "run.json").read_text())
    record["tool_commit"] = "--output=/tmp/x"
    (b / "run.json").write_text(json.dumps(record))
    out = stash.run("diff", str(a), str(b))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "run.json: field 'tool_commit': expected a full commit id" in out.stderr


def test_paths_that_are_no_run_dirs_are_refused(stash):
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    (run,) = run_dirs(stash)
    out = stash.run("diff", str(run), "outputs/none")
    assert out.returncode == 2 and "outputs/none does not exist: give a run dir" in out.stderr
    out = stash.run("diff", str(run), "configs")
    assert out.returncode == 2 and "holds no run.json" in out.stderr and "Traceback" not in out.stderr


def test_runs_given_by_their_ids(stash):
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    assert stash.run("tool=fx", "experiment=a", "value=3").returncode == 0
    (a, b), ids = run_dirs(stash), [r["id"] for r in stash.runs()]
    by_dir = stash.run("diff", str(a), str(b), "--format", "json")
    by_id = stash.run("diff", *ids, "--format", "json")
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout == by_dir.stdout
    assert json.loads(by_id.stdout)["b"]["run_dir"] == str(b.relative_to(stash.root))

    out = stash.run("diff", ids[0], "no-such-run")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no-such-run is neither a folder nor the id of a recorded run" in out.stderr

    shutil.copytree(b, b.with_name(b.name + "-copy"))  # two run dirs record the same id
    out = stash.run("diff", ids[0], ids[1])
    assert out.returncode == 2 and f"{ids[1]} is the id of 2 runs" in out.stderr and "give the run dir of one" in out.stderr


def new_venv(folder: Path) -> Path:
    """A virtual environment over this interpreter's packages; its bin/ holds python and python3 (links)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(folder)],
                   check=True)
    return folder / "bin"


def run_with(stash, python: Path, *args: str) -> Path:
    """A single run started with this interpreter (env: current: the tool runs with it too); its run dir."""
    before = set(run_dirs(stash))
    out = subprocess.run([str(python), "-m", "experimentstash", *args], cwd=stash.root, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    (run_dir,) = set(run_dirs(stash)) - before
    assert json.loads((run_dir / "run.json").read_text())["env"]["executable"] == str(python)
    return run_dir


@pytest.mark.parametrize("second,same", [("python3", True), ("other", False)])
def test_one_interpreter_reached_by_two_paths_is_no_difference(stash, tmp_path, second, same):
    bin_dir = new_venv(tmp_path / "venv")
    other = new_venv(tmp_path / "other-venv") / "python" if second == "other" else bin_dir / second
    a = run_with(stash, bin_dir / "python", "tool=fx", "experiment=a")
    b = run_with(stash, other, "tool=fx", "experiment=a")
    assert os.path.realpath(bin_dir / "python") == os.path.realpath(other)  # a venv's python links to its base

    out = stash.run("diff", str(a), str(b))
    assert out.returncode == 0, out.stderr
    env = out.stdout.split("\nenvironment: ")[1].split("\n\n")[0]
    executable = next(line.split() for line in env.splitlines() if line.split()[:1] == ["executable"])
    if same:
        assert env.startswith("same\n") and executable == ["executable", str(bin_dir / "python")]
        assert out.stdout.rstrip().endswith("No difference in what was compared.")
    else:  # two virtual environments over one base interpreter: their packages may differ
        assert env.startswith("differs\n") and executable == ["executable", str(bin_dir / "python"), "->", str(other)]
        assert out.stdout.rstrip().endswith("The runs differ in: environment.")


def test_interpreter_paths_that_do_not_exist_here_are_compared_as_recorded(stash):
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    assert stash.run("tool=fx", "experiment=a").returncode == 0
    a, b = run_dirs(stash)
    for run_dir, name in ((a, "python"), (b, "python3")):
        record = json.loads((run_dir / "run.json").read_text())
        record["env"]["executable"] = f"/gone/venv/bin/{name}"
        (run_dir / "run.json").write_text(json.dumps(record))
    out = stash.run("diff", str(a), str(b))
    assert out.returncode == 0, out.stderr
    assert re.search(r"\n  executable +/gone/venv/bin/python -> /gone/venv/bin/python3\n", out.stdout)
    assert out.stdout.rstrip().endswith("The runs differ in: environment.")


def test_lists_and_histories_are_summarized_with_their_largest_difference(stash):
    add_curves_tool(stash)
    stash.write("configs/meta.local.yaml", "tools:\n  curves:\n    result: metrics.yaml\n")
    for lr in ("0.01", "0.1"):
        out = stash.run("tool=curves", "experiment=fit", f"lr={lr}", "steps=5")
        assert out.returncode == 0, out.stderr
    a, b = run_dirs(stash)
    slow, fast = ([1 / (1 + lr * 10 * step) for step in range(5)] for lr in (0.01, 0.1))
    largest = max(abs(x - y) for x, y in zip(slow, fast))
    out = stash.run("diff", str(a), str(b))
    assert out.returncode == 0, out.stderr
    text = re.sub(" +", " ", out.stdout)
    lists = f"[1, 0.9091, ..., 0.7692, 0.7143] (5 values) -> [1, 0.5, ..., 0.25, 0.2] (5 values) (largest difference {largest:.6g})"
    assert f"curve {lists}" in text.split("\nresult: ")[1].split("\n\n")[0]
    history = text.split("\nhistory: ")[1]
    assert history.startswith("differs") and f"loss {lists}" in history
    assert str(slow[2])[:6] not in out.stdout  # the middle of a list is never printed

    data = json.loads(stash.run("diff", str(a), str(b), "--format", "json").stdout)
    curve = next(i for i in data["result"]["items"] if i["key"] == "curve")
    assert curve["a"] == {"length": 5, "first": 1.0, "last": slow[-1], "shown": "[1, 0.9091, ..., 0.7692, 0.7143] (5 values)"}
    assert curve["max_delta"] == largest
    assert data["differs"] == ["config", "overrides", "result", "history"]

"""`reproduce <run dir>`: the recorded tool commit, its uncommitted changes and the recorded experiment file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import experiment, git

# a deterministic tool: it writes the commit it runs from and values derived from its code (FACTOR, extra.txt)
DET_TOOL = '''
import json, subprocess
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

FACTOR = 2
HERE = Path(__file__).resolve().parent


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    extra = (HERE / "extra.txt").read_text().strip() if (HERE / "extra.txt").exists() else None
    result = {"commit": commit, "score": cfg.value * FACTOR, "extra": extra}
    (out / "result.json").write_text(json.dumps(result, sort_keys=True))
    (out / "table.csv").write_text("".join(f"{i},{i * cfg.value * FACTOR}\\n" for i in range(5)))
    print("det tool done", flush=True)


if __name__ == "__main__":
    main()
'''

DET_META = """\
  det:
    path: tools/det
    entrypoint: tool.py
    env: current
    result: result.json
"""


def set_factor(tool_dir: Path, factor: int) -> None:
    path = tool_dir / "tool.py"
    text = path.read_text()
    start = text.index("FACTOR = ")
    end = text.index("\n", start)
    path.write_text(text[:start] + f"FACTOR = {factor}" + text[end:])


@pytest.fixture
def det(stash, tmp_path):
    """The test stash with a second, deterministic submodule tool `det` and its experiment `e` (value 3)."""
    repo = tmp_path / "det-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "tool.py").write_text(DET_TOOL)
    (repo / "conf").mkdir()
    (repo / "conf" / "config.yaml").write_text("value: 1\n")
    (repo / ".gitignore").write_text("__pycache__/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "det v1")
    git(stash.root, "submodule", "add", "-q", str(repo), "tools/det")
    meta = stash.root / "configs" / "meta.yaml"
    meta.write_text(meta.read_text() + DET_META)
    stash.write("configs/det/experiment/e.yaml", experiment("value: 3\n"))
    stash.commit("add the det tool")
    return stash


def only_run(stash, **match) -> tuple[dict, Path]:
    found = [r for r in stash.runs() if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, found
    return found[0], stash.root / found[0]["run_dir"]


def worktrees(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def test_reproduces_the_recorded_commit_after_the_tool_moved_on(det):
    tool = det.root / "tools" / "det"
    old_commit = git(tool, "rev-parse", "HEAD")
    out = det.run("tool=det", "experiment=e")
    assert out.returncode == 0, out.stderr
    original, original_dir = only_run(det, tool="det")
    assert original["result"] == {"commit": old_commit, "score": 6, "extra": None}
    assert (original_dir / "experiment.yaml").read_text() == (det.root / "configs/det/experiment/e.yaml").read_text()

    set_factor(tool, 5)
    git(tool, "commit", "-qam", "det v2: FACTOR 5")
    new_commit = git(tool, "rev-parse", "HEAD")
    det.commit("pin det v2")
    assert det.run("tool=det", "experiment=e").returncode == 0
    assert det.runs()[-1]["result"]["score"] == 15  # the new code really gives another value

    out = det.run("reproduce", str(original_dir), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    (repro,) = [r for r in det.runs() if r.get("reproduces")]
    assert repro["reproduces"] == original["id"]
    assert repro["status"] == "succeeded"
    assert repro["tool_commit"] == old_commit
    assert repro["result"] == {"commit": old_commit, "score": 6, "extra": None}
    assert repro["experiment_file"] == "configs/det/experiment/e.yaml"
    assert repro["run_dir"].startswith("outputs/det/e/")
    assert "identical" in out.stdout and "differs" not in out.stdout
    assert "table.csv" in out.stdout and "result score" in out.stdout
    # the user's checkout was not touched, and the worktree is gone
    assert git(tool, "rev-parse", "HEAD") == new_commit
    assert git(tool, "status", "--porcelain", "--ignored") == ""
    assert len(worktrees(tool)) == 1
    assert not any((det.root / ".cache" / "experimentstash" / "worktrees").iterdir())


def test_a_dirty_run_is_reproduced_with_its_patch(det):
    tool = det.root / "tools" / "det"
    set_factor(tool, 7)  # uncommitted change to tracked code
    (tool / "extra.txt").write_text("untracked input\n")  # an untracked file the tool reads
    out = det.run("tool=det", "experiment=e")
    assert out.returncode == 0, out.stderr
    original, original_dir = only_run(det, tool="det")
    assert original["tool_dirty"] and (original_dir / "tool.diff").is_file()
    assert original["result"]["score"] == 21 and original["result"]["extra"] == "untracked input"

    git(tool, "checkout", "--", ".")
    (tool / "extra.txt").unlink()
    assert git(tool, "status", "--porcelain") == ""

    out = det.run("reproduce", str(original_dir), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    (repro,) = [r for r in det.runs() if r.get("reproduces")]
    assert repro["result"] == original["result"]
    assert repro["tool_dirty"] is True and repro["tool_diff"] == "tool.diff"
    assert (det.root / repro["run_dir"] / "tool.diff").read_bytes() == (original_dir / "tool.diff").read_bytes()
    assert git(tool, "status", "--porcelain", "--ignored") == ""  # the patch went to the worktree only


def test_the_experiment_file_as_it_was_when_the_run_started(det):
    out = det.run("tool=det", "experiment=e")
    assert out.returncode == 0, out.stderr
    original, original_dir = only_run(det, tool="det")
    det.write("configs/det/experiment/e.yaml", experiment("value: 100\n"))
    det.commit("change experiment e")

    out = det.run("reproduce", str(original_dir), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert [r for r in det.runs() if r.get("reproduces")][0]["result"]["score"] == 6

    (det.root / "configs/det/experiment/e.yaml").unlink()
    det.commit("delete experiment e")
    out = det.run("reproduce", str(original_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert [r["result"]["score"] for r in det.runs() if r.get("reproduces")] == [6, 6]


def test_overrides_are_replayed(det):
    assert det.run("tool=det", "experiment=e", "value=4").returncode == 0
    original, original_dir = only_run(det, tool="det")
    out = det.run("reproduce", str(original_dir), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    (repro,) = [r for r in det.runs() if r.get("reproduces")]
    assert repro["overrides"] == ["value=4"] and repro["result"]["score"] == 8


def test_check_reports_differences_with_exit_code_1(stash):
    # the fixture tool writes its pid, cwd and times into seen.json: no two runs are identical
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    original, original_dir = only_run(stash, tool="fx")
    out = stash.run("reproduce", str(original_dir), "--check")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "differs" in out.stdout and "seen.json" in out.stdout
    assert "identical" in out.stdout  # result.json and the result values are the same
    (repro,) = [r for r in stash.runs() if r.get("reproduces")]
    assert repro["result"] == original["result"]


def test_an_in_tree_tool_is_reproduced_from_a_worktree_of_the_stash(stash):
    stash.write("tools/local/tool.py", DET_TOOL.replace('cwd=HERE', 'cwd=HERE.parent.parent'))
    stash.write("tools/local/conf/config.yaml", "value: 1\n")
    meta = stash.root / "configs" / "meta.yaml"
    meta.write_text(meta.read_text() + DET_META.replace("det", "local"))
    stash.write("configs/local/experiment/e.yaml", experiment("value: 3\n"))
    first = stash.commit("in-tree tool")
    assert stash.run("tool=local", "experiment=e").returncode == 0
    original, original_dir = only_run(stash, tool="local")
    assert original["tool_kind"] == "in-tree" and original["result"]["commit"] == first

    set_factor(stash.root / "tools" / "local", 9)
    stash.commit("in-tree tool v2")
    out = stash.run("reproduce", str(original_dir), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    (repro,) = [r for r in stash.runs() if r.get("reproduces")]
    assert repro["result"] == {"commit": first, "score": 6, "extra": None}
    assert len(worktrees(stash.root)) == 1
    assert git(stash.root, "status", "--porcelain") == ""


def test_a_commit_gone_from_the_tool_history_is_a_clear_error(det):
    tool = det.root / "tools" / "det"
    set_factor(tool, 3)
    git(tool, "commit", "-qam", "a commit that will be rewritten away")
    lost = git(tool, "rev-parse", "HEAD")
    assert det.run("tool=det", "experiment=e").returncode == 0
    _, original_dir = only_run(det, tool="det")
    git(tool, "reset", "-q", "--hard", "HEAD~1")
    git(tool, "reflog", "expire", "--expire=now", "--all")
    git(tool, "gc", "-q", "--prune=now")
    assert subprocess.run(["git", "cat-file", "-e", lost], cwd=tool).returncode != 0

    out = det.run("reproduce", str(original_dir))
    assert out.returncode == 2, out.stdout + out.stderr
    assert lost in out.stderr and "rewritten" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(det.runs()) == 1  # no new run was started
    assert len(worktrees(tool)) == 1


def test_bad_run_dirs_are_clear_errors(stash):
    empty = stash.root / "outputs" / "not-a-run"
    empty.mkdir(parents=True)
    out = stash.run("reproduce", str(empty))
    assert out.returncode == 2 and "holds no run.json" in out.stderr and "Traceback" not in out.stderr

    out = stash.run("reproduce", str(stash.root / "outputs" / "missing"))
    assert out.returncode == 2 and "is not a folder" in out.stderr

    assert stash.run("tool=fx", "experiment=a").returncode == 0
    record, run_dir = only_run(stash, tool="fx")
    record["schema"] = 99
    (run_dir / "run.json").write_text(json.dumps(record))
    out = stash.run("reproduce", str(run_dir))
    assert out.returncode == 2 and "schema 99" in out.stderr and "upgrade" in out.stderr

    (run_dir / "run.json").write_text("{not json")
    out = stash.run("reproduce", str(run_dir))
    assert out.returncode == 2 and "not valid JSON" in out.stderr


def test_a_missing_patch_of_a_dirty_run_is_a_clear_error(det):
    tool = det.root / "tools" / "det"
    set_factor(tool, 4)
    assert det.run("tool=det", "experiment=e").returncode == 0
    _, run_dir = only_run(det, tool="det")
    (run_dir / "tool.diff").unlink()
    out = det.run("reproduce", str(run_dir))
    assert out.returncode == 2 and "tool.diff" in out.stderr and "missing" in out.stderr
    assert len(worktrees(tool)) == 1  # the worktree made before the failure was removed


def test_reproduce_names_the_real_cause_and_compares_only_what_both_runs_have(det):
    # configs/det/ did not exist at the stash's first commit: the experiment is uncommitted there
    det.write("configs/meta.local.yaml", "tools:\n  det:\n    result: null\n")
    det.write("configs/det/experiment/fresh.yaml", experiment("value: 5\n"))
    git(det.root, "rm", "-rq", "--cached", "configs/det")
    git(det.root, "commit", "-qm", "configs/det out of the commit")
    assert det.run("tool=det", "experiment=fresh").returncode == 0
    record, run_dir = only_run(det, experiment="fresh")
    assert record["stash_commit"] and record["result"] is None
    out = det.run("reproduce", str(run_dir), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "configs/det/ was not committed at stash commit" in out.stderr
    assert "no stash commit recorded" not in out.stderr
    assert "not compared" in out.stdout and "result values" in out.stdout
    assert "<missing>" not in out.stdout and "result None" not in out.stdout
    assert "identical" in out.stdout and "table.csv" in out.stdout


BARE_TOOL = '''
import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / "result.json").write_text(json.dumps({"keys": len(cfg)}))


if __name__ == "__main__":
    main()
'''


def script_repo(folder: Path, code: str) -> Path:
    """A tool repository of one script, main.py, committed."""
    folder.mkdir()
    git(folder, "init", "-q", "-b", "main")
    (folder / "main.py").write_text(code)
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "the tool")
    return folder


@pytest.mark.parametrize("text", [None, "", "# nothing set yet\n"])
def test_an_experiment_without_keys_is_reproduced(stash, tmp_path, text):
    """add-tool writes a first experiment of comments only for a tool without configs: it runs, so it reproduces."""
    repo = script_repo(tmp_path / "bare-repo", BARE_TOOL)
    assert stash.run("add-tool", "bare", str(repo)).returncode == 0
    example = stash.root / "configs/bare/experiment/example.yaml"
    if text is not None:  # None: the file as add-tool wrote it
        example.write_text(text)
    stash.commit("add bare")
    out = stash.run("tool=bare", "experiment=example")
    assert out.returncode == 0, out.stderr
    _, run_dir = only_run(stash, tool="bare")

    out = stash.run("reproduce", str(run_dir), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical" in out.stdout and "result.json" in out.stdout and "differs" not in out.stdout
    (repro,) = [r for r in stash.runs() if r.get("reproduces")]
    assert (stash.root / repro["run_dir"] / "experiment.yaml").read_bytes() == \
        (run_dir / "experiment.yaml").read_bytes()


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("copy,cause", [
    (None, "{copy} is missing (or not a file of the run dir)"),
    (b"# @package _global_\nvalue: 5\n", "{copy} has sha256 {sha}"),
    (b"value: [1\nseed: 2\n", "{copy} is not YAML (line 2: expected ',' or ']', but got ':')"),
    (b"- value: 1\n- seed: 2\n", "{copy} holds a list, not a mapping of config keys"),
    (b"just text\n", "{copy} holds a single value, not a mapping of config keys"),
])
def test_an_unusable_experiment_copy_is_named_with_its_cause(stash, copy, cause):
    # an experiment that was never committed: the run dir's copy is all there is of it once it is gone
    stash.write("configs/fx/experiment/draft.yaml", experiment("value: 4\n"))
    assert stash.run("tool=fx", "experiment=draft").returncode == 0
    record, run_dir = only_run(stash, experiment="draft")
    (stash.root / "configs/fx/experiment/draft.yaml").unlink()
    saved = run_dir / "experiment.yaml"
    if copy is None:
        saved.unlink()
    else:
        saved.write_bytes(copy)
    if copy is not None and "sha256" not in cause:  # the record agrees with the copy: its contents are the cause
        record["experiment_sha256"] = sha256(copy)
        (run_dir / "run.json").write_text(json.dumps(record))

    out = stash.run("reproduce", str(run_dir))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    expected = (f"error: The experiment file of run {record['id']} (configs/fx/experiment/draft.yaml, recorded sha256 "
                f"{record['experiment_sha256']}) is not available as it was when the run started: "
                + cause.format(copy=saved, sha=sha256(copy or b""))
                + f"; stash commit {record['stash_commit'][:10]} has no such file"
                + "; configs/fx/experiment/draft.yaml today does not exist.\n")
    assert out.stderr == expected
    assert len(stash.runs()) == 1  # nothing ran


# a tool that logs to experiment trackers: their files differ between any two runs, its result does not
TRACKED_TOOL = '''
import json, uuid
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    stamp = uuid.uuid4().hex
    (out / "result.json").write_text(json.dumps({"score": 1}))
    files = out / "wandb" / f"run-{stamp}" / "files"
    files.mkdir(parents=True)
    (files / "wandb-summary.json").write_text(stamp)
    (out / "wandb" / "debug-internal.log").write_text(stamp)
    (out / "mlruns" / "0" / stamp).mkdir(parents=True)
    (out / "mlruns" / "0" / stamp / "meta.yaml").write_text(f"run_id: {stamp}\\n")
    (out / "tb").mkdir()
    (out / "tb" / f"events.out.tfevents.{stamp}.host").write_text(stamp)
    (out / "timing.json").write_text(json.dumps({"stamp": stamp}))
    (out / "table.csv").write_text("1,2\\n")


if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("check_ignore", [None, "[timing.json]", "['*.json']"])
def test_check_leaves_out_tracker_files_and_says_so(stash, tmp_path, check_ignore):
    repo = script_repo(tmp_path / "tracked-repo", TRACKED_TOOL)
    git(stash.root, "submodule", "add", "-q", str(repo), "tools/tracked")
    entry = "  tracked:\n    path: tools/tracked\n    entrypoint: main.py\n    env: current\n    result: result.json\n"
    meta = stash.root / "configs" / "meta.yaml"
    meta.write_text(meta.read_text() + entry)
    stash.write("configs/tracked/experiment/e.yaml", "# @package _global_\n")
    stash.commit("add the tracked tool")
    assert stash.run("tool=tracked", "experiment=e").returncode == 0
    _, run_dir = only_run(stash, tool="tracked")
    if check_ignore:  # said after the run: --check reads the tool's entry as meta.yaml has it now
        meta.write_text(meta.read_text() + f"    check_ignore: {check_ignore}\n")

    out = stash.run("reproduce", str(run_dir), "--check")
    lines = out.stdout.splitlines()
    # verdict by item ("result" for the value `result score`)
    compared = {line.split()[1]: line.split()[0] for line in lines if line.startswith(("identical ", "differs "))}
    left_out = "not compared (bookkeeping): wandb/ (3 files), mlruns/ (2 files), events.out.tfevents.* (2 files), " \
               "*.log (1 file)"
    same = {".hydra/config.yaml": "identical", ".hydra/overrides.yaml": "identical", "table.csv": "identical"}
    if check_ignore is None:
        assert out.returncode == 1, out.stdout + out.stderr
        assert compared == {**same, "result.json": "identical", "timing.json": "differs", "result": "identical"}
        assert left_out in lines
    elif check_ignore == "[timing.json]":
        assert out.returncode == 0, out.stdout + out.stderr
        assert compared == {**same, "result.json": "identical", "result": "identical"}
        assert f"{left_out}, timing.json (1 file)" in lines
    else:  # *.json: timing.json and result.json (whose values are still compared)
        assert out.returncode == 0, out.stdout + out.stderr
        assert compared == {**same, "result": "identical"}
        assert f"{left_out}, *.json (2 files)" in lines

"""Records read back from disk are untrusted: a tampered run.json, sweep.json or tool.diff never runs anything,
writes anything outside the stash, nor reaches git as an option."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import git


def one_run(stash, *extra) -> Path:
    out = stash.run("tool=fx", "experiment=a", *extra)
    assert out.returncode == 0, out.stderr
    (run_dir,) = [p.parent for p in (stash.root / "outputs").rglob("run.json")]
    return run_dir


def one_sweep(stash) -> Path:
    out = stash.run("-m", "tool=fx", "experiment=a,crash")
    assert out.returncode == 1
    (sweep,) = (stash.root / "multirun").iterdir()
    return sweep


def tamper(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def snapshot_of(folder: Path) -> set:
    return {p for p in folder.rglob("*") if ".git" not in p.parts}


def refused(stash, *args, outside: Path):
    before_stash, before_outside = snapshot_of(stash.root), snapshot_of(outside)
    out = stash.run(*args)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    assert snapshot_of(outside) == before_outside  # nothing written outside the stash
    assert not [p for p in snapshot_of(stash.root) - before_stash if p.name == "run.json"]  # nothing ran
    return out.stderr


@pytest.mark.parametrize("field,value", [
    ("tool_commit", "--upload-pack=touch /tmp/es-pwned"),
    ("tool_commit", "HEAD"),
    ("stash_commit", "--output=/tmp/es-pwned"),
    ("tool_pinned_commit", "-c core.pager=touch"),
])
def test_option_like_commits_never_reach_git(stash, tmp_path, field, value):
    run_dir = one_run(stash)
    tamper(run_dir / "run.json", lambda d: d.update({field: value}))
    err = refused(stash, "reproduce", str(run_dir), outside=tmp_path)
    assert f"field '{field}'" in err and "40 hex" in err
    assert not Path("/tmp/es-pwned").exists()


@pytest.mark.parametrize("field,value,needle", [
    ("experiment_file", "configs/fx/../../../../escape.yaml", "experiment_file"),
    ("experiment_file", "/etc/passwd", "experiment_file"),
    ("experiment", "../../../../escape", "experiment"),
    ("tool", "../fx", "tool"),
    ("tool_diff", "../../../../../etc/passwd", "tool_diff"),
])
def test_escaping_paths_in_run_json(stash, tmp_path, field, value, needle):
    run_dir = one_run(stash)
    tamper(run_dir / "run.json", lambda d: d.update({field: value}))
    err = refused(stash, "reproduce", str(run_dir), outside=tmp_path)
    assert f"field '{needle}'" in err and "run.json" in err


def test_a_tool_diff_that_is_a_link_out_of_the_run_dir(stash, tmp_path):
    (stash.tool / "VERSION").write_text("dirty\n")
    run_dir = one_run(stash)
    secret = tmp_path / "secret.diff"
    secret.write_text("not yours\n")
    (run_dir / "tool.diff").unlink()
    (run_dir / "tool.diff").symlink_to(secret)
    err = refused(stash, "reproduce", str(run_dir), outside=tmp_path)
    assert "tool.diff" in err


@pytest.mark.parametrize("change,needle", [
    (lambda d: d.update(schema="1"), "field 'schema'"),
    (lambda d: d.update(overrides="value=5"), "field 'overrides'"),
    (lambda d: d.update(status="exploded"), "field 'status'"),
    (lambda d: d.pop("tool"), "field 'tool': missing"),
    (lambda d: d.update(env=[]), "field 'env'"),
    (lambda d: d.update(sweep={"id": "x", "num": "../1"}), "field 'sweep.num'"),
])
def test_wrong_shapes_of_run_json(stash, tmp_path, change, needle):
    run_dir = one_run(stash)
    tamper(run_dir / "run.json", change)
    assert needle in refused(stash, "reproduce", str(run_dir), outside=tmp_path)


@pytest.mark.parametrize("change,message", [
    (lambda d: d["overrides"].append("value=1\x00"),
     "field 'overrides[0]': a NUL character in 'value=1\\x00': no process can be given it."),
    (lambda d: d["overrides"].append("val\nue=1"), "field 'overrides[0]': a control character in the key of 'val\\nue=1'."),
    (lambda d: d["command"].append("value=1\x00"), "a NUL character in 'value=1\\x00': no process can be given it."),
    (lambda d: d["env"].update(kind="python", executable="/usr/bin/python3\x00"),
     "field 'env.executable': a NUL character in '/usr/bin/python3\\x00': no process can be given it."),
])
def test_a_control_character_in_a_recorded_argument_is_refused_before_anything(stash, tmp_path, change, message):
    run_dir = one_run(stash)
    tamper(run_dir / "run.json", change)
    before = snapshot_of(stash.root / "outputs")
    err = refused(stash, "reproduce", str(run_dir), outside=tmp_path)
    assert err.startswith(f"error: {run_dir / 'run.json'}: ") and message in err, err
    assert snapshot_of(stash.root / "outputs") == before  # no run dir made


def test_a_run_json_that_is_not_json(stash, tmp_path):
    run_dir = one_run(stash)
    (run_dir / "run.json").write_bytes(b"\xff\xfe{")
    assert "not valid JSON" in refused(stash, "reproduce", str(run_dir), outside=tmp_path)


@pytest.mark.parametrize("change,message", [
    (lambda d: d["jobs"][1].update(num="../../../x"),
     "field 'jobs[1].num': expected a whole number, got str '../../../x'."),
    (lambda d: d["jobs"][1].update(num=-1), "field 'jobs[1].num': expected 0 or more, got -1."),
    (lambda d: d["jobs"][1].update(experiment="../../../../x"),
     "field 'jobs[1].experiment': expected an experiment id like figure1/pca, got '../../../../x'."),
    (lambda d: d["jobs"][1].update(tool="../../x"),
     "field 'jobs[1].tool': expected a plain name (letters, digits, '_', '-', '.'), got '../../x'."),
    (lambda d: d["jobs"][1].update(launch_overrides="tool=fx"),
     "field 'jobs[1].launch_overrides': expected a list of strings, got str 'tool=fx'."),
    (lambda d: d.update(schema="2"), "field 'schema': expected a whole number, got str '2'."),
    (lambda d: d.pop("jobs"), "field 'jobs': missing or not a list."),
    (lambda d: d.update(backend="ray"), "field 'backend': Unknown backend 'ray' (known: local, slurm)"),
    (lambda d: d.update(launcher={"max_parallel": "many"}),
     "field 'launcher': hydra.launcher.max_parallel='many': expected a whole number (local backend)."),
    (lambda d: d.update(launcher={"shell": "rm -rf /"}),
     "field 'launcher': Unknown launcher option 'hydra.launcher.shell' recorded in sweep.json"),
    (lambda d: d["jobs"].append(dict(d["jobs"][0])), "field 'jobs': two jobs have the same num."),
    (lambda d: d["jobs"][1]["launch_overrides"].append("seed=1\x00"),
     "field 'jobs[1].launch_overrides[2]': a NUL character in 'seed=1\\x00': no process can be given it."),
    (lambda d: d["jobs"][1]["launch_overrides"].append("se\ted=1"),
     "field 'jobs[1].launch_overrides[2]': a control character in the key of 'se\\ted=1'."),
    (lambda d: d["jobs"][1]["overrides"].append("seed=\x00"),
     "field 'jobs[1].overrides[0]': a NUL character in 'seed=\\x00': no process can be given it."),
])
@pytest.mark.parametrize("command", ["rerun", "status"])
def test_tampered_sweep_json(stash, tmp_path, change, message, command):
    sweep = one_sweep(stash)
    tamper(sweep / "sweep.json", change)
    before = (sweep / "sweep.json").read_bytes()
    folders = sorted(p.name for p in sweep.iterdir())
    err = refused(stash, command, str(sweep), outside=tmp_path)
    assert err.startswith(f"error: {sweep / 'sweep.json'}: {message}"), err
    assert err.rstrip().endswith("The record is damaged."), err
    assert (sweep / "sweep.json").read_bytes() == before
    assert sorted(p.name for p in sweep.iterdir()) == folders  # no earlier attempt moved aside


def test_a_run_dir_of_a_sweep_that_is_a_link_elsewhere(stash, tmp_path):
    sweep = one_sweep(stash)
    elsewhere = tmp_path / "elsewhere"
    (sweep / "1_fx_crash").rename(elsewhere)
    (sweep / "1_fx_crash").symlink_to(elsewhere)
    err = refused(stash, "rerun", str(sweep), outside=tmp_path)
    assert "symbolic link" in err


def test_runs_skips_a_tampered_record_with_a_warning(stash):
    run_dir = one_run(stash)
    one_run_again = stash.run("tool=fx", "experiment=b")
    assert one_run_again.returncode == 0
    tamper(run_dir / "run.json", lambda d: d.update(tool_commit="--upload-pack=x"))
    out = stash.run("runs")
    assert out.returncode == 0
    assert out.stderr == (f"warning: skipped {run_dir.relative_to(stash.root)}/run.json: field 'tool_commit': "
                          "expected a full commit id (40 hex digits), got '--upload-pack=x'\n")
    assert "b" in out.stdout
    git(stash.root, "status")  # the stash is untouched and still a repository


def worktrees(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def patch_refused(stash, run_dir: Path, outside: Path, path: str, where: str) -> None:
    """reproduce refuses the run's tool.diff, naming it and the first path outside the tool; nothing is applied."""
    repo = stash.root if "folder" in where else stash.tool
    gitmodules = (stash.root / ".gitmodules").read_bytes()
    err = refused(stash, "reproduce", str(run_dir), outside=outside)
    assert err == (f"error: {run_dir / 'tool.diff'} changes {path!r}, outside {where}: a run saves only the tool's "
                   "own changes there, so the file was altered since. Nothing was applied.\n")
    assert (stash.root / ".gitmodules").read_bytes() == gitmodules
    assert len(worktrees(repo)) == 1 and not (stash.root / ".cache").exists()  # nothing was checked out


def new_file_patch(path: str) -> str:
    return f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"


@pytest.mark.parametrize("patch,path", [
    (new_file_patch("../escape.txt"), "../escape.txt"),
    (new_file_patch("/tmp/es-escape.txt"), "/tmp/es-escape.txt"),
    ("diff --git a/.git/config b/.git/config\n--- a/.git/config\n+++ b/.git/config\n@@ -1 +1,2 @@\n a\n+b\n",
     ".git/config"),
    # a rename whose source lies outside: only the patch read in reverse names it
    ("diff --git a/../.gitmodules b/VERSION2\nsimilarity index 100%\nrename from ../.gitmodules\n"
     "rename to VERSION2\n", "../.gitmodules"),
])
def test_a_tool_diff_that_leaves_the_submodule_is_refused(stash, tmp_path, patch, path):
    (stash.tool / "VERSION").write_text("dirty\n")
    run_dir = one_run(stash)
    (run_dir / "tool.diff").write_text((run_dir / "tool.diff").read_text() + patch)
    patch_refused(stash, run_dir, tmp_path, path, "the tool's repository")
    assert not Path("/tmp/es-escape.txt").exists()


@pytest.mark.parametrize("change,path", [
    (lambda root: (root / ".gitmodules").write_text("[submodule \"x\"]\n\turl = --upload-pack=touch\n"),
     ".gitmodules"),
    (lambda root: git(root, "mv", "configs/meta.yaml", "tools/local/meta.yaml"), "configs/meta.yaml"),
    (lambda root: (root / "tools/localx.txt").write_text("next to the folder\n"), "tools/localx.txt"),
    (lambda root: (root / "tools/local/more.txt").write_text("inside the folder\n"), None),  # the control
])
def test_a_tool_diff_of_an_in_tree_tool_stays_in_its_folder(stash, tmp_path, change, path):
    from conftest import FIXTURE_CONFIG, FIXTURE_TOOL

    stash.write("tools/local/tool.py", FIXTURE_TOOL)
    stash.write("tools/local/conf/config.yaml", FIXTURE_CONFIG)
    stash.write("configs/local/experiment/a.yaml", "# @package _global_\ndefaults:\n  - /config\n  - _self_\n")
    meta = stash.root / "configs/meta.yaml"
    meta.write_text(meta.read_text() + "  local:\n    path: tools/local\n    entrypoint: tool.py\n    env: current\n")
    stash.commit("an in-tree tool")
    stash.write("tools/local/VERSION", "dirty\n")
    out = stash.run("tool=local", "experiment=a")
    assert out.returncode == 0, out.stderr
    (run_dir,) = [p.parent for p in (stash.root / "outputs").rglob("run.json")]
    patch = run_dir / "tool.diff"
    assert patch.read_text().startswith("diff --git a/tools/local/VERSION")  # what the run saved: its folder only
    (stash.root / "tools/local/VERSION").unlink()

    change(stash.root)  # a patch of the stash: beyond the tool's folder, but for the control
    git(stash.root, "add", "-A")
    staged = subprocess.run(["git", "diff", "--cached", "-M", "--binary", "HEAD"], cwd=stash.root,
                            capture_output=True, check=True).stdout
    patch.write_bytes(patch.read_bytes() + staged)
    git(stash.root, "reset", "-q", "--hard")
    if path is None:
        out = stash.run("reproduce", str(run_dir))
        assert out.returncode == 0, out.stderr
        (repro,) = [r for r in stash.runs() if r.get("reproduces")]
        assert repro["tool_dirty"] and (stash.root / repro["run_dir"] / "tool.diff").read_bytes() == patch.read_bytes()
    else:
        patch_refused(stash, run_dir, tmp_path, path, "the tool's folder tools/local/")

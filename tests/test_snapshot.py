"""`snapshot <tool> <experiment> --tag T [--commit]`: a fully resolved, runnable, committed and tagged config."""

from __future__ import annotations

import json
import re

import yaml

from conftest import experiment, git

INTERPOLATED = experiment("value: 4\nlabel: run-${value}\nnested:\n  twice: ${value}\n")


def test_snapshot_commit_creates_commit_and_tag_and_resolves_everything(stash):
    stash.write("configs/fx/experiment/interp.yaml", INTERPOLATED)
    stash.commit("an experiment with interpolations")
    stash.write("notes.txt", "staged but not part of the snapshot\n")
    git(stash.root, "add", "notes.txt")
    before = git(stash.root, "rev-parse", "HEAD")

    out = stash.run("snapshot", "fx", "interp", "--tag", "paper", "--commit")
    assert out.returncode == 0, out.stderr
    path = stash.root / "configs/fx/snapshots/paper/interp.yaml"
    text = path.read_text()
    assert "${" not in text
    tool_commit = git(stash.tool, "rev-parse", "HEAD")
    assert re.search(rf"^# tool_commit: {tool_commit}$", text, re.M)
    assert re.search(r"^# created_at: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", text, re.M)
    config = yaml.safe_load(text)
    assert config["label"] == "run-4" and config["nested"] == {"twice": 4} and "defaults" not in config

    head = git(stash.root, "rev-parse", "HEAD")
    assert head != before and git(stash.root, "rev-parse", "HEAD~1") == before
    assert git(stash.root, "rev-parse", "snapshot/paper^{commit}") == head
    assert git(stash.root, "cat-file", "-t", "snapshot/paper") == "tag"  # annotated
    assert git(stash.root, "show", "--name-only", "--format=", "HEAD").splitlines() == ["configs/fx/snapshots/paper/interp.yaml"]
    assert "A  notes.txt" in git(stash.root, "status", "--porcelain")  # the user's staged file stays staged

    # the snapshot runs like an experiment, and the experiment can change without changing it
    stash.write("configs/fx/experiment/interp.yaml", experiment("value: 99\nlabel: other\nnested:\n  twice: 0\n"))
    out = stash.run("tool=fx", "experiment=snapshots/paper/interp")
    assert out.returncode == 0, out.stderr
    record = stash.runs()[-1]
    assert record["experiment"] == "snapshots/paper/interp"
    assert record["experiment_file"] == "configs/fx/snapshots/paper/interp.yaml"
    seen = json.loads((stash.root / record["run_dir"] / "seen.json").read_text())
    assert seen["cfg"]["label"] == "run-4" and seen["cfg"]["value"] == 4


def test_commit_pins_the_checked_out_tool(stash):
    (stash.tool / "VERSION").write_text("v2\n")
    git(stash.tool, "commit", "-qam", "v2")
    v2 = git(stash.tool, "rev-parse", "HEAD")
    out = stash.run("snapshot", "fx", "a", "--tag", "t1", "--commit")
    assert out.returncode == 0, out.stderr
    assert "pins" in out.stderr  # the moved checkout is named
    assert git(stash.root, "ls-tree", "HEAD", "tools/fx").split()[2] == v2
    assert f"# tool_commit: {v2}" in (stash.root / "configs/fx/snapshots/t1/a.yaml").read_text()
    assert set(git(stash.root, "show", "--name-only", "--format=", "HEAD").splitlines()) == {
        "configs/fx/snapshots/t1/a.yaml", "tools/fx"}


def test_an_existing_tag_is_refused_unless_force(stash):
    assert stash.run("snapshot", "fx", "a", "--tag", "t", "--commit").returncode == 0
    first = git(stash.root, "rev-parse", "snapshot/t^{commit}")
    out = stash.run("snapshot", "fx", "b", "--tag", "t", "--commit")
    assert out.returncode == 2 and "snapshot/t exists" in out.stderr and "--force" in out.stderr
    assert not (stash.root / "configs/fx/snapshots/t/b.yaml").exists()
    out = stash.run("snapshot", "fx", "a", "--tag", "t")  # the file exists too
    assert out.returncode == 2 and "--force" in out.stderr

    out = stash.run("snapshot", "fx", "b", "--tag", "t", "--commit", "--force")
    assert out.returncode == 0, out.stderr
    assert git(stash.root, "rev-parse", "snapshot/t^{commit}") != first
    assert (stash.root / "configs/fx/snapshots/t/b.yaml").is_file()


def test_a_dirty_tool_is_refused_unless_allow_dirty(stash):
    (stash.tool / "VERSION").write_text("uncommitted\n")
    out = stash.run("snapshot", "fx", "a", "--tag", "d")
    assert out.returncode == 2 and "uncommitted" in out.stderr and "--allow-dirty" in out.stderr
    assert not (stash.root / "configs/fx/snapshots").exists()
    out = stash.run("snapshot", "fx", "a", "--tag", "d", "--allow-dirty")
    assert out.returncode == 0, out.stderr
    assert "# tool_dirty: true" in (stash.root / "configs/fx/snapshots/d/a.yaml").read_text()


def test_overrides_are_frozen_and_subfolder_ids_work(stash):
    out = stash.run("snapshot", "fx", "fig1/x", "value=7", "+note=frozen", "--tag", "v1.0")
    assert out.returncode == 0, out.stderr
    text = (stash.root / "configs/fx/snapshots/v1.0/fig1/x.yaml").read_text()
    assert "# overrides: value=7 +note=frozen" in text
    assert yaml.safe_load(text)["value"] == 7 and yaml.safe_load(text)["note"] == "frozen"
    assert stash.run("tool=fx", "experiment=snapshots/v1.0/fig1/x").returncode == 0


def test_bad_snapshot_input(stash):
    for args, message in [
        (("fx", "nope", "--tag", "t"), "Unknown experiment 'nope'"),
        (("nope", "a", "--tag", "t"), "Unknown tool 'nope'"),
        (("fx", "a", "--tag", "a b"), "--tag 'a b'"),
        (("fx", "a", "--tag", "../up"), "--tag '../up'"),
        (("fx", "a", "no_such_key=1", "--tag", "t"), "could not compose"),
    ]:
        out = stash.run("snapshot", *args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)
        assert "Traceback (most recent call last)" not in out.stderr.split("could not compose")[0]
    assert not (stash.root / "configs/fx/snapshots").exists()
    out = stash.run("tool=fx", "experiment=snapshots/none/a")
    assert out.returncode == 2 and "Unknown snapshot" in out.stderr


def test_an_escaped_interpolation_is_refused(stash):
    stash.write("configs/fx/experiment/esc.yaml", experiment("label: \\${not_resolved}\n"))
    out = stash.run("snapshot", "fx", "esc", "--tag", "t")
    assert out.returncode == 2 and "${" in out.stderr
    assert not (stash.root / "configs/fx/snapshots/t/esc.yaml").exists()


def test_overrides_may_come_after_the_options(stash):
    out = stash.run("snapshot", "fx", "a", "--tag", "t2", "--commit", "value=3")
    assert out.returncode == 0, out.stderr
    text = (stash.root / "configs/fx/snapshots/t2/a.yaml").read_text()
    assert "# overrides: value=3" in text and "value: 3" in text

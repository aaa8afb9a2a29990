"""`init`: from an empty folder to a first run and a sweep of one's own tool, by the command line alone; an existing
stash is never touched."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from conftest import Stash, git, make_tool_repo
from experimentstash.commands.init import META_TEMPLATE
from experimentstash import registry


def test_init_add_tool_commit_then_a_run_and_a_sweep(tmp_path):
    tool_repo = make_tool_repo(tmp_path / "mytool")
    mine = Stash(tmp_path / "mystash", tool_repo)
    out = mine.run("init", "mystash", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "experimentstash add-tool NAME URL_OR_PATH" in out.stderr
    assert "git add -A && git commit" in out.stderr
    assert "experimentstash tool=NAME experiment=example" in out.stderr
    assert (mine.root / ".git").is_dir()
    assert (mine.root / ".gitignore").read_text().splitlines() == [
        "outputs/", "multirun/", ".cache/", "configs/meta.local.yaml"]

    out = mine.run("add-tool", "mytool", "../mytool")
    assert out.returncode == 0, out.stderr
    assert (f"warning: .gitmodules holds the local path {tool_repo} as the URL of tools/mytool, which collaborators "
            "cannot clone.") in out.stderr
    assert "git submodule set-url -- tools/mytool URL && git commit" in out.stderr
    assert "git add configs/meta.yaml configs/mytool .gitignore && git commit" in out.stderr
    git(mine.root, "add", "-A")
    git(mine.root, "commit", "-qm", "Add tool mytool")

    out = mine.run("tool=mytool", "experiment=example")
    assert out.returncode == 0, out.stderr
    (record,) = mine.runs()
    assert (record["status"], record["stash_dirty"], record["tool_dirty"]) == ("succeeded", False, False)

    out = mine.run("-m", "tool=mytool", "experiment=example", "seed=1,2")
    assert out.returncode == 0, out.stderr
    (sweep,) = (mine.root / "multirun").iterdir()
    jobs = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert [(j["status"], j["overrides"]) for j in jobs] == [("succeeded", ["seed=1"]), ("succeeded", ["seed=2"])]
    assert git(mine.root, "status", "--porcelain") == ""  # runs wrote only what the stash ignores


def stash_files(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


@pytest.mark.parametrize("where,given", [("root", None), ("root", "."), ("configs", None), ("root", "sub")])
def test_init_refuses_a_stash_and_a_folder_inside_one(stash, where, given):
    before = (stash_files(stash.root), git(stash.root, "status", "--porcelain", "--ignored"))
    cwd = stash.root if where == "root" else stash.root / "configs"
    out = stash.run("init", *([given] if given else []), cwd=cwd)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    target = stash.root / (given or "") if where == "root" else stash.root / "configs"
    which = "is a stash already" if target.resolve() == stash.root else f"is inside the stash {stash.root}"
    assert out.stderr == (f"error: {target.resolve()} {which} ({stash.root}/configs/meta.yaml exists): nothing was "
                          "changed. Give a folder outside any stash to make a new one.\n")
    assert (stash_files(stash.root), git(stash.root, "status", "--porcelain", "--ignored")) == before
    assert not (stash.root / "sub").exists()


def test_init_in_a_git_repository_keeps_its_history_and_its_ignore_lines(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.pyc\noutputs/")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    out = Stash(repo, repo).run("init")
    assert out.returncode == 0, out.stderr
    assert "made a stash in .: configs/meta.yaml, .gitignore" in out.stderr  # none was made
    assert git(repo, "log", "--format=%s") == "first"
    assert (repo / ".gitignore").read_text() == "*.pyc\noutputs/\nmultirun/\n.cache/\nconfigs/meta.local.yaml\n"


def test_outside_a_stash_the_error_says_how_to_make_one(tmp_path):
    out = Stash(tmp_path, tmp_path).run("list")
    assert out.returncode == 2
    assert "run inside a stash or set EXPERIMENTSTASH_ROOT to one; `experimentstash init [DIR]` makes a new stash" \
        in out.stderr


def test_the_new_meta_yaml_shows_every_key_of_a_tool_in_an_entry_that_validates(tmp_path):
    lines = META_TEMPLATE.splitlines()
    start = lines.index("#   NAME:")
    block = "\n".join(line[1:] for line in lines[start:lines.index("#", start)])
    entry = yaml.safe_load(textwrap.dedent(block))
    assert set(entry["NAME"]) == set(registry.TOOL_KEYS)
    tool = registry.Stash.from_raw(tmp_path, {"tools": entry}).tool("NAME")
    assert (tool.rel_path, tool.tracker, tool.result) == ("tools/NAME", "wandb", "metrics.json")

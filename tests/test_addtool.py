"""`add-tool <name> <url>`: a real submodule, meta.yaml edited as text, nothing half-added on failure."""

from __future__ import annotations


import pytest
import yaml

from conftest import experiment, git, make_tool_repo
from experimentstash.registering import append_block


def stash_state(stash) -> dict:
    """Everything add-tool may touch, to compare before and after a refused or failed add."""
    root = stash.root
    modules = root / ".git" / "modules"
    return {
        "meta": (root / "configs/meta.yaml").read_bytes(),
        "gitmodules": (root / ".gitmodules").read_bytes(),
        "status": git(root, "status", "--porcelain", "--ignored"),
        "index": git(root, "ls-files", "-s"),
        "config": (root / ".git" / "config").read_bytes(),
        "modules": sorted(str(p.relative_to(modules)) for p in modules.rglob("*")
                          if p.is_dir() and (p / "HEAD").is_file() and (p / "objects").is_dir()),
        "tools": sorted(p.name for p in (root / "tools").iterdir()),
        "configs": sorted(str(p.relative_to(root)) for p in (root / "configs").rglob("*")),
    }


def test_add_tool_from_a_file_url_keeps_meta_comments(stash, tmp_path):
    repo = make_tool_repo(tmp_path / "other-repo")
    meta_before = (stash.root / "configs/meta.yaml").read_text()
    out = stash.run("add-tool", "other", f"file://{repo}", "--description", "another tool")
    assert out.returncode == 0, out.stderr
    meta = (stash.root / "configs/meta.yaml").read_text()
    assert meta.startswith(meta_before)  # comments and order untouched, the block appended
    assert "# tools of the test stash" in meta
    assert yaml.safe_load(meta)["tools"]["other"] == {
        "path": "tools/other", "entrypoint": "tool.py", "description": "another tool"}
    assert (stash.root / "tools/other/tool.py").is_file()
    assert (stash.root / "configs/other/experiment").is_dir()
    assert f"file://{repo}" in (stash.root / ".gitmodules").read_text()
    assert "A  tools/other" in git(stash.root, "status", "--porcelain")
    assert git(stash.root, "ls-files", "-s", "tools/other").startswith("160000 ")

    # the new tool runs like any other
    stash.write("configs/other/experiment/e.yaml", experiment("value: 5\n"))
    out = stash.run("tool=other", "experiment=e")
    assert out.returncode == 0, out.stderr
    assert stash.runs()[-1]["tool"] == "other"


def test_add_tool_from_a_local_path_with_entrypoint_and_copy_configs(stash, tmp_path):
    repo = make_tool_repo(tmp_path / "third")
    out = stash.run("add-tool", "third", str(repo), "--entrypoint", "tool.py", "--copy-configs")
    assert out.returncode == 0, out.stderr
    assert (stash.root / "configs/third/config.yaml").read_text() == (repo / "conf/config.yaml").read_text()
    assert "searched before configs/third/" in out.stderr
    assert yaml.safe_load((stash.root / "configs/meta.yaml").read_text())["tools"]["third"]["entrypoint"] == "tool.py"


def test_a_hard_coded_config_path_out_of_reach_is_warned_about(stash, tmp_path):
    repo = make_tool_repo(tmp_path / "far")
    tool = repo / "tool.py"
    tool.write_text(tool.read_text().replace('config_path="conf"', 'config_path="/opt/elsewhere/conf"'))
    git(repo, "commit", "-qam", "hard-coded config path")
    out = stash.run("add-tool", "far", str(repo))
    assert out.returncode == 0, out.stderr
    assert "hard-codes config_path='/opt/elsewhere/conf'" in out.stderr


NAME_RULE = ("is not allowed: use letters, digits, '_', '-' and '.', starting with a letter or digit, without "
             "path separators or spaces (it names tools/<name> and configs/<name>).")


@pytest.mark.parametrize("name", ["a b", "a/b", "../x", "-x", ".x", "tools/x"])
def test_invalid_names_add_nothing(stash, tmp_path, name):
    repo = make_tool_repo(tmp_path / "repo")
    before = stash_state(stash)
    out = stash.run("add-tool", "--", name, str(repo))  # `--`: a name like -x reaches add-tool, not argparse
    assert out.returncode == 2, out.stderr
    assert out.stderr == f"error: Tool name '{name}' {NAME_RULE}\n"
    assert stash_state(stash) == before


def test_a_plain_name_is_added(stash, tmp_path):
    """The control of the test above: the same command with a valid name adds the tool."""
    repo = make_tool_repo(tmp_path / "repo")
    before = stash_state(stash)
    out = stash.run("add-tool", "--", "tools", str(repo))
    assert out.returncode == 0, out.stderr
    assert stash_state(stash) != before and (stash.root / "tools" / "tools" / "tool.py").is_file()


def test_a_registered_name_is_refused(stash, tmp_path):
    repo = make_tool_repo(tmp_path / "repo")
    before = stash_state(stash)
    out = stash.run("add-tool", "fx", str(repo))
    assert out.returncode == 2 and "registered already" in out.stderr
    assert stash_state(stash) == before


def test_an_uncloneable_url_leaves_nothing_half_added(stash, tmp_path):
    before = stash_state(stash)
    out = stash.run("add-tool", "ghost", f"file://{tmp_path}/no-such-repo")
    assert out.returncode == 2, out.stderr
    assert "cannot clone" in out.stderr and "Nothing was added" in out.stderr
    assert "Traceback" not in out.stderr
    assert stash_state(stash) == before
    assert not (stash.root / ".git/modules/tools/ghost").exists()
    assert "ghost" not in (stash.root / ".gitmodules").read_text()


def test_a_failure_after_the_clone_undoes_the_clone(stash, tmp_path):
    repo = make_tool_repo(tmp_path / "repo")
    before = stash_state(stash)
    out = stash.run("add-tool", "late", str(repo), "--entrypoint", "missing.py")
    assert out.returncode == 2 and "missing.py" in out.stderr and "Nothing was added" in out.stderr
    assert stash_state(stash) == before
    assert not (stash.root / "tools/late").exists()
    assert not (stash.root / ".git/modules/tools/late").exists()
    assert not (stash.root / "configs/late").exists()
    # and the same name can be added properly afterwards
    out = stash.run("add-tool", "late", str(repo))
    assert out.returncode == 0, out.stderr


def test_an_ambiguous_entrypoint_asks_for_one(stash, tmp_path):
    repo = make_tool_repo(tmp_path / "two")
    (repo / "other.py").write_text((repo / "tool.py").read_text())
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "two apps")
    before = stash_state(stash)
    out = stash.run("add-tool", "two", str(repo))
    assert out.returncode == 2 and "--entrypoint" in out.stderr and "other.py" in out.stderr
    assert stash_state(stash) == before


def test_append_block_keeps_text_and_matches_layout():
    spaced = "# head\ntools:\n    a:\n        path: tools/a\n        entrypoint: a.py\n\n    # b is off\n"
    out = append_block(spaced, "c", {"path": "tools/c", "entrypoint": "-m c.main"})
    assert out.startswith(spaced)
    assert out[len(spaced):] == "\n    c:\n        path: tools/c\n        entrypoint: -m c.main\n"
    assert yaml.safe_load(out)["tools"]["c"] == {"path": "tools/c", "entrypoint": "-m c.main"}

    empty = "tools: {}  # nothing yet\n"
    out = append_block(empty, "c", {"path": "tools/c", "entrypoint": "c.py"})
    assert out == "tools:  # nothing yet\n  c:\n    path: tools/c\n    entrypoint: c.py\n"

    assert append_block("# only a comment", "c", {"path": "tools/c", "entrypoint": "c.py"}) == \
        "# only a comment\ntools:\n  c:\n    path: tools/c\n    entrypoint: c.py\n"


def test_the_first_experiment_add_tool_writes_runs_as_it_is(stash, tmp_path):
    with_config = make_tool_repo(tmp_path / "with-config")
    bare = tmp_path / "bare"
    bare.mkdir()
    git(bare, "init", "-q", "-b", "main")
    (bare / "main.py").write_text(
        "import hydra\nfrom omegaconf import OmegaConf\n\n\n"
        "@hydra.main(version_base='1.3', config_path=None, config_name=None)\n"
        "def main(cfg):\n    print('bare tool got', OmegaConf.to_yaml(cfg))\n\n\n"
        "if __name__ == '__main__':\n    main()\n")
    git(bare, "add", "-A")
    git(bare, "commit", "-qm", "a tool without configs")
    for name, repo in (("withconf", with_config), ("bare", bare)):
        out = stash.run("add-tool", name, str(repo))
        assert out.returncode == 0, out.stderr
        assert "result:" in out.stderr and "experiment=example" in out.stderr
        run = stash.run(f"tool={name}", "experiment=example")
        assert run.returncode == 0, run.stderr

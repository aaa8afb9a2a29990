"""`check tool=X experiment=Y`: composes in the tool's environment without running, names shadowed configs."""

from __future__ import annotations

import yaml

from conftest import experiment, git

PLUGIN = '''
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class FxpkgSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="fxpkg", path="pkg://fxpkg.configs")
'''


def add_packaged_configs(stash) -> None:
    """Give the fixture tool packaged configs on its search path, the way manylatents has them."""
    tool = stash.tool
    (tool / "hydra_plugins" / "fxpkg_searchpath").mkdir(parents=True)
    (tool / "hydra_plugins" / "fxpkg_searchpath" / "__init__.py").write_text("")
    (tool / "hydra_plugins" / "fxpkg_searchpath" / "fxpkg_searchpath.py").write_text(PLUGIN)
    (tool / "fxpkg" / "configs" / "experiment").mkdir(parents=True)
    (tool / "fxpkg" / "__init__.py").write_text("")
    (tool / "fxpkg" / "configs" / "__init__.py").write_text("")
    (tool / "fxpkg" / "configs" / "experiment" / "a.yaml").write_text(experiment("value: 777\n"))
    git(tool, "add", "-A")
    git(tool, "commit", "-qm", "packaged configs")


def test_check_composes_and_finds_a_config_shadowed_by_a_packaged_one(stash):
    add_packaged_configs(stash)
    tool_status = git(stash.tool, "status", "--porcelain", "--ignored")
    out = stash.run("check", "tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    composed = yaml.safe_load(out.stdout)
    assert composed["value"] == 777  # Hydra really took the packaged file, as the warning says
    assert "configs/fx/experiment/a.yaml is shadowed by experiment/a.yaml in pkg://fxpkg.configs" in out.stderr
    assert "composes" in out.stderr
    # nothing ran and nothing was written
    assert not (stash.root / "outputs").exists()
    assert git(stash.tool, "status", "--porcelain", "--ignored") == tool_status

    out = stash.run("check", "tool=fx", "experiment=b", "value=5")
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["value"] == 5
    assert "shadowed by experiment/b.yaml" not in out.stderr
    assert "experiment/a.yaml is shadowed" in out.stderr  # a stash-wide check: every shadowed file is named


def test_check_without_collisions_warns_nothing(stash):
    out = stash.run("check", "tool=fx", "experiment=fig1/x")
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["value"] == 10
    assert "warning" not in out.stderr


def test_check_names_a_stash_file_shadowed_by_the_tools_own_config_folder(stash):
    stash.write("configs/fx/config.yaml", "value: 5\nseed: 1\n")
    out = stash.run("check", "tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    assert "configs/fx/config.yaml is shadowed by config.yaml in file://" in out.stderr
    assert "(main)" in out.stderr


def test_check_reports_a_config_that_does_not_compose(stash):
    out = stash.run("check", "tool=fx", "experiment=a", "no_such_key=1")
    assert out.returncode == 1
    assert "does not compose" in out.stderr and "no_such_key" in out.stderr


def test_check_bad_input(stash):
    for args, message in [
        (("tool=nope", "experiment=a"), "Unknown tool 'nope'"),
        (("tool=fx",), "No experiment given"),
        (("tool=fx", "experiment=zzz"), "Unknown experiment 'zzz'"),
        (("experiment=a",), "No tool given"),
    ]:
        out = stash.run("check", *args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr

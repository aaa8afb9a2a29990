"""The command line as a whole: help, the subcommands listed once, and how the package is put together."""

import ast
from pathlib import Path

import pytest

from conftest import REPO, Stash, git, make_tool_repo

PACKAGE = REPO / "experimentstash"


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_lists_the_hydra_form_the_options_and_every_command(stash, flag):
    from experimentstash.cli import COMMANDS

    out = stash.run(flag)
    assert out.returncode == 0, out.stderr
    assert "tool=<tool> experiment=<id>" in out.stdout and "stash.pin" in out.stdout
    assert "hydra/launcher=stash_slurm" in out.stdout and "max_parallel" in out.stdout
    for name in COMMANDS:
        assert f"  {name} " in out.stdout


def test_every_stash_option_is_in_help_and_in_the_launchers_config(stash):
    """The stash.* options have one declaration: --help and the config Hydra composes both come from it."""
    from dataclasses import fields

    import yaml

    from experimentstash.stash_options import StashOptions

    out = stash.run("--help")
    assert out.returncode == 0, out.stderr
    for option in fields(StashOptions):
        line = f"  stash.{option.name}={option.metadata['usage']}"
        (shown,) = [text for text in out.stdout.splitlines() if text.startswith(line)]
        assert option.metadata["help"] in shown
    composed = stash.run("--cfg", "job")
    assert composed.returncode == 0, composed.stderr
    assert yaml.safe_load(composed.stdout)["stash"] == {f.name: f.default for f in fields(StashOptions)}


def test_help_of_one_command(stash):
    for args in (["runs", "--help"], ["help", "runs"]):
        out = stash.run(*args)
        assert out.returncode == 0 and "--fingerprint" in out.stdout and "--last" in out.stdout


def test_no_arguments_lists_the_tools(stash):
    out = stash.run()
    assert out.returncode == 0 and "fx" in out.stdout and "--help" in out.stdout


def test_list_says_what_a_tool_needs_before_it_runs_and_the_command_that_gives_it(stash, tmp_path):
    uv_tool = make_tool_repo(tmp_path / "uvtool")
    (uv_tool / "uv.lock").write_text("version = 1\n")
    git(uv_tool, "add", "uv.lock")
    git(uv_tool, "commit", "-qm", "lock")
    assert stash.run("add-tool", "uvtool", str(uv_tool)).returncode == 0
    stash.commit("Add tool uvtool")
    out = stash.run("list")
    assert out.returncode == 0, out.stderr
    assert ("Tool 'uvtool': its uv environment is not built: `cd tools/uvtool && uv sync --frozen` builds it (or the "
            "first run does, into .cache/venvs/).") in out.stdout
    assert "Tool 'fx'" not in out.stdout  # ready

    (stash.root / ".cache/venvs/uvtool").mkdir(parents=True)  # where a first run builds it
    stash.write("configs/meta.local.yaml", "tools:\n  fx:\n    env: {python: envs/fx/bin/python}\n")
    out = stash.run("list")
    assert "uvtool" in out.stdout and "Tool 'uvtool'" not in out.stdout
    assert (f"Tool 'fx': interpreter {stash.root}/envs/fx/bin/python (env.python) does not exist: fix the path in "
            "configs/meta.yaml or configs/meta.local.yaml.") in out.stdout

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(stash.root), str(clone))  # submodules not fetched, as on a fresh clone
    out = stash.run("list", cwd=clone)
    assert out.returncode == 0, out.stderr
    assert "Tool 'fx': its submodule is not initialized: `git submodule update --init tools/fx` fetches it." \
        in out.stdout


def test_list_of_a_stash_without_tools_says_how_to_add_one(tmp_path):
    mine = Stash(tmp_path / "mine", tmp_path)
    assert mine.run("init", str(mine.root), cwd=tmp_path).returncode == 0
    out = mine.run("list")
    assert out.returncode == 0, out.stderr
    assert "No tools yet: experimentstash add-tool NAME URL_OR_PATH adds one." in out.stdout


def package_modules(package: Path) -> dict[str, Path]:
    """Every module of a package folder by its dotted name (a package by its own name, not `.__init__`)."""
    found = {}
    for path in package.rglob("*.py"):
        rel = path.relative_to(package.parent).with_suffix("")
        found[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return found


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The modules of `known` that a module imports anywhere: at module level, in functions and classes, by
    relative imports of any depth, `from . import x` of a submodule x, and `importlib.import_module("...")` of a
    name given as text."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()

    def add(name: str) -> None:
        while name and name not in known:  # `from .records import Status`: the module is records
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            add(node.args[0].value)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = package_modules(package)
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as the modules along it (the first again at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, trail: list[str]) -> list[str] | None:
        if state.get(name) == 1:
            return trail[trail.index(name):] + [name]
        if state.get(name) == 2:
            return None
        state[name] = 1
        for other in sorted(graph.get(name, ())):
            cycle = visit(other, trail + [name])
            if cycle:
                return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        cycle = visit(name, [])
        if cycle:
            return cycle
    return None


def test_no_import_cycle_in_the_package():
    cycle = import_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "pkg"


@pytest.mark.parametrize("files,cycle", [
    ({"pkg/a.py": "def f():\n    from .b import g\n", "pkg/b.py": "from . import a\n"},
     ["pkg.a", "pkg.b", "pkg.a"]),
    ({"pkg/a.py": "import pkg.sub.c\n",
      "pkg/sub/c.py": "class C:\n    def m(self):\n        from ..a import x\n"},
     ["pkg.a", "pkg.sub.c", "pkg.a"]),
    ({"pkg/a.py": "import importlib\ndef f():\n    return importlib.import_module('pkg.sub')\n",
      "pkg/sub/__init__.py": "from .. import a\n"},
     ["pkg.a", "pkg.sub", "pkg.a"]),
    ({"pkg/__init__.py": "from .a import x\n", "pkg/a.py": "from pkg import y\n"},
     ["pkg", "pkg.a", "pkg"]),
])
def test_the_cycle_check_finds_cycles_at_every_level(tmp_path, files, cycle):
    package = write_package(tmp_path, files)
    assert import_cycle(import_graph(package)) == cycle


def test_the_cycle_check_passes_a_package_without_cycles(tmp_path):
    package = write_package(tmp_path, {
        "pkg/__init__.py": "", "pkg/a.py": "from . import b\nfrom .b import g\n",
        "pkg/b.py": "def g():\n    from . import c\n", "pkg/c.py": "import os\nimport importlib\n"})
    assert import_graph(package)["pkg.a"] == {"pkg.b"}
    assert import_cycle(import_graph(package)) is None


def layer(module: str) -> str:
    """The layer of a module of the package: commands, launch, views, backends, or library (the package's own
    modules: records, the stash and its pins, fingerprints, output helpers); cli and testing stand above them."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("commands", "launch", "views", "backends"):
        return parts[1]
    if module in ("experimentstash.cli", "experimentstash.__main__", "experimentstash.testing"):
        return "top"
    return "library"


# what each layer may import besides itself: every layer only the ones below it
BELOW = {
    "top": {"commands", "launch", "views", "backends", "library"},
    "commands": {"launch", "views", "backends", "library"},
    "launch": {"views", "backends", "library"},
    "views": {"library"},
    "backends": {"library"},
    "library": set(),
}


def layering_breaks(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module by one of a layer it must not reach: `a -> b` lines."""
    return [f"{name} -> {other}" for name, imported in sorted(graph.items()) for other in sorted(imported)
            if layer(other) != layer(name) and layer(other) not in BELOW[layer(name)]]


def test_each_layer_imports_only_the_layers_below_it():
    """Library code never imports a command, a view, the launch engine or a backend; views and backends import
    only the library; only the command line imports commands. The backends' registry (backends/__init__.py)
    is read by the library's stash for the names of this machine's launcher defaults."""
    graph = import_graph(PACKAGE)
    breaks = [b for b in layering_breaks(graph) if b != "experimentstash.registry -> experimentstash.backends"]
    assert breaks == []


def test_the_layering_check_finds_an_upward_import():
    graph = {"experimentstash.records": {"experimentstash.views.compare"},
             "experimentstash.views.compare": {"experimentstash.commands.compare"},
             "experimentstash.commands.compare": {"experimentstash.views.compare"}}
    assert layering_breaks(graph) == ["experimentstash.records -> experimentstash.views.compare",
                                      "experimentstash.views.compare -> experimentstash.commands.compare"]


def test_the_core_never_imports_a_backend():
    """Only the contract (base.py) and the built-ins' options; a backend is loaded by name from the registry."""
    graph = import_graph(PACKAGE)
    backends = {n for n in graph if n.startswith("experimentstash.backends.")} - {
        "experimentstash.backends.base", "experimentstash.backends.options"}
    for name, imported in graph.items():
        if not name.startswith("experimentstash.backends"):
            assert not imported & backends, f"{name} imports a backend by name"


@pytest.mark.parametrize("word", [
    "tool=demo", "experiment=figure1/pca", "experiment=2024", "stash.timeout=10", "stash.timeout=1.5",
    "stash.timeout=1e3", "stash.grace=0", "stash.reuse=true", "stash.reuse=False", "stash.objective=null",
    "stash.pin=strict", "value=-3", "value=+4", "lr=.5", "x=inf", "x=nan", "x=1_000", "x=01", "x=1.2.3",
    "+a.b=c", "++key=v1", "seed=", "opt@pkg=adam", "group/name=value", "path=a/b:c", "x=10%",
])
def test_plain_words_are_read_as_hydra_reads_them(word):
    """The shortcut that keeps Hydra out of a single run's start-up reads every plain word like Hydra's parser."""
    import math

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from experimentstash.launch.argv import is_plain, override_value

    assert is_plain(word)
    ours, hydras = override_value(word), OverridesParser.create().parse_override(word).value()
    assert type(ours) is type(hydras) and (ours == hydras or (isinstance(ours, float) and math.isnan(ours)))

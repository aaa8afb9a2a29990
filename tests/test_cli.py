"""The command line as a whole: help, the subcommands listed once, and how the package is put together."""

import ast
from pathlib import Path

import pytest

from conftest import REPO

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


def test_help_of_one_command(stash):
    for args in (["runs", "--help"], ["help", "runs"]):
        out = stash.run(*args)
        assert out.returncode == 0 and "--fingerprint" in out.stdout and "--last" in out.stdout


def test_no_arguments_lists_the_tools(stash):
    out = stash.run()
    assert out.returncode == 0 and "fx" in out.stdout and "--help" in out.stdout


def _imports(path: Path, module: str) -> tuple[set[str], set[str]]:
    """(modules of the package imported at module level, all modules of the package imported anywhere)."""
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    top, anywhere = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found = {n for n in names if n.startswith("experimentstash") and _exists(n)}
        anywhere |= found
        if node in tree.body:
            top |= found
    return top - {module}, anywhere - {module}


def _exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file() or name == "experimentstash"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found[name] = path
    return found


def test_no_import_cycle_in_the_package():
    modules = _modules()
    graph = {name: _imports(path, name)[0] for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(name, trail):
        if state.get(name) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(name):] + [name]))
        if state.get(name) == 2:
            return
        state[name] = 1
        for other in graph.get(name, ()):
            visit(other, trail + [name])
        state[name] = 2

    for name in graph:
        visit(name, [])


def test_the_core_never_imports_a_backend():
    backends = {n for n in _modules() if n.startswith("experimentstash.backends.")}
    for name, path in _modules().items():
        if name.startswith("experimentstash.backends"):
            continue
        assert not (_imports(path, name)[1] & backends), f"{name} imports a backend by name"


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

    from experimentstash.invocation import is_plain, override_value

    assert is_plain(word)
    ours, hydras = override_value(word), OverridesParser.create().parse_override(word).value()
    assert type(ours) is type(hydras) and (ours == hydras or (isinstance(ours, float) and math.isnan(ours)))

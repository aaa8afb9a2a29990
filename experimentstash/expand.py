"""Expand a multirun command line into one override list per job, the way Hydra's basic sweeper orders them.

Tool keys are expanded here too (Hydra never sees them), and glob() on `experiment` and `tool` matches the
stash's experiment files and registered tools.
"""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override
from hydra.errors import HydraException

from . import StashError
from .registry import Stash

GLOB_KEYS = ("tool", "experiment")


def _parse(parser: OverridesParser, word: str) -> Override:
    try:
        return parser.parse_override(word)
    except HydraException as err:
        raise StashError(f"Cannot parse override '{word}': {err}") from None


def _values(override: Override, word: str) -> list[str]:
    if not override.is_sweep_override():
        return [word]
    try:
        return [f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()]
    except HydraException as err:
        raise StashError(
            f"'{word}' is not a list of values the stash sweeper can run ({err}); "
            "interval() needs an optimizing sweeper such as hydra/sweeper=optuna."
        ) from None


def _glob_matches(stash: Stash, override: Override, combo: list[str], default_tool: str | None) -> list[str]:
    glob: Glob = override.value()
    if override.key_or_group == "tool":
        names = glob.filter(sorted(stash.tools))
        what = "registered tools"
    else:
        tools = [w.split("=", 1)[1] for w in combo if w.startswith("tool=")]
        tool = stash.tool(tools[-1] if tools else default_tool).name
        names = glob.filter(stash.experiments(tool))
        what = f"experiments of tool '{tool}'"
    if not names:
        raise StashError(f"'{override.input_line}' matches none of the {what}.")
    return [f"{override.key_or_group}={name}" for name in names]


def expand(stash: Stash, words: list[str], default_tool: str | None) -> list[list[str]]:
    parser = OverridesParser.create()
    # the tool comes first, so that a glob over experiments knows whose experiments to match
    words = sorted(words, key=lambda w: _parse(parser, w).key_or_group != "tool")
    combos: list[list[str]] = [[]]
    for word in words:
        override = _parse(parser, word)
        if isinstance(override.value(), Glob):
            if override.key_or_group not in GLOB_KEYS:
                raise StashError(f"'{word}': glob() works on tool and experiment only.")
            combos = [[*combo, m] for combo in combos for m in _glob_matches(stash, override, combo, default_tool)]
        else:
            combos = [[*combo, value] for combo in combos for value in _values(override, word)]
    return combos

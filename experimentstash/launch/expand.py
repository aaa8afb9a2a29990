"""Expand a multirun command line into one override list per job, the way Hydra's basic sweeper orders them.

Tool keys are expanded here too (Hydra never sees them), and glob() on `experiment` and `tool` matches the
stash's experiment files and registered tools, alone or in a list with plain names (`experiment=a,glob(fig1/*)`:
the union, in order, each once). Every other sweep expression is Hydra's: choice lists, range(), sort(),
shuffle() and tag() are expanded as Hydra expands them; interval() and a glob() on another key are refused.
"""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Glob, Override, QuotedString
from hydra.errors import HydraException

from .. import StashError
from ..registry import Stash
from .argv import unparsable
from .plan import hydra_value

GLOB_KEYS = ("tool", "experiment")


def _parse(parser: OverridesParser, word: str) -> Override:
    try:
        return parser.parse_override(word)
    except HydraException as err:
        raise unparsable(word, err) from None


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


def _names(stash: Stash, override: Override, combo: list[str], default_tool: str | None) -> tuple[list[str], str]:
    """(the names a glob() of this key matches among, what they are)."""
    if override.key_or_group == "tool":
        return sorted(stash.tools), "registered tools"
    tools = [w.split("=", 1)[1] for w in combo if w.startswith("tool=")]
    tool = stash.tool(tools[-1] if tools else default_tool).name
    return stash.experiments(tool), f"experiments of tool '{tool}'"


def _glob_matches(stash: Stash, override: Override, combo: list[str], default_tool: str | None) -> list[str]:
    """The words of a glob(), or of a list that holds globs and plain names: each name once, in the list's order."""
    value = override.value()
    parts = value.list if isinstance(value, ChoiceSweep) else [value]
    names, what = _names(stash, override, combo, default_tool)
    chosen: list[str] = []
    for part in parts:
        if isinstance(part, Glob):
            matched = part.filter(names)
            if not matched:
                raise StashError(f"'{override.input_line}': glob({','.join(part.include)}) matches none of the {what}.")
        else:
            matched = [_text(part)]
        chosen += [name for name in matched if name not in chosen]
    return [f"{override.key_or_group}={hydra_value(name)}" for name in chosen]


def _text(part) -> str:
    """A plain item of a list as the name it gives (`'a,b'` -> a,b; true -> true)."""
    if isinstance(part, QuotedString):
        return part.text
    return str(part).lower() if isinstance(part, bool) else str(part)


def _has_glob(override: Override) -> bool:
    value = override.value()
    return isinstance(value, Glob) or isinstance(value, ChoiceSweep) and any(isinstance(v, Glob) for v in value.list)


def expand(stash: Stash, words: list[str], default_tool: str | None) -> list[list[str]]:
    parser = OverridesParser.create()
    # the tool comes first, so that a glob over experiments knows whose experiments to match
    words = sorted(words, key=lambda w: _parse(parser, w).key_or_group != "tool")
    combos: list[list[str]] = [[]]
    for word in words:
        override = _parse(parser, word)
        if _has_glob(override):
            if override.key_or_group not in GLOB_KEYS:
                raise StashError(f"'{word}': glob() matches the names of tools (tool=) and experiments (experiment=), "
                                 "no other key's values.")
            combos = [[*combo, m] for combo in combos for m in _glob_matches(stash, override, combo, default_tool)]
        else:
            combos = [[*combo, value] for combo in combos for value in _values(override, word)]
    return combos

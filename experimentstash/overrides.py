"""Tool overrides as typed and as runs record them: their keys, their values by key, and the keys whose values
differ between runs. Read by the command line, compare, diff, the sweep table and the trackers alike (Hydra's
full grammar, which needs Hydra, is launch/argv.py's).
"""

from __future__ import annotations

import re
from collections import Counter


def is_override(word: str) -> bool:
    """`key=value`, `+key=value`, `++key=value`, `~key`, `~key=value`, `group@pkg=value`: a word Hydra reads as an
    override (whether its grammar accepts it is checked by parsing it)."""
    return "=" in word or word.startswith("~")


def override_key(word: str) -> str:
    """`+a.b=1` -> `a.b`, `~seed` -> `seed`, `hydra/launcher=x` -> `hydra/launcher`."""
    return word.lstrip("~+").split("=", 1)[0].split("@", 1)[0]


def override_values(words: list[str]) -> dict[str, str]:
    """Tool overrides by key, as typed: `seed=1`, `+a.b=2`, `++lr=0.1` give seed, a.b, lr; `~key` shows as `~`."""
    values = {}
    for word in words:
        value = word.split("=", 1)[1] if "=" in word else ""
        values[override_key(word)] = "~" + value if word.startswith("~") else value
    return values


def varying(parsed: list[dict[str, str]]) -> list[str]:
    """The override keys whose values differ between runs, or that some runs lack, in the order first seen."""
    seen: dict[str, set] = {}
    count: Counter = Counter()
    for values in parsed:
        for key, value in values.items():
            seen.setdefault(key, set()).add(value)
            count[key] += 1
    return [k for k, values in seen.items() if len(values) > 1 or count[k] < len(parsed)]


def replaced(words, texts: dict[str, str]) -> list[str]:
    """The words with each of `texts`' keys replaced by its value (longest first): a pipeline stage's overrides
    with its upstream run dirs moved to others, or standing for their fingerprints."""
    if not texts:
        return list(words)
    pattern = re.compile("|".join(map(re.escape, sorted(texts, key=len, reverse=True))))
    return [pattern.sub(lambda match: texts[match.group()], word) for word in words]

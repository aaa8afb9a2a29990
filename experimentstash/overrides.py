"""Tool overrides as runs record them: their values by key, and the keys whose values differ between runs.

Read by compare, diff, the sweep table and the trackers alike.
"""

from __future__ import annotations

from collections import Counter

from .invocation import override_key


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

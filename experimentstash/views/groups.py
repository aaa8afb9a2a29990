"""Which runs a view may pool into one number, and what tells apart the ones it may not.

A mean over a key (`--over seed`) pools runs that are one computation but for that key: their fingerprint parts are
equal except the tool overrides, and those are equal except the key's value. A different tool commit, uncommitted
change, config, experiment file, meta.yaml entry, interpreter or lock file is a different row. A run recorded
without fingerprint parts (an older record, a stash that is no git repository) pools only with runs equal in what
its record has: tool commit, uncommitted changes (yes or no), the experiment file's sha256 and the interpreter.
Runs of one computation (the same seed run twice, on this machine and on Slurm, or reproduced) are repeats: one
counts, the latest that succeeded.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime, timezone

from ..records import interpreter_identity, parse_time

# the parts that pool when the mean is over the experiment itself
POOLED_WITH = {"experiment": ("experiment", "experiment_files", "experiment_sha256")}
# how the `differs` column names a part; the tool's commit has a column of its own
LABELS = {"tool_changes": "changes", "configs": "configs", "experiment_files": "experiment files",
          "registration": "meta.yaml entry", "python": "python", "lock_sha256": "lock",
          "experiment_sha256": "experiment file", "interpreter": "python"}
IN_COMMIT_COLUMN = ("tool_commit", "tool_dirty")
NO_PARTS = "fingerprint"  # the context of a run recorded without fingerprint parts has this key
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def _text(value) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def code_version(record) -> tuple:
    """The tool and the code it ran: its commit (an in-tree tool's: its folder's tree) and uncommitted changes."""
    parts = record.fingerprint_parts
    if parts:
        return record.tool, _text(parts.get("tool_commit")), _text(parts.get("tool_changes"))
    return record.tool, record.tool_commit, "changes" if record.tool_dirty else None


@functools.lru_cache(maxsize=None)
def _interpreter(python, executable) -> list:
    return list(interpreter_identity({"python": python, "executable": executable}))


def context(record, over: str | None) -> dict:
    """What must be equal, besides the overrides, for runs to pool in a mean over `over`."""
    if record is None:  # a job that ended without a record of its own
        return {NO_PARTS: "no record"}
    left_out = ("overrides", *POOLED_WITH.get(over, ()))
    parts = record.fingerprint_parts
    if not parts:
        env = record.env or {}
        parts = {NO_PARTS: "none", "tool_commit": record.tool_commit, "tool_dirty": record.tool_dirty,
                 "experiment_sha256": record.experiment_sha256,
                 "interpreter": _interpreter(env.get("python"), env.get("executable"))}
    return {k: v for k, v in parts.items() if k not in left_out}


def context_key(ctx: dict) -> str:
    return json.dumps(ctx, sort_keys=True, default=str)


def latest_succeeded(items: list, entry_of=lambda item: item):
    """The run that counts among repeats of one computation: the latest (by its end) that succeeded, else the
    latest. `entry_of` gives an item's run (with status and record)."""
    def order(item):
        entry = entry_of(item)
        return entry.status.ok, parse_time(entry.record.ended_at if entry.record else None) or _OLDEST
    return max(items, key=order)


def differs(contexts: list[dict]) -> list[str]:
    """For rows that are apart only by their contexts: what tells each apart (`configs 1a2b3c4, python 3.11.7`).
    Runs recorded without fingerprint parts are compared among themselves, and say so beside runs with them."""
    kinds: dict[bool, list[dict]] = {}
    for ctx in contexts:
        kinds.setdefault(NO_PARTS in ctx, []).append(ctx)
    varying = {kind: [k for k in dict.fromkeys(k for ctx in alike for k in ctx)
                      if k not in (*IN_COMMIT_COLUMN, NO_PARTS)
                      and len({_text(ctx.get(k, "\0missing")) for ctx in alike}) > 1]
               for kind, alike in kinds.items()}
    cells = []
    for ctx in contexts:
        words = [f"{LABELS.get(k, k)} {_short(k, ctx[k])}" for k in varying[NO_PARTS in ctx] if k in ctx]
        if NO_PARTS in ctx and len(kinds) > 1:
            words.insert(0, "no fingerprint" if ctx[NO_PARTS] == "none" else ctx[NO_PARTS])
        cells.append(", ".join(words))
    return cells


def stands_for(reproduction, original) -> bool:
    """A reproduction counts as a repeat of the run it reproduces (reproduce takes the experiment and configs from
    that run's record) when it ran the same code, overrides and interpreter."""
    def what(record) -> tuple:
        env = record.env or {}
        return (record.tool, record.tool_commit, record.tool_dirty, record.overrides,
                _interpreter(env.get("python"), env.get("executable")))
    return what(reproduction) == what(original)


def _short(key: str, value) -> str:
    if value is None:
        return "none"
    if key == "interpreter":
        return f"{value[0]} ({value[1]})"
    if key == "python" and isinstance(value, str):
        return value
    text = _text(value)
    word = text.split()[-1] if text.split() else text
    if len(word) >= 7 and all(c in "0123456789abcdef" for c in word):
        return word[:7]  # a sha256 or a tree id
    return hashlib.sha256(text.encode()).hexdigest()[:7]

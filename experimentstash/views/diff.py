"""`experimentstash diff RUN_A RUN_B`: what differs between two runs.

The tool and its commit (with the commits between the two when the tool's checkout has both) and each side's
uncommitted changes; the experiment file each run recorded (a unified diff of the run dirs' experiment.yaml); the
tool's composed config (each run's .hydra/config.yaml, key by key); the overrides; the environment; every result
value with its delta; each history key (its history file, read whole). A list is shown by its length and its ends,
with the largest difference between the two. Run dirs are untrusted: records are validated, files are read only
inside their run dir.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path

import yaml

from .. import StashError
from ..gitcmd import GitError, git, ok
from ..output import plain
from ..overrides import override_values
from ..records import (EXPERIMENT_COPY, BadRecord, Missing, flatten, inside, interpreter_identity, open_regular,
                       read_limited, redact)
from ..registry import Loader
from ..results import is_number, load_history
from ..runs import Found
from .histories import list_text

MAX_FILE = 1 << 20  # a recorded file larger than this is not compared
MAX_COMMITS = 50  # commit subjects listed each way
CONFIG = ".hydra/config.yaml"
_MISSING = object()



def _run_file(run_dir: Path, rel: str) -> tuple[str | None, str | None]:
    """(the text of a file of the run dir, or None and why not)."""
    try:
        path = inside(run_dir, rel, "the file")
    except StashError:
        return None, "it leads outside the run dir"
    try:
        return read_limited(path, MAX_FILE).decode(errors="replace"), None
    except Missing:
        return None, "it is missing"
    except BadRecord as err:
        return None, f"it {err.reason}"


def _sha256(run_dir: Path, rel: str) -> str:
    try:
        with os.fdopen(open_regular(inside(run_dir, rel, "the file")), "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except Missing:
        return "(missing)"
    except (StashError, OSError):
        return "(unreadable, or outside the run dir)"


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def pairs(a: dict, b: dict, every: bool = False) -> list[dict]:
    """{key, a, b} for each key whose values differ (every key with `every`); a missing side is left out."""
    items = []
    for key in dict.fromkeys([*a, *b]):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        same = _same(va, vb) if va is not _MISSING and vb is not _MISSING else False
        if every or not same:
            item = {"key": key, "same": same}
            item.update({side: v for side, v in (("a", va), ("b", vb)) if v is not _MISSING})
            items.append(item)
    return items


def _commits_between(root: Path, tool: str, a: str, b: str) -> tuple[list[dict], str | None]:
    """The commits of the tool's checkout that one side has and the other has not, with their subjects."""
    from ..output import shown_path
    from ..registry import Stash

    try:
        folder = Stash.load(root).tools[tool].path
    except (StashError, KeyError):
        return [], f"{tool} is not registered in this stash"
    if not folder.is_dir():
        return [], f"{shown_path(root, folder)} is not checked out"
    missing = [c[:10] for c in (a, b) if not ok(folder, "cat-file", "-e", "--end-of-options", f"{c}^{{commit}}")]
    if missing:
        return [], f"{' and '.join(missing)} not in {shown_path(root, folder)} (fetch it to see the commits between)"
    commits = []
    try:
        for start, end, side in ((a, b, "b"), (b, a, "a")):
            out = git(folder, "log", f"--max-count={MAX_COMMITS + 1}", "--format=%H%x09%s", "--end-of-options",
                      f"{start}..{end}", "--", ".")
            for line in out.splitlines():
                commit, _, subject = line.partition("\t")
                commits.append({"commit": commit, "subject": subject, "only_in": side})
    except GitError as err:
        return [], f"git log failed: {err.stderr}"
    return commits, None


def compare_runs(a: Found, b: Found, root: Path) -> dict:
    """Every section of the comparison; each has `same` and the items that differ."""
    ra, rb = a.record, b.record
    out: dict = {}
    for side, found in (("a", a), ("b", b)):
        r = found.record
        out[side] = {"run_dir": str(found.folder), "id": r.id, "status": r.status.value, "exit_code": r.exit_code}

    def tool_facts(found: Found) -> dict:
        r = found.record
        facts = {"tool": r.tool, "commit": r.tool_commit, "pinned commit": r.tool_pinned_commit,
                 "dirty": r.tool_dirty}
        if r.tool_diff:
            facts["tool.diff sha256"] = _sha256(found.folder, r.tool_diff)
        if ra.tool_untracked or rb.tool_untracked:
            facts["untracked"] = r.tool_untracked
        return facts

    items = pairs(tool_facts(a), tool_facts(b), every=True)
    tool = {"same": all(item["same"] for item in items), "items": items, "commits": [], "note": None}
    if ra.tool == rb.tool and ra.tool_commit and rb.tool_commit and ra.tool_commit != rb.tool_commit:
        tool["commits"], tool["note"] = _commits_between(root, ra.tool, ra.tool_commit, rb.tool_commit)
    out["tool"] = tool

    items = pairs({"experiment": ra.experiment, "file": ra.experiment_file, "sha256": ra.experiment_sha256},
                  {"experiment": rb.experiment, "file": rb.experiment_file, "sha256": rb.experiment_sha256})
    texts = [_run_file(f.folder, EXPERIMENT_COPY) for f in (a, b)]
    notes = [f"{side}: {EXPERIMENT_COPY} not compared: {why}" for side, (_, why) in zip("ab", texts) if why]
    diff = []
    if not notes:
        diff = list(difflib.unified_diff(texts[0][0].splitlines(), texts[1][0].splitlines(),
                                         f"a/{EXPERIMENT_COPY}", f"b/{EXPERIMENT_COPY}", lineterm=""))
    out["experiment"] = {"same": not items and not diff and not notes, "items": items, "diff": diff, "notes": notes}

    configs, notes = [], []
    for side, found in (("a", a), ("b", b)):
        text, why = _run_file(found.folder, CONFIG)
        if text is not None:
            # the run dir's own path is no difference between two runs
            text = text.replace(str(found.folder.resolve()), "${run_dir}")
            try:
                configs.append(flatten(yaml.load(text, Loader=Loader) or {}))
            except (yaml.YAMLError, ValueError) as err:
                why = f"it is not valid YAML ({str(err).splitlines()[0]})"
        if why:
            notes.append(f"{side}: {CONFIG} not compared: {why}")
    items = [_lists(item) for item in pairs(*configs)] if len(configs) == 2 else []
    out["config"] = {"same": not items and not notes, "items": items, "notes": notes}

    items = pairs(override_values(ra.overrides), override_values(rb.overrides))
    out["overrides"] = {"same": not items, "items": items, "a": ra.overrides, "b": rb.overrides}

    keys = ("kind", "python", "executable", "lock_file", "lock_sha256")
    items = pairs(*({k: r.env.get(k) for k in keys} for r in (ra, rb)), every=True)
    if interpreter_identity(ra.env) == interpreter_identity(rb.env):  # one interpreter reached by two paths
        next(item for item in items if item["key"] == "executable")["same"] = True
    items += pairs(*({k: redact(str(v)) for k, v in flatten(r.env.get("variables") or {}, "variables").items()}
                     for r in (ra, rb)))
    out["env"] = {"same": all(item["same"] for item in items), "items": items}

    results = [flatten(r.result) if r.result is not None else {} for r in (ra, rb)]
    items = pairs(*results, every=True)
    out["result"] = {"same": all(item["same"] for item in items), "items": [_delta(item) for item in items]}
    if ra.history or rb.history:
        out["history"] = _histories(a, b)
    out["differs"] = [name for name in SECTIONS if name in out and not out[name]["same"]]
    return out


def _histories(a: Found, b: Found) -> dict:
    """Each key of the two runs' history files, compared as lists."""
    series, notes = [], []
    for side, found in (("a", a), ("b", b)):
        history, why = load_history(found.folder, found.record.history["file"]) if found.record.history else (None, None)
        series.append({key: ys for key, (_, ys) in history.series.items()} if history else {})
        if why or not found.record.history:
            notes.append(f"{side}: {why or 'no history file'}")
    items = pairs(*series, every=True)
    return {"same": not notes and all(item["same"] for item in items), "items": [_delta(item) for item in items],
            "notes": notes}


def _delta(item: dict) -> dict:
    """An item with the difference of its values (b - a of two numbers), its lists summarized (_lists)."""
    if is_number(item.get("a")) and is_number(item.get("b")):
        item["delta"] = item["b"] - item["a"]
    return _lists(item)


def _lists(item: dict) -> dict:
    """An item whose lists are kept as their summary (length, first, last, and as a cell shows it), with the
    largest |b - a| of two lists of numbers over the length they share."""
    a, b = item.get("a"), item.get("b")
    if isinstance(a, list) and isinstance(b, list) and a and b and all(is_number(v) for v in a + b):
        item["max_delta"] = max(abs(y - x) for x, y in zip(a, b))
    for side in ("a", "b"):
        if isinstance(item.get(side), list):
            values = item[side]
            item[side] = {"length": len(values), "first": values[0] if values else None,
                          "last": values[-1] if values else None, "shown": list_text(values)}
    return item


SECTIONS = ("tool", "experiment", "config", "overrides", "env", "result", "history")
TITLES = {"tool": "tool", "experiment": "experiment", "config": f"composed config ({CONFIG})",
          "overrides": "overrides", "env": "environment", "result": "result", "history": "history"}


def _shown(value) -> str:
    if value is _MISSING:
        return "(missing)"
    if isinstance(value, dict) and "shown" in value and "length" in value:  # a list, as _delta keeps it
        return plain(value["shown"])
    if isinstance(value, str):
        return plain(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return plain(json.dumps(value))


def render(cmp: dict, a_name: str, b_name: str) -> str:
    lines = []
    for side, name in (("a", a_name), ("b", b_name)):
        facts = cmp[side]
        code = f", exit code {facts['exit_code']}" if facts["exit_code"] not in (None, 0) else ""
        lines.append(f"{side}: {plain(name)}  (run {plain(facts['id'])}, {facts['status']}{code})")
    for name in (name for name in SECTIONS if name in cmp):
        section = cmp[name]
        lines.append("")
        lines.append(f"{TITLES[name]}: {'same' if section['same'] else 'differs'}")
        items = section["items"]
        width = max((len(plain(str(i["key"]))) for i in items), default=0)
        for item in items:
            a, b = item.get("a", _MISSING), item.get("b", _MISSING)
            text = _shown(a) if item["same"] else f"{_shown(a)} -> {_shown(b)}"
            if "delta" in item and not item["same"]:
                text += f"  ({item['delta']:+.6g})"
            if "max_delta" in item and not item["same"]:
                text += f"  (largest difference {item['max_delta']:.6g})"
            lines.append(f"  {plain(str(item['key'])).ljust(width)}  {text}")
        for commit in section.get("commits", []):
            lines.append(f"  {'+' if commit['only_in'] == 'b' else '-'} {commit['commit'][:10]} "
                         f"{plain(commit['subject'])}  (only in {commit['only_in']})")
        if section.get("note"):
            lines.append(f"  commits between them not listed: {plain(section['note'])}")
        lines += [f"  {plain(line)}" for line in section.get("diff", [])]
        lines += [f"  {plain(note)}" for note in section.get("notes", [])]
    lines.append("")
    lines.append("The runs differ in: " + ", ".join(TITLES[n] for n in cmp["differs"]) + "."
                 if cmp["differs"] else "No difference in what was compared.")
    return "\n".join(lines) + "\n"



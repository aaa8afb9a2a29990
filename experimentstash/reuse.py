"""stash.reuse: the earlier run a job may stand on instead of running, checked before it is trusted, and one line
that says why jobs with earlier runs ran again.

An earlier run is reused only when all it claims holds (check_run): its record is signed with this stash's key
(signing.py), it succeeded, its fingerprint is the one its parts give and the job's own, its times are times, it is
where its record says, and its run dir holds what a finished run leaves (the experiment's copy with the recorded
sha256, both logs, the result file with the recorded content). The latest such run (by its end) wins.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from itertools import chain
from pathlib import Path

from . import StashError
from .fingerprint import digest
from .gitcmd import GitError, git
from .index import Found, Index
from .output import warn_skipped
from .records import (EXPERIMENT_COPY, HEX, MAX_RUN_BYTES, RUN_FILE, BadRecord, RunRecord, Status, inside, parse_time,
                      read_json, read_limited, recorded_path, to_json)
from .registry import MAX_EXPERIMENT_BYTES
from .results import read_result
from .signing import refusal

GONE = "gone"
DIFF_TREE_CALLS = 8  # the configs trees diffed for one line at most; beyond, the folder is named
LINE_LIMIT = 400
SAID = {"tool_changes": "the tool's uncommitted changes differ", "registration": "the tool's meta.yaml entry differs",
        "lock_sha256": "the lock file differs"}


def earlier_runs(root: Path) -> Index:
    """The index of the stash's records, in which a launch looks up each job's earlier succeeded runs (latest
    first): the records that cannot be used are named once, here."""
    index = Index(root)
    warn_skipped(root, index.bad)
    return index


def check_run(root: Path, folder: Path, tool: str, result_file: str | None) -> tuple[RunRecord | None, str | None]:
    """(the run's record as read now, why it cannot be reused or None). Whether its fingerprint is the job's is the
    caller's to compare."""
    try:
        data = read_json(folder / RUN_FILE, MAX_RUN_BYTES)
        record = RunRecord.from_dict(data, folder / RUN_FILE)
    except StashError:
        return None, GONE if not (folder / RUN_FILE).exists() else "its record cannot be read"
    parts = record.fingerprint_parts
    if why := refusal(data, root):
        return record, why
    if record.status != Status.SUCCEEDED or record.tool != tool:
        return record, f"it is a {record.status} run of {record.tool}"
    if not record.fingerprint or parts is None or digest(parts) != record.fingerprint:
        return record, "its fingerprint is not the one its parts give"
    if parse_time(record.started_at) is None or parse_time(record.ended_at) is None:
        return record, "its start or end time is not a time"
    if record.run_dir != recorded_path(root, folder):
        return record, "it is not where its record says (moved or copied)"
    copy = _file(folder, EXPERIMENT_COPY)
    if copy is None or _sha256(copy, MAX_EXPERIMENT_BYTES) != record.experiment_sha256:
        return record, f"its {EXPERIMENT_COPY} is missing or not the recorded one"
    if _file(folder, "stdout.log") is None or _file(folder, "stderr.log") is None:
        return record, "its logs are missing"
    if result_file and to_json(read_result(folder, result_file)[0]) != to_json(record.result):  # NaN is NaN here
        return record, f"its result file {result_file} is missing or not the recorded result"
    return record, None


def _file(folder: Path, name: str) -> Path | None:
    """A regular file of the run dir: never a link, nor below a folder that leads out of the run dir."""
    try:
        path = inside(folder, name, name) if "/" in name else folder / name
        return path if stat.S_ISREG(os.lstat(path).st_mode) else None
    except (OSError, StashError):
        return None


def _sha256(path: Path, limit: int) -> str | None:
    try:
        return hashlib.sha256(read_limited(path, limit)).hexdigest()
    except BadRecord:
        return None


class Chooser:
    """The reuse decisions of one launch (a single run, or a sweep's batch): which earlier run each job stands on,
    and what to say about the jobs that had earlier runs and ran anyway."""

    def __init__(self, root: Path, earlier: Index):
        self.root = root
        self.earlier = earlier
        self.checked: dict[Path, tuple[RunRecord | None, str | None]] = {}  # each run dir is checked once
        self.diffs: dict[tuple[str, str], list[str] | None] = {}
        self.again = 0  # jobs with earlier runs that ran
        self.reasons: Counter = Counter()  # why, with the number of such jobs

    def _check(self, folder: Path, spec) -> tuple[RunRecord | None, str | None]:
        if folder not in self.checked:
            self.checked[folder] = check_run(self.root, folder, spec.tool.name, spec.tool.result)
        return self.checked[folder]

    def choose(self, spec) -> Found | None:
        """The latest earlier run that passes check_run with the job's fingerprint; None when the job must run."""
        own = spec.fingerprint.digest
        for folder in self.earlier.by_fingerprint(own):
            record, why = self._check(folder, spec)
            if why is None and record.fingerprint == own:
                return Found(record, folder)
        runs = self.earlier.earlier(spec.tool.name, spec.experiment, spec.overrides)
        latest = next(runs, None)
        if latest:  # the job ran before: what differs from the latest such run that passes the checks
            self.again += 1
            for folder in chain([latest], runs):
                record, why = self._check(folder, spec)
                if why is None:
                    self.reasons.update(dict.fromkeys(self.differences(spec, record.fingerprint_parts), 1))
                    break
        return None

    def differences(self, spec, old: dict) -> list[str]:
        """What differs between an earlier run's fingerprint parts and the job's, by name (files, commits)."""
        new = spec.fingerprint.parts
        if set(old) != set(new):
            return [f"the earlier runs were fingerprinted differently ({', '.join(sorted(set(old) ^ set(new)))})"]
        said = []
        for key, value in new.items():
            was = old[key]
            if was == value:
                continue
            if key == "configs":
                said += self._configs(spec.tool.name, was, value)
            elif key == "experiment_files" and isinstance(was, dict):
                said += [f"{path} changed" for path in sorted({*was, *value}) if was.get(path) != value.get(path)]
            elif key in ("tool_commit", "python"):
                said.append(f"{key} differs ({_short(was)} -> {_short(value)})")
            else:
                said.append(SAID.get(key, f"{key} differs"))
        return said

    def _configs(self, tool: str, was, now) -> list[str]:
        """The files of configs/<tool>/ that differ between two tree ids (`git diff-tree`), when this repository
        has both trees."""
        pair = (str(was), str(now))
        if pair not in self.diffs:
            trees = [t.removeprefix("tree ") for t in pair]
            names = None
            if all(HEX.fullmatch(t) for t in trees) and len(self.diffs) < DIFF_TREE_CALLS:
                try:
                    out = git(self.root, "diff-tree", "-r", "--name-only", "-z", "--end-of-options", *trees)
                    names = [f"configs/{tool}/{name} changed" for name in out.split("\0") if name]
                except GitError:
                    pass
            self.diffs[pair] = names
        return self.diffs[pair] or [f"configs/{tool}/ changed (not comparable here)"]

    def line(self) -> str | None:
        """One line for the launch: why jobs with earlier runs ran again, and the earlier runs that were refused."""
        refused = Counter(why for _, why in self.checked.values() if why and why != GONE)
        said = []
        if self.again:
            why = "; ".join(w if n == self.again else f"{w} ({_count(n, 'job')})"
                            for w, n in self.reasons.most_common())
            said.append(f"{_count(self.again, 'job')} ran again" + (f": {why}" if why else ""))
        if refused:
            said.append(f"{_count(sum(refused.values()), 'earlier run')} failed the checks: " + "; ".join(
                w if len(refused) == 1 else f"{w} ({n})" for w, n in refused.most_common()))
        if not said:
            return None
        text = "reuse: " + ". ".join(said)
        return text if len(text) <= LINE_LIMIT else text[:LINE_LIMIT - 4] + " ..."


def _short(value) -> str:
    text = str(value).removeprefix("tree ")
    return text[:7] if HEX.fullmatch(text) else text[:20]


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"

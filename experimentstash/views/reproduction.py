"""What `reproduce --check` compares between a run and its reproduction: every result value, and every file the
run wrote (by sha256), except the launcher's own files and the bookkeeping of logs and experiment trackers."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections import Counter
from pathlib import Path

from ..output import excerpt
from ..records import EXPERIMENT_COPY, PATCH_FILE, RUN_FILE, RunRecord, flatten


# files of a run dir that the launcher and Hydra write about the run, never compared
RUN_FILES = {RUN_FILE, "stdout.log", "stderr.log", PATCH_FILE, EXPERIMENT_COPY, ".hydra/hydra.yaml",
             ".experimentstash.reserve"}


# what tools write beside their output about the run: logs, and the files of experiment trackers (W&B, MLflow,
# TensorBoard); a tool's meta.yaml `check_ignore` adds its own globs
BOOKKEEPING = ("wandb/**", "mlruns/**", "**/events.out.tfevents.*", "**/*.log")


def _normalized(path: Path, run_dir: Path) -> bytes:
    data = path.read_bytes()
    if path.parent.name == ".hydra":
        # Hydra's own record of the config holds the run dir wherever an override used ${run_dir}
        data = data.replace(str(run_dir).encode(), b"${run_dir}")
    return data


def glob_match(rel: str, glob: str) -> bool:
    """A path relative to the run dir against a glob: `*`, `?` and `[...]` within one part, `**` for any number
    of parts (`wandb/**`, `**/*.log`)."""
    return _parts_match(rel.split("/"), glob.split("/"))


def _parts_match(parts: list[str], globs: list[str]) -> bool:
    if not globs:
        return not parts
    if globs[0] == "**":
        return any(_parts_match(parts[i:], globs[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], globs[0]) and _parts_match(parts[1:], globs[1:])


def output_files(run_dir: Path, bookkeeping: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """(sha256 of every file a run wrote, {file: the bookkeeping glob that left it out}); the launcher's own
    files (logs, run.json, tool.diff, Hydra's hydra.yaml) are neither. Links are not followed (a run dir from
    elsewhere could point anywhere)."""
    hashes, left_out = {}, {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(run_dir).as_posix()
        if rel in RUN_FILES or path.name.startswith(f".{RUN_FILE}."):
            continue
        glob = next((g for g in bookkeeping if glob_match(rel, g)), None)
        if glob is not None:
            left_out[rel] = glob
        else:
            hashes[rel] = hashlib.sha256(_normalized(path, run_dir)).hexdigest()
    return hashes, left_out


def compare(original: RunRecord, original_dir: Path, new: RunRecord, new_dir: Path,
            check_ignore: tuple[str, ...]) -> tuple[list, list[str]]:
    """([(what, identical|differs, detail)] for what both runs have, [what was not compared and why])."""
    rows, skipped = [], []
    if original.result is None or new.result is None:
        side = "the original run" if original.result is None else "the reproduction"
        skipped.append(f"result values: {side} has no result (is `result:` registered for the tool in meta.yaml?)")
    else:
        old_result, new_result = flatten(original.result), flatten(new.result)
        for key in sorted(set(old_result) | set(new_result)):
            a, b = old_result.get(key, "<missing>"), new_result.get(key, "<missing>")
            same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
            rows.append((f"result {key}", "identical" if same else "differs",
                         excerpt(a) if same else f"{excerpt(a)} -> {excerpt(b)}"))
    bookkeeping = (*BOOKKEEPING, *check_ignore)
    (old_files, old_left), (new_files, new_left) = (output_files(d, bookkeeping) for d in (original_dir, new_dir))
    for rel in sorted(set(old_files) | set(new_files)):
        if rel not in new_files:
            rows.append((rel, "differs", "only in the original run"))
        elif rel not in old_files:
            rows.append((rel, "differs", "only in the reproduction"))
        elif old_files[rel] == new_files[rel]:
            rows.append((rel, "identical", f"sha256 {old_files[rel][:12]}"))
        else:
            rows.append((rel, "differs", f"sha256 {old_files[rel][:12]} -> {new_files[rel][:12]}"))
    counts = Counter({**old_left, **new_left}.values())  # each file once, wherever it was
    if counts:
        groups = (f"{glob.removeprefix('**/').removesuffix('**')} ({n} file{'s' if n > 1 else ''})"
                  for glob, n in ((g, counts[g]) for g in bookkeeping) if n)
        skipped.append("(bookkeeping): " + ", ".join(groups))
    return rows, skipped

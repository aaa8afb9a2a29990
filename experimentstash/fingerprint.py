"""Run fingerprints: sha256 over exactly what decides a run's outcome, so that a run is never done twice.

The parts (each kept in run.json as `fingerprint_parts`, so two runs can be told apart):
- tool_commit, tool_changes: the checkout's commit (an in-tree tool: its folder's tree id) and the sha256 of its
  uncommitted changes (tool.diff);
- configs: every stash config the tool can compose: git's tree id of configs/<tool>/ as it is on disk, committed
  or not (identical files, identical id);
- experiment, overrides: the experiment id and the tool overrides as typed, in their order;
- registration: the tool's meta.yaml entry that shapes the command (entrypoint, fixed overrides, env, search
  packages, working dir);
- python, lock_sha256: the interpreter's version (for env: current or a python path) and the lock file's sha256.
Left out on purpose: the time, the host, the run dir and the GPUs a job gets; packages installed in an
interpreter without a lock file.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .gitcmd import git
from .job import JobSpec
from .pins import StashState, ToolPin


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    parts: dict


def configs_digest(root: Path, tool: str, stash: StashState) -> str:
    """configs/<tool>/ as the tool composes it, by content: git's tree id of the folder, committed or not (the
    same files give the same id), or the files' sha256 where the stash is no git repository."""
    folder = f"configs/{tool}"
    if stash.commit is not None:
        if not any(p.startswith(folder + "/") for p in stash.changed):
            return f"tree {stash.trees.get(folder)}"  # as committed: the tree id at HEAD (no git call)
        with tempfile.TemporaryDirectory() as tmp:  # what the tree would be if committed now
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git(root, "read-tree", "HEAD", env=env)
            git(root, "add", "-A", "--", folder, env=env)
            return "tree " + git(root, "write-tree", f"--prefix={folder}/", env=env, check=False).strip()
    h = hashlib.sha256()
    base = root / folder
    for path in sorted(base.rglob("*")) if base.is_dir() else []:
        if path.is_file():
            h.update(f"{path.relative_to(base).as_posix()} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return f"files {h.hexdigest()}"


def registration(spec: JobSpec) -> dict:
    tool = spec.tool
    return {"entrypoint": list(tool.entrypoint), "overrides": list(tool.overrides), "env": tool.env,
            "search_packages": list(tool.search_packages), "workdir": tool.workdir}


def of_job(spec: JobSpec, pin: ToolPin, stash: StashState, configs: str) -> Fingerprint | None:
    """None where nothing says what the tool's code was (a stash that is no git repository): never reused."""
    if pin.commit is None:
        return None
    interpreter = spec.interpreter
    # an in-tree tool is pinned by the stash's commit, which changes with every config: its folder's tree id
    # says whether the tool itself changed
    tool = f"tree {stash.trees.get(spec.tool.rel_path.rstrip('/'))}" if pin.kind == "in-tree" else pin.commit
    parts = {
        "tool_commit": tool,
        "tool_changes": hashlib.sha256(pin.patch).hexdigest() if pin.patch else None,
        "configs": configs,
        "experiment": spec.experiment,
        "overrides": list(spec.overrides),
        "registration": registration(spec),
        # uv picks the interpreter its lock file allows: the lock's sha256 stands for the environment
        "python": None if interpreter.kind == "uv" else interpreter.version(),
        "lock_sha256": interpreter.lock_sha256(),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return Fingerprint(digest, parts)


def succeeded_runs(root: Path) -> dict:
    """fingerprint -> the latest run that succeeded with it (runs.Found), from every valid record in the stash."""
    from .records import Status
    from .runs import load_runs

    found, _ = load_runs(root)
    return {f.record.fingerprint: f for f in found if f.record.status == Status.SUCCEEDED and f.record.fingerprint}

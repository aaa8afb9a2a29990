"""Run fingerprints: sha256 over exactly what decides a run's outcome, so that a run is never done twice.

The parts (each kept in run.json as `fingerprint_parts`, so two runs can be told apart):
- tool_commit, tool_changes: the checkout's commit (an in-tree tool: its folder's tree id) and the sha256 of its
  uncommitted changes (tool.diff);
- configs: the tool's config groups: git's tree id of configs/<tool>/ without its experiment/ and snapshots/
  folders, as it is on disk, committed or not (identical files, identical id);
- experiment_files: the sha256 of the job's experiment file and of every experiment or snapshot file its defaults
  list (or a tool override) names, by path: a sibling experiment or a new snapshot changes no other job;
- experiment, overrides: the experiment id and the tool overrides as typed, in their order;
- registration: the tool's meta.yaml entry that shapes the command (entrypoint, fixed overrides, env, search
  packages, working dir);
- python, lock_sha256: the interpreter's version (for env: current or a python path) and the lock file's sha256;
- upstream (a pipeline's stage): the fingerprints of the runs of the stages it needs, which stand in its overrides
  for their run dirs.
Left out on purpose: the experiments and snapshots a job does not name; the time, the host, the run dir and the
GPUs a job gets; packages installed in an interpreter without a lock file.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import StashError
from .gitcmd import git
from .overrides import replaced
from .pins import StashState, ToolPin
from .records import BadRecord, plain_relative, read_limited
from .registry import MAX_EXPERIMENT_BYTES, SNAPSHOTS, parse_yaml

NAMED_ONLY = ("experiment", SNAPSHOTS)  # folders of configs/<tool>/ whose files a job composes only when named


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    parts: dict


def configs_digest(root: Path, tool: str, stash: StashState) -> str:
    """The tool's config groups by content: git's tree id of configs/<tool>/ without experiment/ and snapshots/, as
    it is on disk, committed or not (the same files give the same id). A real tree object, so that two can be
    diffed later; the files' sha256 where the stash is no git repository."""
    folder = f"configs/{tool}"
    named = tuple(f"{folder}/{name}/" for name in NAMED_ONLY)
    if stash.commit is not None:
        if not any(p.startswith(folder + "/") and not p.startswith(named) for p in stash.changed):
            kept = [e for e in stash.entries.get(folder, ()) if e.rpartition("\t")[2] not in NAMED_ONLY]
            return "tree " + _mktree(root, kept)  # as committed at HEAD, without those two
        with tempfile.TemporaryDirectory() as tmp:  # the tree it would be if committed now: an empty index, the
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}  # folder's files but those two, its tree
            git(root, "add", "-A", "--", folder, *(f":(exclude){folder}/{name}" for name in NAMED_ONLY), env=env)
            tree = git(root, "write-tree", f"--prefix={folder}/", env=env, check=False).strip()
            return "tree " + (tree or _mktree(root, []))  # nothing but experiments: the empty tree
    h = hashlib.sha256()
    base = root / folder
    for path in sorted(base.rglob("*")) if base.is_dir() else []:
        rel = path.relative_to(base).as_posix()
        if path.is_file() and rel.split("/")[0] not in NAMED_ONLY:
            h.update(f"{rel} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return f"files {h.hexdigest()}"


def _mktree(root: Path, entries: list[str]) -> str:
    return git(root, "mktree", "-z", input="".join(e + "\0" for e in entries).encode(errors="surrogateescape")).strip()


def experiment_files(root: Path, tool: str, start: Path, known: dict[Path, dict]) -> dict[str, str | None]:
    """{path below the stash: sha256} of an experiment file and of every experiment or snapshot file its defaults
    list names, followed through their own defaults lists (a named file that does not exist: None). `known` keeps
    each file's answer for the other jobs of a launch."""
    if start in known:
        return known[start]
    base = root / "configs" / tool
    found: dict[str, str | None] = {}
    todo = [start]
    while todo:
        path = todo.pop()
        rel = path.relative_to(root).as_posix()
        if rel in found:
            continue
        try:
            data = read_limited(path, MAX_EXPERIMENT_BYTES, follow=True)
        except BadRecord:  # missing, not a regular file or too large: the tool says what is wrong with it
            found[rel] = None
            continue
        found[rel] = hashlib.sha256(data).hexdigest()
        group = path.parent.relative_to(base).as_posix()
        for name in named_configs(data, group):
            if "${" in name:  # chosen by an interpolation: any of them may be composed
                todo += [p for n in NAMED_ONLY for p in sorted((base / n).rglob("*.yaml"))]
            elif name.split("/")[0] in NAMED_ONLY and plain_relative(name):
                todo.append(base / f"{name}.yaml")
    known[start] = dict(sorted(found.items()))
    return known[start]


def named_configs(text: bytes, group: str) -> list[str]:
    """The configs a defaults list names, as paths below the config dir without .yaml: Hydra's rules (an entry is
    relative to the group of the file that holds it, a leading / makes it absolute; `optional`, `override` and
    `@package` do not change which file it is)."""
    try:
        data = parse_yaml(text, group)
    except StashError:
        return []  # the tool says what is wrong with it
    defaults = data.get("defaults") if isinstance(data, dict) else None
    names = []
    for entry in defaults if isinstance(defaults, list) else []:
        if isinstance(entry, str) and entry != "_self_":
            names.append(_absolute(entry.split("@")[0], group))
        elif isinstance(entry, dict) and len(entry) == 1:
            (key, options), = entry.items()
            words = str(key).split()
            target = _absolute(words[-1].split("@")[0], group) if words else ""
            for option in options if isinstance(options, list) else [options]:
                if option is not None:
                    names.append(f"{target}/{option}")
    return names


def _absolute(name: str, group: str) -> str:
    return name[1:] if name.startswith("/") else f"{group}/{name}" if group else name


def named_by_overrides(root: Path, tool: str, experiment_file: Path, overrides, groups: dict) -> list[Path]:
    """Experiment or snapshot files that tool overrides choose (`experiment/grp=x`): read as Hydra may, relative to
    the experiment's group or from the top. `groups` keeps, for the other jobs of a launch, which override keys
    name such a folder."""
    files = []
    for word in overrides:
        key, _, value = word.lstrip("+").partition("=")
        key = key.split("@")[0]
        if word.startswith("~") or not value or not plain_relative(value):
            continue
        if (experiment_file, key) not in groups:
            base = root / "configs" / tool
            group = experiment_file.parent.relative_to(base).as_posix()
            groups[experiment_file, key] = [base / name for name in (f"{group}/{key}", key)
                                            if name.split("/")[0] in NAMED_ONLY and plain_relative(name)
                                            and (base / name).is_dir()]
        files += [path for folder in groups[experiment_file, key] if (path := folder / f"{value}.yaml").is_file()]
    return files


def registration(spec) -> dict:
    tool = spec.tool
    return {"entrypoint": list(tool.entrypoint), "overrides": list(tool.overrides), "env": tool.env,
            "search_packages": list(tool.search_packages), "workdir": tool.workdir}


def of_job(spec, pin: ToolPin, stash: StashState, configs: str, files: dict) -> Fingerprint | None:
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
        "experiment_files": files,
        "experiment": spec.experiment,
        "overrides": list(spec.overrides),
        "registration": registration(spec),
        # uv picks the interpreter its lock file allows: the lock's sha256 stands for the environment
        "python": None if interpreter.kind == "uv" else interpreter.version(),
        "lock_sha256": interpreter.lock_sha256(),
    }
    return Fingerprint(digest(parts), parts)


def digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()



def with_upstream(fingerprint: Fingerprint | None, upstream: dict[str, str | None]) -> Fingerprint | None:
    """A pipeline stage's fingerprint: the upstream runs it reads (`upstream`: run dir -> that run's fingerprint)
    stand in its overrides by their fingerprints, not by where their run dirs are, which differs from sweep to sweep.
    None when an upstream run has none: nothing says what it computed."""
    if fingerprint is None or None in upstream.values():
        return None

    standing = {folder: f"<run {digest_}>" for folder, digest_ in upstream.items()}
    parts = {**fingerprint.parts, "overrides": replaced(fingerprint.parts["overrides"], standing),
             "upstream": list(upstream.values())}
    return Fingerprint(digest(parts), parts)

"""Git facts about the stash and its tools: pinned commit, checked-out commit, uncommitted changes.

The git processes of one inspection run at the same time: a single run waits for the slowest, not the sum.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import StashError
from .gitcmd import finish, git, git_bytes, is_repo, start
from .registry import Tool

POLICIES = ("warn", "strict", "off")


@dataclass(frozen=True)
class StashState:
    commit: str | None
    dirty: bool | None
    changed: tuple[str, ...] = ()  # paths with uncommitted changes (untracked files included)
    trees: dict = field(default_factory=dict)  # an in-tree tool's folder -> its tree id at HEAD
    entries: dict = field(default_factory=dict)  # configs/<tool> -> its entries at HEAD (`git mktree -z` lines)


@dataclass(frozen=True)
class ToolPin:
    kind: str  # submodule | uninitialized (submodule not checked out) | in-tree | untracked (no git stash)
    pinned: str | None  # commit the stash's HEAD records for the tool
    commit: str | None  # commit of the checkout
    dirty: bool
    untracked: list[str] = field(default_factory=list)
    patch: bytes = b""  # uncommitted changes, untracked files included, as `git apply` takes them
    entries: frozenset = frozenset()  # every changed, untracked or ignored path of the checkout (CheckoutWatch)

    @property
    def moved(self) -> bool:
        return bool(self.pinned and self.commit and self.pinned != self.commit)


def _status_cmd(repo: Path, *paths: str, ignored: bool = False):
    # --ignored=matching names an ignored folder once, without walking it (a .venv stays one line)
    extra = ("--ignored=matching",) if ignored else ()
    return start(repo, "status", "--porcelain=v2", "--branch", "--untracked-files=all", *extra, "--", *paths)


# the number of space-separated fields before the path in `git status --porcelain=v2` lines
_PATH_AFTER = {"1": 8, "2": 9, "u": 10}


def _parse_status(out: bytes, ignored: list | None = None) -> tuple[str | None, list[str], list[str]]:
    """(HEAD commit, changed paths, untracked files) from `git status --porcelain=v2 --branch`; ignored paths
    are added to `ignored` when given."""
    head, changed, untracked = None, [], []
    for line in out.decode(errors="surrogateescape").splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[2]
            head = None if oid == "(initial)" else oid
        elif line.startswith("? "):
            untracked.append(line[2:])
        elif line.startswith("! ") and ignored is not None:
            ignored.append(line[2:])
        elif line[:1] in _PATH_AFTER:
            changed.append(line.split(" ", _PATH_AFTER[line[0]])[-1].split("\t")[0])
    return head, changed, untracked


def _entries(root: Path, rels: list[str], folders: list[str]) -> tuple[dict[str, str], dict[str, str], dict]:
    """(the commit recorded for each submodule path, in HEAD or else in the index (added, not yet committed);
    the tree id of each folder at HEAD; the entries of each of `folders` at HEAD, as `git mktree -z` takes them),
    from one `git ls-tree` (and `git ls-files` for staged gitlinks)."""
    links, trees, entries = {}, {}, {folder: [] for folder in folders}
    for args in (("ls-tree", "-z", "--end-of-options", "HEAD", "--"), ("ls-files", "-s", "-z", "--")):
        todo = [r for r in rels if r not in links] + ([f + "/" for f in folders] if args[0] == "ls-tree" else [])
        if not todo:
            break
        for line in finish(start(root, *args, *todo), check=False).decode(errors="surrogateescape").split("\0"):
            meta, _, path = line.partition("\t")
            words = meta.split()
            parent, _, name = path.rpartition("/")
            if args[0] == "ls-tree" and parent in entries:
                entries[parent].append(f"{meta}\t{name}")
            if words and words[0] == "160000" and path not in links:
                links[path] = next(w for w in words if len(w) in (40, 64))
            elif len(words) == 3 and words[1] == "tree":
                trees[path] = words[2]
    return links, trees, entries


def patch(repo: Path, pathspec: str) -> bytes:
    """`git diff HEAD --binary` with untracked files included, through a throw-away index."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(repo, "read-tree", "HEAD", env=env)
        git(repo, "add", "-A", "--", pathspec, env=env)
        return git_bytes(repo, "diff", "--cached", "--binary", "HEAD", "--", pathspec, env=env)


def inspect(root: Path, tools: list[Tool]) -> tuple[StashState, dict[str, ToolPin]]:
    """The stash's state and every tool's pin, with the git processes running side by side."""
    if not is_repo(root):
        return StashState(None, None), {t.name: ToolPin("untracked", None, None, False) for t in tools}
    rels = {t.name: t.rel_path.rstrip("/") for t in tools}
    stash_status = _status_cmd(root)
    links, trees, listed = _entries(root, sorted(set(rels.values())), sorted({f"configs/{t.name}" for t in tools}))
    statuses = {}
    for tool in tools:
        rel = rels[tool.name]
        if rel not in links:
            statuses[tool.name] = _status_cmd(root, rel, ignored=True)  # in-tree: the stash's changes below it
        elif is_repo(tool.path):
            statuses[tool.name] = _status_cmd(tool.path, ignored=True)
    head, changed, untracked = _parse_status(finish(stash_status))
    pins = {}
    for tool in tools:
        rel = rels[tool.name]
        if tool.name not in statuses:
            pins[tool.name] = ToolPin("uninitialized", links[rel], None, False)
            continue
        ignored: list[str] = []
        commit, tool_changed, tool_untracked = _parse_status(finish(statuses[tool.name]), ignored)
        dirty = bool(tool_changed or tool_untracked)
        entries = frozenset(tool_changed + tool_untracked + ignored)
        if rel in links:
            diff = patch(tool.path, ".") if dirty else b""
            pins[tool.name] = ToolPin("submodule", links[rel], commit, dirty, tool_untracked, diff, entries)
        else:
            # an in-tree tool: the stash commit is its pin, its changes are the stash's changes below its path
            diff = patch(root, rel) if dirty and commit else b""
            pins[tool.name] = ToolPin("in-tree", commit, commit, dirty, tool_untracked, diff, entries)
    return StashState(head, bool(changed or untracked), tuple(changed + untracked), trees, listed), pins


def inspect_tool(root: Path, tool: Tool) -> ToolPin:
    return inspect(root, [tool])[1][tool.name]


class CheckoutWatch:
    """Files that runs add or change in a tool's checkout: a tool that writes to a relative path writes there
    (its working dir is its folder), which the next run's pin would take for the tool's own changes.

    One `git status` after a run (a sweep's jobs share one per tool each time sweep.json is written); a file is
    told once, and recorded for the first run that ended after it appeared."""

    def __init__(self, root: Path, tool: Tool, pin: ToolPin, warn):
        self.root, self.tool, self.warn = root, tool, warn
        self.known = set(pin.entries)
        self.told = False
        self._lock = threading.Lock()
        self.in_tree = pin.kind == "in-tree"

    def __getstate__(self) -> dict:
        """A watch crosses to the machine that runs a job (a Slurm task): without its lock."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def after_run(self) -> list[str]:
        """What the run that just ended added or changed in the checkout (a file named once, ever)."""
        return self.new_in(self.scan())

    def scan(self) -> set[str]:
        """Every changed, untracked or ignored path of the checkout now: one `git status`."""
        rel = self.tool.rel_path.rstrip("/")
        proc = _status_cmd(self.root, rel, ignored=True) if self.in_tree else _status_cmd(self.tool.path, ignored=True)
        ignored: list[str] = []
        _, changed, untracked = _parse_status(finish(proc, check=False), ignored)
        return set(changed + untracked + ignored)

    def new_in(self, entries: set[str]) -> list[str]:
        """The paths of a scan not seen before, for the run they are recorded for; the first ones are told."""
        with self._lock:
            new = sorted(entries - self.known)
            self.known.update(new)
            tell = bool(new) and not self.told
            self.told |= tell
        if tell:
            shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
            self.warn(f"the run wrote into the tool's checkout {self.tool.rel_path.rstrip('/')}: {shown}. The tool "
                      "runs in its own folder; have it write below its run dir (hydra.runtime.output_dir, or "
                      "HydraConfig.get().runtime.output_dir in code) so that the checkout stays as pinned.")
        return new


def apply_policy(tool: Tool, pin: ToolPin, policy: str) -> str | None:
    """Refuse (strict) or return the one warning to show (warn) for a moved or dirty tool."""
    rel = tool.rel_path.rstrip("/")
    if pin.kind == "uninitialized":
        raise StashError(
            f"Tool '{tool.name}' is a submodule that is not checked out: run `git submodule update --init {rel}`."
        )
    if policy == "off" or not (pin.moved or pin.dirty):
        return None
    problems = []
    if pin.moved:
        problems.append(
            f"{rel} is checked out at {pin.commit[:10]} but the stash pins {pin.pinned[:10]}: "
            f"`git submodule update {rel}` returns to the pin, `git add {rel} && git commit` pins the checkout"
        )
    if pin.dirty:
        fix = (
            f"commit them in {rel} and pin that commit, or `git -C {rel} stash` them"
            if pin.kind == "submodule" else "commit them in the stash or `git stash` them"
        )
        problems.append(f"{rel} has uncommitted changes: {fix}")
    if policy == "strict":
        raise StashError("stash.pin=strict refuses to run: " + "; ".join(problems) + ".")
    kept = "changes saved as tool.diff in the run dir" if pin.dirty else "both commits recorded"
    return "; ".join(problems) + f" (running anyway, {kept})"


NO_GIT_WARNING = ("the stash {root} is not a git repository: nothing can be pinned or reproduced "
                  "(`git init && git add -A && git commit` makes it one).")

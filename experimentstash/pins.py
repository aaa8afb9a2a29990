"""Git facts about the stash and a tool: pinned commit, checked-out commit, uncommitted changes."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import git

from . import StashError
from .registry import Tool

POLICIES = ("warn", "strict", "off")


@dataclass(frozen=True)
class StashState:
    commit: str | None
    dirty: bool | None


@dataclass(frozen=True)
class ToolPin:
    kind: str  # submodule | uninitialized (submodule not checked out) | in-tree | untracked (no git stash)
    pinned: str | None  # commit the stash's HEAD records for the tool
    commit: str | None  # commit of the checkout
    dirty: bool
    untracked: list[str] = field(default_factory=list)
    patch: bytes = b""  # uncommitted changes, untracked files included, as `git apply` takes them

    @property
    def moved(self) -> bool:
        return bool(self.pinned and self.commit and self.pinned != self.commit)


def _open(path: Path) -> git.Repo | None:
    try:
        return git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def _status(repo: git.Repo, *paths: str) -> tuple[str | None, list[str], list[str]]:
    """(HEAD commit, changed entries, untracked files) from one `git status --porcelain=v2 --branch`."""
    out = repo.git(c="core.quotePath=false").status("--porcelain=v2", "--branch", "--untracked-files=all", "--", *paths)
    head, changes, untracked = None, [], []
    for line in out.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[2]
            head = None if oid == "(initial)" else oid
        elif line.startswith("? "):
            untracked.append(line[2:])
        elif not line.startswith("#"):
            changes.append(line)
    return head, changes, untracked


def stash_state(root: Path) -> StashState:
    repo = _open(root)
    if repo is None:
        return StashState(None, None)
    head, changes, untracked = _status(repo)
    return StashState(head, bool(changes or untracked))


def _gitlink(repo: git.Repo, rel: str) -> str | None:
    """The commit recorded for a submodule path in HEAD, else in the index (added, not yet committed)."""
    try:
        line = repo.git.ls_tree("HEAD", "--", rel)  # mode type sha path
    except git.GitCommandError:  # no commit yet
        line = ""
    if not line:
        line = repo.git.ls_files("-s", "--", rel).split("\n")[0]  # mode sha stage path
    if line.startswith("160000 "):
        return next(word for word in line.split() if len(word) == 40)
    return None


def _patch(repo: git.Repo, pathspec: str) -> bytes:
    """`git diff HEAD --binary` with untracked files included, through a throw-away index."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        repo.git.read_tree("HEAD", env=env)
        repo.git.add("-A", "--", pathspec, env=env)
        return repo.git.diff(
            "--cached", "--binary", "HEAD", "--", pathspec,
            env=env, stdout_as_string=False, strip_newline_in_stdout=False,
        )


def inspect_tool(root: Path, tool: Tool) -> ToolPin:
    stash = _open(root)
    if stash is None:
        return ToolPin("untracked", None, None, False)
    rel = tool.rel_path.rstrip("/")
    pinned = _gitlink(stash, rel)
    if pinned is None:
        # an in-tree tool: the stash commit is its pin, its changes are the stash's changes below its path
        head, changes, untracked = _status(stash, rel)
        dirty = bool(changes or untracked)
        return ToolPin("in-tree", head, head, dirty, untracked, _patch(stash, rel) if dirty and head else b"")
    repo = _open(tool.path) if (tool.path / ".git").exists() else None
    if repo is None:
        return ToolPin("uninitialized", pinned, None, False)
    head, changes, untracked = _status(repo)
    dirty = bool(changes or untracked)
    return ToolPin("submodule", pinned, head, dirty, untracked, _patch(repo, ".") if dirty else b"")


def apply_policy(tool: Tool, pin: ToolPin, policy: str) -> str | None:
    """Refuse (strict) or return the one warning to show (warn) for a moved or dirty tool."""
    if policy not in POLICIES:
        raise StashError(f"stash.pin={policy}: expected one of {', '.join(POLICIES)}.")
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
            if pin.kind == "submodule" else f"commit them in the stash or `git stash` them"
        )
        problems.append(f"{rel} has uncommitted changes: {fix}")
    if policy == "strict":
        raise StashError("stash.pin=strict refuses to run: " + "; ".join(problems) + ".")
    return "; ".join(problems) + " (running anyway, changes saved as tool.diff in the run dir)" if pin.dirty \
        else "; ".join(problems) + " (running anyway, both commits recorded)"

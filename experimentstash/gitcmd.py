"""git's own command line, called directly (a start-up without GitPython's import on the run path).

Every value that comes from a record or a user (a commit, a path) is placed after `--end-of-options` or `--`
by the callers, so that it can never be read as an option.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class GitError(Exception):
    def __init__(self, args: tuple[str, ...], stderr: str):
        super().__init__(f"git {' '.join(args)}: {stderr.strip()}")
        self.stderr = stderr.strip()


# git must never ask a question on the terminal nor read the user's pager settings
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}


def start(cwd: Path, *args: str, env: dict | None = None, stdin: bool = False) -> subprocess.Popen:
    """Start `git ARGS` in cwd; finish() collects it (several may run at once). `stdin`: finish() feeds it input."""
    return subprocess.Popen(
        ["git", "-c", "core.quotePath=false", *args], cwd=cwd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **_ENV, **(env or {})},
    )


def finish(proc: subprocess.Popen, check: bool = True, input: bytes | None = None) -> bytes:
    out, err = proc.communicate(input)
    if check and proc.returncode != 0:
        raise GitError(tuple(proc.args[3:]), err.decode(errors="replace"))
    return out


def git(cwd: Path, *args: str, env: dict | None = None, check: bool = True, input: bytes | None = None) -> str:
    proc = start(cwd, *args, env=env, stdin=input is not None)
    return finish(proc, check, input).decode(errors="surrogateescape")


def git_bytes(cwd: Path, *args: str, env: dict | None = None) -> bytes:
    return finish(start(cwd, *args, env=env))


def ok(cwd: Path, *args: str) -> bool:
    proc = start(cwd, *args)
    proc.communicate()
    return proc.returncode == 0


def is_repo(path: Path) -> bool:
    """The folder is the top of a git work tree (a .git folder or file), not a folder inside another one."""
    return (path / ".git").exists()

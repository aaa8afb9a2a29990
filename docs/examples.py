"""The command output shown in the docs, made by running the commands on a copy of this repository's stash.

    python docs/examples.py            # write docs/examples/*.txt
    python docs/examples.py --check    # exit 1, showing the differences, when a committed example is out of date

The copy holds the files git tracks in configs/ and tools/demo/ and the stash's dot files, committed at a fixed
time by a fixed author, and tools/manylatents as its pinned gitlink only, as on a fresh clone. What changes from
one invocation to the next (run ids and times, durations, the stash's folder and commit, the interpreter, the
report's size, what each run used) is replaced by fixed values of the same width, so tables stay aligned. Pages include the files with
`--8<-- "docs/examples/<name>.txt"`.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"

HOME = "/home/me/experimentstash"  # where the reader's clone is shown to be
PYTHON = "/home/me/.venv/bin/python"
PYTHON_VERSION = "3.11.7"
FAKE_COMMIT = "5f0c2d7e9a41b3c86d1e0f4a7b2c9d3e8f6a1b05"
DURATION = "1.1s"
REPORT_SIZE = "4.9 MB"
BASE_SECONDS = 10 * 3600  # fake run ids start at 2025-01-31 10:00:00, ten seconds apart

# git as on a new machine (no one's own settings), with a fixed author and date for the copy's commit
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Me", "GIT_AUTHOR_EMAIL": "me@example.com", "GIT_AUTHOR_DATE": "2025-01-31T09:00:00Z",
    "GIT_COMMITTER_NAME": "Me", "GIT_COMMITTER_EMAIL": "me@example.com", "GIT_COMMITTER_DATE": "2025-01-31T09:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}

RUN_ID = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}")
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
SHA = re.compile(r"(?<![0-9a-f])[0-9a-f]{7,40}(?![0-9a-f])")
SECONDS = re.compile(r"(?<![\w.])\d+\.\ds(?!\w)")
SIZE = re.compile(r"\d+(?:\.\d+)? [kKM]?B(?=, )")
MEMORY = re.compile(r"(?<![\w.])\d+(?:\.\d)? [KMG]iB(?!\w)")  # what a run used
PEAK_MEMORY = "48 MiB"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def copy_stash(dest: Path) -> Path:
    """A stash made of this repository's tracked stash files, with tools/manylatents pinned but not checked out."""
    root = dest / "experimentstash"
    for rel in git(REPO, "ls-files", "--", "configs", "tools/demo", ".gitignore", ".gitmodules").splitlines():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, root / rel)
    (root / "tools" / "manylatents").mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    for line in git(REPO, "ls-files", "-s", "--", "tools/manylatents").splitlines():
        mode, sha, _, path = line.split(maxsplit=3)
        git(root, "update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}")
    git(root, "commit", "-qm", "stash")
    # one job at a time, so that jobs end in their order (this machine's setting, not part of any command shown)
    (root / "configs" / "meta.local.yaml").write_text("local:\n  max_parallel: 1\n")
    return root


class Normalizer:
    """Replaces what varies between invocations by fixed values, keeping every line's layout."""

    def __init__(self, root: Path):
        self.paths = sorted({str(root), str(root.resolve())}, key=len, reverse=True)
        self.commit = git(root, "rev-parse", "HEAD")
        self.ids: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        for path in self.paths:
            text = text.replace(path, HOME)
        text = text.replace(sys.executable, PYTHON).replace(platform.python_version(), PYTHON_VERSION)
        return "\n".join(self._line(line).rstrip() for line in text.splitlines()) + "\n"

    def _line(self, line: str) -> str:
        ids = [self._id(real) for real in RUN_ID.findall(line)]
        line = RUN_ID.sub(lambda m: self._id(m.group()), line)
        # a time on a line with a run id is that run's start; any other is the first run's
        stamp = ids[0] if ids else self._stamp(0)
        line = TIME.sub(f"{stamp[:10]} {stamp[11:19].replace('-', ':')}", line)
        line = SHA.sub(lambda m: FAKE_COMMIT[:len(m.group())] if self.commit.startswith(m.group()) else m.group(), line)
        line = SECONDS.sub(lambda m: self._same_width(m, DURATION), line)
        line = MEMORY.sub(lambda m: self._same_width(m, PEAK_MEMORY), line)
        return SIZE.sub(lambda m: self._same_width(m, REPORT_SIZE), line)

    def _id(self, real: str) -> str:
        if real not in self.ids:
            k = len(self.ids)
            self.ids[real] = f"{self._stamp(k)}_{hashlib.sha256(str(k).encode()).hexdigest()[:6]}"
        return self.ids[real]

    @staticmethod
    def _stamp(k: int) -> str:
        seconds = BASE_SECONDS + 10 * k
        return f"2025-01-31_{seconds // 3600:02d}-{seconds // 60 % 60:02d}-{seconds % 60:02d}"

    @staticmethod
    def _same_width(match: re.Match, fake: str) -> str:
        """`fake`, padded to the width of what it replaces when a column follows (a table cell)."""
        following = match.string[match.end():match.end() + 1]
        return fake.ljust(len(match.group())) if following in (" ", "│") else fake


class Terminal:
    """Commands typed in the copy, each kept with its output as a reader would see it in a terminal."""

    def __init__(self, root: Path):
        self.root = root
        self.normalize = Normalizer(root)
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("EXPERIMENTSTASH_", "FORCE_COLOR", "CUDA_VISIBLE_DEVICES", "WANDB_", "MLFLOW_"))}
        self.env.update(GIT_ENV, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", COLUMNS="100", NO_COLOR="1", TERM="dumb")

    def show(self, *args: str, exit_code: int = 0) -> str:
        done = subprocess.run([sys.executable, "-m", "experimentstash", *args], cwd=self.root, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        typed = shlex.join(args)
        if done.returncode != exit_code:
            raise RuntimeError(f"experimentstash {typed} exited {done.returncode}, not {exit_code}:\n{done.stdout}")
        return self.normalize(f"$ experimentstash {typed}\n{done.stdout}")

    def only(self, pattern: str) -> str:
        (found,) = sorted(self.root.glob(pattern))
        return str(found.relative_to(self.root))


def generate() -> dict[str, str]:
    """Every example by name: a first run, the stash's tools, a sweep and what shows its results, a failure.
    The copy is made in a short folder of /tmp, so that no line that shows its path is long enough to wrap."""
    with tempfile.TemporaryDirectory(prefix="esdocs-", dir="/tmp") as folder:
        return _generate(Terminal(copy_stash(Path(folder))))


def _generate(term: Terminal) -> dict[str, str]:
    examples = {"run": term.show("tool=demo", "experiment=pca")}
    run = term.only("outputs/demo/pca/*")
    examples["list"] = term.show("list")
    examples["sweep"] = term.show("-m", "tool=demo", "experiment=pca,random_projection", "seed=range(2)")
    sweep = term.only("multirun/*")
    examples["compare"] = term.show("compare", sweep, "--over", "seed")
    examples["diff"] = term.show("diff", f"{sweep}/0_demo_pca", f"{sweep}/1_demo_pca")
    examples["report"] = term.show("report", sweep)
    examples["runs"] = term.show("runs")
    examples["reproduce"] = term.show("reproduce", run, "--check")
    examples["check"] = term.show("check", "tool=demo", "experiment=pca")
    examples["sweep-failed"] = term.show("-m", "tool=demo", "experiment=pca", "n_components=0,2", exit_code=1)
    examples["pipeline"] = term.show("-m", "pipeline=embed", "seed=range(2)")
    examples["help"] = term.show("--help")
    return examples


def differences(examples: dict[str, str]) -> list[str]:
    """How the committed examples differ from `examples`: one unified diff (or a missing or extra file) each."""
    found = []
    committed = {path.stem: path for path in EXAMPLES.glob("*.txt")}
    for name in sorted(committed.keys() - examples.keys()):
        found.append(f"docs/examples/{name}.txt is shown by no command: remove it")
    for name, text in examples.items():
        old = committed[name].read_text() if name in committed else ""
        if old != text:
            found.append("".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                      f"docs/examples/{name}.txt (committed)", "(product output)")))
    return found


def main(argv: list[str]) -> int:
    examples = generate()
    if argv[1:] == ["--check"]:
        found = differences(examples)
        print("\n".join(found) + "\nRun `python docs/examples.py` to write them." if found else "examples are up to date")
        return 1 if found else 0
    EXAMPLES.mkdir(exist_ok=True)
    for stale in EXAMPLES.glob("*.txt"):
        if stale.stem not in examples:
            stale.unlink()
    for name, text in examples.items():
        (EXAMPLES / f"{name}.txt").write_text(text)
    print(f"wrote {len(examples)} examples to {EXAMPLES.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""`experimentstash init [DIR]`: a new stash in DIR (default: here): a git repository with configs/meta.yaml, whose
comments show the keys a tool's entry takes, and a .gitignore for what runs write. An existing stash, or a folder
inside one, is refused with nothing touched."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from .. import META, StashError, enclosing_stash
from ..gitcmd import GitError, git
from ..output import console
from ..registry import META_LOCAL

NEEDS_STASH = False  # it makes one

# what runs and this machine write: never part of the stash's commit, so runs record stash_dirty: false
IGNORED = ("outputs/", "multirun/", ".cache/", META_LOCAL.as_posix())

META_TEMPLATE = """\
# The tools of this stash. `experimentstash add-tool NAME URL_OR_PATH` adds one: a git submodule under
# tools/NAME, registered below with its path and entrypoint, and a first experiment in configs/NAME/experiment/.
# A tool's entry, key by key (add-tool writes the first two; the others are optional; docs: meta-yaml.md):
#
#   NAME:
#     path: tools/NAME              # required: the tool's folder
#     entrypoint: -m package.main   # required: '-m package.module', or a script path inside the tool
#     description: what it computes
#     env: uv                       # current | uv | {python: /path/to/python}; default: uv when the tool has uv.lock
#     result: metrics.json          # the results file the tool writes into its run dir (JSON, YAML, a one-row CSV, or a glob)
#     history: history.jsonl        # its per-step values (JSON lines or CSV): curves in compare and report
#     overrides: ['cache_dir=${run_dir}/cache']   # tool overrides given first on every run
#     reuse: false                  # true: skip a job that succeeded before with the same fingerprint
#     workdir: tool                 # tool | run_dir: the working dir the tool starts in
#     search_packages: [mytool.configs]   # packages of configs for the tool's Hydra (HYDRA_SEARCH_PACKAGES)
#     tracker: wandb                # none | wandb | mlflow, over the stash-wide one
#     wandb: {project: my-project}  # the tracker's settings for this tool
#     mlflow: {experiment: mytool}
#     check_ignore: ['profiles/**'] # run dir files `reproduce --check` does not compare
#
# Stash-wide, above `tools:`: an experiment tracker for every tool (docs: trackers.md)
#   tracker: wandb
#   wandb: {project: my-project}
#
# This machine's launcher defaults go to configs/meta.local.yaml (git-ignored), merged over this file:
#   local: {max_parallel: 4}                   # sweep jobs at once on this machine
#   slurm: {partition: gpu, timeout_min: 120}  # Slurm arrays (hydra/launcher=stash_slurm)
#   tools: {NAME: {env: {python: /opt/envs/NAME/bin/python}}}
tools:
"""


def add_arguments(parser) -> None:
    parser.add_argument("dir", nargs="?", default=".", help="the stash's folder, made when missing (default: here)")


def run(args, root: Path | None) -> int:
    folder = Path(args.dir).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise StashError(f"{args.dir} is a file: give a folder for the new stash.")
    inside = enclosing_stash(folder)
    if inside is not None:
        where = "is a stash already" if inside == folder else f"is inside the stash {inside}"
        raise StashError(f"{folder} {where} ({inside / META} exists): nothing was changed. Give a folder outside "
                         "any stash to make a new one.")
    if shutil.which("git") is None:
        raise StashError("git is not on PATH: a stash is a git repository. Install git, then run init again.")
    made = _make(folder)
    shown = shlex.quote(os.path.relpath(folder)) if folder.is_relative_to(Path.cwd()) else shlex.quote(str(folder))
    console.print(f"made a stash in {shown}: {', '.join(made)}", highlight=False)
    console.print("next:", highlight=False)
    if folder != Path.cwd().resolve():
        console.print(f"  cd {shown}", highlight=False)
    console.print("  experimentstash add-tool NAME URL_OR_PATH      # your Hydra tool as a submodule, with a first "
                  "experiment", highlight=False)
    console.print("  git add -A && git commit -m 'Add tool NAME'     # the commit pins the tool; runs then record "
                  "a clean stash", highlight=False)
    console.print("  experimentstash tool=NAME experiment=example   # a first run", highlight=False)
    return 0


def _make(folder: Path) -> list[str]:
    """The stash's files in `folder` (git init first when it is not a repository's top); what was made, for the
    message. On a failure every step is undone."""
    created: list[Path] = []
    gitignore = folder / ".gitignore"
    old_ignore = gitignore.read_bytes() if gitignore.is_file() else None
    made = []
    try:
        if not folder.exists():
            folder.mkdir(parents=True)
            created.append(folder)
        top = git(folder, "rev-parse", "--show-toplevel", check=False).strip()
        if not top or Path(top).resolve() != folder:
            if not (folder / ".git").exists():
                created.append(folder / ".git")
            try:
                git(folder, "init", "-q")
            except GitError as err:
                raise StashError(f"{err} Nothing was made.") from None
            made.append("a git repository")
        configs = folder / "configs"
        if not configs.exists():
            created.append(configs)
        configs.mkdir(exist_ok=True)
        (folder / META).write_text(META_TEMPLATE)
        created.append(folder / META)
        lines = (old_ignore or b"").decode(errors="replace").splitlines()
        missing = [name for name in IGNORED if name not in lines and "/" + name not in lines]
        if missing:
            text = (old_ignore or b"").decode(errors="replace")
            gitignore.write_text(text + ("\n" if text and not text.endswith("\n") else "") + "\n".join(missing) + "\n")
        made += [META.as_posix(), ".gitignore (" + ", ".join(IGNORED) + ")"]
    except BaseException:
        for path in reversed(created):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if old_ignore is None:
            gitignore.unlink(missing_ok=True)
        elif folder.is_dir():
            gitignore.write_bytes(old_ignore)
        raise
    return made

"""Planning a reproduction of a recorded run, and running it.

The tool is materialized at the recorded commit in a throw-away `git worktree` below .cache/experimentstash/
(the user's tools/<name> checkout is never touched), the recorded uncommitted changes (tool.diff) are applied,
the experiment file comes from the run dir's copy, and the other stash configs of the tool from the recorded
stash commit. The reproduction is a new run under outputs/ whose run.json says `reproduces: <original id>`.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path, PurePosixPath

import yaml

from .. import META, StashError
from ..gitcmd import GitError, git, git_bytes, is_repo, ok
from ..output import warn
from ..overrides import replaced
from ..pins import ToolPin, inspect
from ..records import EXPERIMENT_COPY, MAX_PATCH_BYTES, RUN_FILE, BadRecord, Missing, RunRecord, inside, read_limited
from ..registry import MAX_EXPERIMENT_BYTES, META_LOCAL, Loader, Stash, Tool, _deep_merge, parse_yaml, read_yaml
from ..runs import found_at
from .plan import JobSpec, file_sha256, job_cwd, new_run_id, prepare_tool, tool_command


CACHE = Path(".cache") / "experimentstash"


def load_run(run_dir: Path) -> RunRecord:
    """The run.json of a run dir, validated (it may come from anyone), with what reproduce needs."""
    record = found_at(run_dir).record
    if not record.tool_commit:
        raise StashError(
            f"Run {record.id} recorded no tool commit (the stash was no git repository): "
            "there is nothing to reproduce it from."
        )
    if record.tool_diff and (not (run_dir / record.tool_diff).is_file() or (run_dir / record.tool_diff).is_symlink()):
        raise StashError(
            f"Run {record.id} was made with uncommitted changes saved in {run_dir / record.tool_diff}, which is "
            "missing (or not a file of the run dir): without it the run cannot be reproduced."
        )
    prefix = f"configs/{record.tool}/"
    if not record.experiment_file.startswith(prefix):
        raise StashError(f"{run_dir / RUN_FILE}: field 'experiment_file' '{record.experiment_file}' is not below "
                         f"{prefix}: the record is damaged.")
    return record


def _has_commit(repo_dir: Path, commit: str) -> bool:
    return ok(repo_dir, "cat-file", "-e", "--end-of-options", f"{commit}^{{commit}}")


def _ensure_commit(repo_dir: Path, commit: str, what: str) -> None:
    """The commit is in the repository, fetched from its remotes when it is not (yet) there."""
    if _has_commit(repo_dir, commit):
        return
    remotes = git(repo_dir, "remote", check=False).split()
    for remote in remotes:
        ok(repo_dir, "fetch", "--quiet", "--end-of-options", remote, commit)
        if _has_commit(repo_dir, commit):
            return
    where = f" or its remotes ({', '.join(remotes)})" if remotes else ""
    raise StashError(
        f"The recorded {what} commit {commit} is not in {repo_dir}{where}: its history was rewritten or the "
        "commit was never pushed. Restore it (fetch it from wherever it still exists) to reproduce this run."
    )


def _show(root: Path, commit: str, path: str) -> bytes | None:
    """A file at a commit of the stash, or None."""
    try:
        return git_bytes(root, "show", "--end-of-options", f"{commit}:{path}")
    except GitError:
        return None


def recorded_tool(stash: Stash, record: RunRecord) -> Tool:
    """The tool's registration as meta.yaml had it at the recorded stash commit (this machine's meta.local.yaml
    on top), else as it is now."""
    text = _show(stash.root, record.stash_commit, META.as_posix()) if record.stash_commit else None
    if text is not None:
        try:
            raw = parse_yaml(text, f"{META} at stash commit {record.stash_commit[:10]}") or {}
            local = stash.root / META_LOCAL
            if local.is_file():
                raw = _deep_merge(raw, read_yaml(local, stash.root) or {}, META_LOCAL)
            tools = Stash.from_raw(stash.root, raw).tools
            if record.tool in tools:
                return tools[record.tool]
        except (StashError, ValueError, AttributeError):
            pass
    return stash.tool(record.tool)


def experiment_text(stash: Stash, record: RunRecord, run_dir: Path) -> bytes:
    """The experiment file's contents when the run started: the run dir's copy, else the recorded stash commit's
    file, else today's file, whichever matches the recorded sha256 and reads as an experiment (a YAML mapping, or
    nothing at all: a file of comments only is an empty experiment)."""
    want = record.experiment_sha256
    copy = run_dir / EXPERIMENT_COPY
    try:
        copied, absent = read_limited(copy, MAX_EXPERIMENT_BYTES), ""
    except Missing:
        copied, absent = None, "is missing (or not a file of the run dir)"
    except BadRecord as err:
        copied, absent = None, err.reason
    sources = [(str(copy), copied, absent)]
    if record.stash_commit:
        sources.append((f"stash commit {record.stash_commit[:10]}",
                        _show(stash.root, record.stash_commit, record.experiment_file), "has no such file"))
    current = inside(stash.root, record.experiment_file, "run.json experiment_file")
    try:
        today, absent = read_limited(current, MAX_EXPERIMENT_BYTES, follow=True), ""
    except BadRecord as err:
        today, absent = None, err.reason
    sources.append((f"{record.experiment_file} today", today, absent))
    why = []
    for where, data, absent in sources:
        if data is None:
            why.append(f"{where} {absent}")
            continue
        sha = hashlib.sha256(data).hexdigest()
        problem = _not_an_experiment(data) if want in (None, sha) else f"has sha256 {sha}"
        if problem is None:
            return data
        why.append(f"{where} {problem}")
    recorded = f", recorded sha256 {want}" if want else ""
    raise StashError(f"The experiment file of run {record.id} ({record.experiment_file}{recorded}) is not available "
                     f"as it was when the run started: {'; '.join(why)}.")


def _not_an_experiment(data: bytes) -> str | None:
    """Why a file with the recorded contents cannot be an experiment, or None when it can."""
    try:
        parsed = yaml.load(data.decode(), Loader=Loader)  # with the limits of every YAML file the launcher reads
    except UnicodeDecodeError as err:
        return f"is not UTF-8 text (byte {err.start})"
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        return f"is not YAML (line {mark.line + 1}: {err.problem})" if mark else f"is not YAML ({err})"
    except ValueError:
        return "is not YAML (a number too long to read)"
    if parsed is not None and not isinstance(parsed, dict):
        return f"holds {'a list' if isinstance(parsed, list) else 'a single value'}, not a mapping of config keys"
    return None


def _extract_configs(stash: Stash, tool: str, commit: str, target: Path) -> bool:
    """configs/<tool>/ at the stash commit into target/configs/<tool>/; False when that commit has no such folder."""
    try:
        data = git_bytes(stash.root, "archive", "--format=tar", "--end-of-options", commit, f"configs/{tool}")
    except GitError:
        return False
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    return True


def _ignore_cache(root: Path) -> Path:
    cache = root / CACHE
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")  # a stash without .cache/ in .gitignore must not see worktrees as new files
    return cache


class Materialized:
    """The tool at the recorded commit (plus tool.diff) in a git worktree, removed on close()."""

    def __init__(self, stash: Stash, tool: Tool, record: RunRecord, run_dir: Path, new_id: str):
        self.repo_dir: Path | None = None
        self.worktree: Path | None = None
        kind = record.tool_kind
        commit = record.tool_commit
        if kind == "in-tree":
            self.repo_dir = stash.root
            what = "stash"
        else:
            if not is_repo(tool.path):
                raise StashError(
                    f"Tool '{tool.name}' is a submodule that is not checked out: run "
                    f"`git submodule update --init {tool.rel_path}` first."
                )
            self.repo_dir = tool.path
            what = f"tool '{tool.name}'"
        patch = inside(run_dir, record.tool_diff, "run.json tool_diff") if record.tool_diff else None
        self.patch = _checked_patch(patch, self.repo_dir, tool.rel_path if kind == "in-tree" else None)
        _ensure_commit(self.repo_dir, commit, what)
        cache = _ignore_cache(stash.root)
        self.worktree = cache / "worktrees" / f"{tool.name}-{new_id}"
        self.worktree.parent.mkdir(parents=True, exist_ok=True)
        try:
            git(self.repo_dir, "worktree", "add", "--detach", "--quiet", "--end-of-options", str(self.worktree), commit)
        except GitError as err:
            self.worktree = None
            raise StashError(f"Cannot check out {commit[:10]} of {what} in a worktree: {err.stderr}") from None
        self.tool_dir = inside(self.worktree, tool.rel_path, "the tool's path") if kind == "in-tree" else self.worktree
        try:
            if self.patch:
                # git apply refuses paths outside the worktree ('..', absolute, through a symbolic link)
                git(self.worktree, "apply", "--binary", "--whitespace=nowarn", "--end-of-options", str(patch))
        except GitError as err:
            self.close()
            raise StashError(f"{patch} does not apply to {commit[:10]}: {err.stderr}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.worktree is not None and self.repo_dir is not None:
            try:
                git(self.repo_dir, "worktree", "remove", "--force", "--end-of-options", str(self.worktree))
            except GitError:
                shutil.rmtree(self.worktree, ignore_errors=True)
                git(self.repo_dir, "worktree", "prune", check=False)
            self.worktree = None


def _checked_patch(patch: Path | None, repo_dir: Path, folder: str | None) -> bytes:
    """The run's tool.diff, refused when it touches anything outside the tool: `folder` is an in-tree tool's
    folder (the patch's paths are the stash's), None for a submodule (its paths are the tool repository's)."""
    try:
        data = read_limited(patch, MAX_PATCH_BYTES) if patch else b""
    except BadRecord as err:
        raise StashError(f"{err.path} {err.reason}: the run's uncommitted changes cannot be applied.") from None
    if not data:
        return data
    outside = next((path for path in patched_paths(repo_dir, patch) if not _in_tool(path, folder)), None)
    if outside is not None:
        where = f"the tool's folder {folder}/" if folder else "the tool's repository"
        raise StashError(f"{patch} changes {outside!r}, outside {where}: a run saves only the tool's own changes "
                         "there, so the file was altered since. Nothing was applied.")
    return data


def patched_paths(repo_dir: Path, patch: Path) -> list[str]:
    """Every path a patch touches as git apply reads it at the top of a work tree (below it, git leaves out what
    is outside the working dir): what it writes and, read in reverse, what it reads or removes (the source of a
    rename or copy). Nothing is applied."""
    paths = []
    for reverse in ((), ("--reverse",)):
        try:
            out = git(repo_dir, "apply", "--numstat", "-z", *reverse, "--end-of-options", str(patch))
        except GitError as err:
            raise StashError(f"{patch} is not a patch git can read: {err.stderr}") from None
        paths += [entry.split("\t", 2)[2] for entry in out.split("\0") if entry]
    return paths


def _in_tool(path: str, folder: str | None) -> bool:
    """A patched path stays in the tool: below an in-tree tool's folder, or inside a submodule's repository; never
    up (..), absolute, or into a .git folder."""
    parts = PurePosixPath(path).parts
    if path.startswith("/") or any(part == ".." or part.lower() == ".git" for part in parts):
        return False
    return folder is None or path.startswith(f"{folder}/")


def _recorded_env(record: RunRecord, tool: Tool):
    """The registration's env setting that gives the recorded interpreter kind."""
    env = record.env
    kind = env.get("kind")
    if kind == "python":
        executable = env.get("executable")
        if executable and Path(executable).is_file():
            return {"python": executable}
        if isinstance(tool.env, dict):
            warn(f"the recorded interpreter {executable} does not exist; using {tool.env['python']} from the tool's "
                 "env setting.")
            return tool.env
        raise StashError(
            f"Run {record.id} ran with the interpreter {executable}, which does not exist here: "
            f"set tools.{tool.name}.env: {{python: <path>}} in configs/meta.local.yaml."
        )
    return kind


def _stash_configs(stash: Stash, record: RunRecord, tool: str, work: Path) -> None:
    """The tool's stash configs as they were at the recorded stash commit, saying why when they cannot be."""
    target = work / "configs" / tool
    target.mkdir(parents=True, exist_ok=True)
    if record.stash_commit and _extract_configs(stash, tool, record.stash_commit, work):
        if record.stash_dirty:
            warn("the stash had uncommitted changes when the run started; configs other than the experiment file "
                 f"come from stash commit {record.stash_commit[:10]}.")
        return
    if not record.stash_commit:
        why = "no stash commit recorded (the stash was no git repository, or had no commit)"
    elif not _has_commit(stash.root, record.stash_commit):
        why = f"the recorded stash commit {record.stash_commit[:10]} is not in this stash"
    else:
        why = f"configs/{tool}/ was not committed at stash commit {record.stash_commit[:10]}"
    warn(f"{why}: the tool's other stash configs are taken from configs/{tool}/ as it is now.")
    current = stash.root / "configs" / tool
    if current.is_dir():
        shutil.copytree(current, target, dirs_exist_ok=True, symlinks=True)


def plan_reproduction(stash: Stash, record: RunRecord, run_dir: Path, stack: ExitStack) -> tuple[JobSpec, ToolPin]:
    new_id = new_run_id()
    text = experiment_text(stash, record, run_dir)  # checked before anything is made
    registered = recorded_tool(stash, record)
    out_dir = inside(stash.root / "outputs", Path(record.tool) / record.experiment / new_id, "run.json experiment")
    tool_root = Materialized(stash, registered, record, run_dir, new_id)
    stack.callback(tool_root.close)
    tool = replace(registered, path=tool_root.tool_dir, env=_recorded_env(record, registered))

    # configs/<tool>/ of the recorded stash commit, with the experiment file as the run dir recorded it
    work = _ignore_cache(stash.root) / "reproduce" / new_id
    stack.callback(shutil.rmtree, work, True)
    _stash_configs(stash, record, tool.name, work)
    config_dir = work / "configs" / tool.name
    experiment_file = inside(config_dir, record.experiment_file[len(f"configs/{tool.name}/"):],
                             "run.json experiment_file")
    experiment_file.parent.mkdir(parents=True, exist_ok=True)
    experiment_file.write_bytes(text)

    prepared = prepare_tool(stash, tool)
    env = dict(prepared.env)
    lock_sha = record.env.get("lock_sha256")
    if prepared.interpreter.kind == "uv":
        # an environment of its own, built from the recorded lock file
        env["UV_PROJECT_ENVIRONMENT"] = str(stash.root / ".cache" / "venvs" / f"{tool.name}-{(lock_sha or 'nolock')[:12]}")
        if lock_sha and prepared.interpreter.lock_sha256() != lock_sha:
            warn("uv.lock at the recorded commit differs from the recorded lock sha256.")
    if prepared.entry[0] == "-m" and (tool.path / "src").is_dir():
        # a src layout: the worktree's package, not one installed from the user's checkout
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(tool.path / "src"), env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))) if p)
    prepared = replace(prepared, env=env)
    config_name = experiment_file.relative_to(config_dir).with_suffix("").as_posix()
    argv = tool_command(prepared, config_dir, config_name, record.overrides, out_dir)
    spec = JobSpec(
        id=new_id, tool=tool, experiment=record.experiment, experiment_file=experiment_file,
        overrides=tuple(record.overrides), argv=argv, cwd=job_cwd(tool, out_dir), env=env, run_dir=out_dir,
        interpreter=prepared.interpreter,
    )
    pin = ToolPin(record.tool_kind, record.tool_pinned_commit, record.tool_commit, bool(tool_root.patch),
                  list(record.tool_untracked), tool_root.patch)
    return spec, pin


def run_reproduction(stash: Stash, record: RunRecord, spec: JobSpec, pin: ToolPin, grace: float = 5.0):
    """Run the planned reproduction in the foreground, like a single run; (final record, signal or None)."""
    from .run import run_job
    from .supervise import Runner, run_in_foreground

    runner = Runner(grace=grace)
    extra = {"reproduces": record.id, "experiment_file": record.experiment_file}
    sha = file_sha256(spec.experiment_file)
    state, _ = inspect(stash.root, [])
    return run_in_foreground(runner, lambda: run_job(runner, stash.root, spec, pin, state, sha, stream=True, extra=extra))


def upstream_runs(stash: Stash, record: RunRecord) -> list:
    """The runs a pipeline stage's run consumed (its `upstream`), in order, as found under outputs/ and multirun/."""
    if not record.upstream:
        return []
    from ..index import Index

    index, found = Index(stash.root), []
    for run_id in record.upstream:
        folders = index.by_id(run_id)
        if not folders:
            raise StashError(f"Run {record.id} consumed run {run_id} (upstream), which is no longer under outputs/ or "
                             "multirun/: its upstream runs cannot be reproduced first. Nothing was run.")
        found.append(found_at(folders[-1]))
    return found


def repointed(record: RunRecord, moved: dict[str, str]) -> RunRecord:
    """A record whose overrides read the reproductions of its upstream runs (`moved`: run dir -> reproduction's)."""
    return replace(record, overrides=replaced(record.overrides, moved)) if moved else record

"""`experimentstash reproduce <run dir> [--check]`: run a past run again exactly as its run.json records it.

The tool is materialized at the recorded commit in a throw-away `git worktree` below .cache/experimentstash/
(the user's tools/<name> checkout is never touched), the recorded uncommitted changes (tool.diff) are applied,
the experiment file comes from the run dir's copy, and the other stash configs of the tool from the recorded
stash commit. The reproduction is a new run under outputs/ whose run.json says `reproduces: <original id>`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import git
import yaml

from . import StashError
from .invocation import console
from .job import JobSpec, hydra_value, new_run_id, prepare_tool
from .pins import ToolPin, stash_state
from .record import EXPERIMENT_COPY, PATCH_FILE, RUN_FILE, RUN_SCHEMA, read_json
from .registry import META, META_LOCAL, Stash, Tool, _deep_merge, _parse_tools

CACHE = Path(".cache") / "experimentstash"
REQUIRED = ("id", "tool", "experiment", "experiment_file", "overrides", "tool_commit", "env")
# files of a run dir that describe the run rather than being its output
BOOKKEEPING = {RUN_FILE, "stdout.log", "stderr.log", PATCH_FILE, EXPERIMENT_COPY, ".hydra/hydra.yaml"}


def load_run(run_dir: Path) -> dict:
    """The run.json of a run dir, checked for what reproduce needs."""
    if not run_dir.is_dir():
        raise StashError(f"{run_dir} is not a folder: give a run dir (outputs/<tool>/<experiment>/<id>).")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise StashError(
            f"{run_dir} holds no {RUN_FILE}: give a run dir such as outputs/<tool>/<experiment>/<id> "
            "(`experimentstash runs` lists them)."
        )
    record = read_json(path)
    schema = record.get("schema") if isinstance(record, dict) else None
    if not isinstance(schema, int):
        raise StashError(f"{path} has no valid 'schema' field: it is not a run record of experimentstash.")
    if schema > RUN_SCHEMA:
        raise StashError(
            f"{path} was written with run.json schema {schema}, newer than this experimentstash reads "
            f"(up to {RUN_SCHEMA}): upgrade experimentstash to reproduce it."
        )
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise StashError(f"{path} lacks {', '.join(missing)}: it cannot be reproduced.")
    return record


def _git(repo_dir: Path) -> git.Git:
    return git.Git(str(repo_dir))


def _has_commit(repo_dir: Path, commit: str) -> bool:
    try:
        _git(repo_dir).cat_file("-e", f"{commit}^{{commit}}")
        return True
    except git.GitCommandError:
        return False


def _ensure_commit(repo_dir: Path, commit: str, what: str) -> None:
    """The commit is in the repository, fetched from its remotes when it is not (yet) there."""
    if _has_commit(repo_dir, commit):
        return
    try:
        remotes = _git(repo_dir).remote().split()
    except git.GitCommandError:
        remotes = []
    for remote in remotes:
        try:
            _git(repo_dir).fetch("--quiet", remote, commit)
        except git.GitCommandError:
            continue
        if _has_commit(repo_dir, commit):
            return
    where = f" or its remotes ({', '.join(remotes)})" if remotes else ""
    raise StashError(
        f"The recorded {what} commit {commit} is not in {repo_dir}{where}: its history was rewritten or the "
        "commit was never pushed. Restore it (fetch it from wherever it still exists) to reproduce this run."
    )


def recorded_tool(stash: Stash, record: dict) -> Tool:
    """The tool's registration as meta.yaml had it at the recorded stash commit (this machine's meta.local.yaml
    on top), else as it is now."""
    name = record["tool"]
    commit = record.get("stash_commit")
    if commit:
        try:
            raw = yaml.safe_load(git.Repo(stash.root).git.show(f"{commit}:{META.as_posix()}")) or {}
            local = stash.root / META_LOCAL
            if local.is_file():
                raw = _deep_merge(raw, yaml.safe_load(local.read_text()) or {}, META_LOCAL)
            tools = _parse_tools(stash.root, raw)
            if name in tools:
                return tools[name]
        except (git.GitCommandError, git.InvalidGitRepositoryError, yaml.YAMLError, StashError, ValueError):
            pass
    return stash.tool(name)


def experiment_text(stash: Stash, record: dict, run_dir: Path) -> bytes:
    """The experiment file's contents when the run started: the run dir's copy, else the recorded stash commit's
    file, else today's file, whichever matches the recorded sha256."""
    want = record.get("experiment_sha256")
    candidates: list[tuple[str, bytes]] = []
    copy = run_dir / EXPERIMENT_COPY
    if copy.is_file():
        candidates.append((f"{copy}", copy.read_bytes()))
    if record.get("stash_commit"):
        try:
            text = git.Repo(stash.root).git.show(
                f"{record['stash_commit']}:{record['experiment_file']}", stdout_as_string=False)
            candidates.append((f"{record['experiment_file']} at stash commit {record['stash_commit'][:10]}", text))
        except (git.GitCommandError, git.InvalidGitRepositoryError):
            pass
    current = stash.root / record["experiment_file"]
    if current.is_file():
        candidates.append((str(current), current.read_bytes()))
    for _where, data in candidates:
        if want is None or hashlib.sha256(data).hexdigest() == want:
            return data
    raise StashError(
        f"The experiment file of run {record['id']} ({record['experiment_file']}, sha256 {str(want)[:12]}...) "
        f"is not available: {run_dir / EXPERIMENT_COPY} is missing or changed and no commit or file holds "
        "those contents."
    )


def _extract_configs(stash: Stash, tool: str, commit: str | None, target: Path) -> bool:
    """configs/<tool>/ at the stash commit into target/configs/<tool>/; False when there is no such commit."""
    (target / "configs" / tool).mkdir(parents=True, exist_ok=True)
    if not commit:
        return False
    try:
        data = git.Repo(stash.root).git.archive("--format=tar", commit, "--", f"configs/{tool}",
                                                stdout_as_string=False)
    except (git.GitCommandError, git.InvalidGitRepositoryError):
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

    def __init__(self, stash: Stash, tool: Tool, record: dict, run_dir: Path, new_id: str):
        self.repo_dir: Path | None = None
        self.worktree: Path | None = None
        kind = record.get("tool_kind") or "submodule"
        commit = record["tool_commit"]
        if not commit:
            raise StashError(
                f"Run {record['id']} recorded no tool commit (the stash was no git repository): "
                "there is nothing to reproduce it from."
            )
        cache = _ignore_cache(stash.root)
        self.worktree = cache / "worktrees" / f"{tool.name}-{new_id}"
        self.worktree.parent.mkdir(parents=True, exist_ok=True)
        if kind == "in-tree":
            self.repo_dir = stash.root
            what = "stash"
        else:
            if not (tool.path / ".git").exists():
                raise StashError(
                    f"Tool '{tool.name}' is a submodule that is not checked out: run "
                    f"`git submodule update --init {tool.rel_path}` first."
                )
            self.repo_dir = tool.path
            what = f"tool '{tool.name}'"
        _ensure_commit(self.repo_dir, commit, what)
        try:
            _git(self.repo_dir).worktree("add", "--detach", "--quiet", str(self.worktree), commit)
        except git.GitCommandError as err:
            self.worktree = None
            raise StashError(f"Cannot check out {commit[:10]} of {what} in a worktree: {err.stderr.strip()}") from None
        self.tool_dir = self.worktree / tool.rel_path if kind == "in-tree" else self.worktree
        self.patch = b""
        try:
            self._apply(record, run_dir, commit)
        except BaseException:
            self.close()
            raise

    def _apply(self, record: dict, run_dir: Path, commit: str) -> None:
        if record.get("tool_diff"):
            patch = run_dir / record["tool_diff"]
            if not patch.is_file():
                raise StashError(
                    f"Run {record['id']} was made with uncommitted changes saved in {patch}, which is missing: "
                    "without it the run cannot be reproduced."
                )
            self.patch = patch.read_bytes()
            if self.patch:
                try:
                    _git(self.worktree).apply("--binary", "--whitespace=nowarn", str(patch.resolve()))
                except git.GitCommandError as err:
                    raise StashError(f"{patch} does not apply to {commit[:10]}: {err.stderr.strip()}") from None

    def close(self) -> None:
        if self.worktree is not None and self.repo_dir is not None:
            try:
                _git(self.repo_dir).worktree("remove", "--force", str(self.worktree))
            except git.GitCommandError:
                shutil.rmtree(self.worktree, ignore_errors=True)
                try:
                    _git(self.repo_dir).worktree("prune")
                except git.GitCommandError:
                    pass
            self.worktree = None


def _recorded_env(record: dict, tool: Tool):
    """The registration's env setting that gives the recorded interpreter kind."""
    env = record.get("env") or {}
    kind = env.get("kind")
    if kind == "python":
        executable = env.get("executable")
        if executable and Path(executable).is_file():
            return {"python": executable}
        if isinstance(tool.env, dict):
            console.print(f"[yellow]warning:[/] the recorded interpreter {executable} does not exist; "
                          f"using {tool.env['python']} from the tool's env setting.", markup=True)
            return tool.env
        raise StashError(
            f"Run {record['id']} ran with the interpreter {executable}, which does not exist here: "
            f"set tools.{tool.name}.env: {{python: <path>}} in configs/meta.local.yaml."
        )
    if kind in ("current", "uv"):
        return kind
    return tool.env


def plan_reproduction(stash: Stash, record: dict, run_dir: Path, stack: ExitStack) -> tuple[JobSpec, ToolPin]:
    new_id = new_run_id()
    registered = recorded_tool(stash, record)
    tool_root = Materialized(stash, registered, record, run_dir, new_id)
    stack.callback(tool_root.close)
    tool = replace(registered, path=tool_root.tool_dir, env=_recorded_env(record, registered))

    # configs/<tool>/ of the recorded stash commit, with the experiment file as the run dir recorded it
    work = _ignore_cache(stash.root) / "reproduce" / new_id
    stack.callback(shutil.rmtree, work, True)
    if not _extract_configs(stash, tool.name, record.get("stash_commit"), work):
        console.print("[yellow]warning:[/] no stash commit recorded: the tool's other stash configs are taken "
                      f"from configs/{tool.name}/ as it is now.", markup=True)
        current = stash.root / "configs" / tool.name
        if current.is_dir():
            shutil.copytree(current, work / "configs" / tool.name, dirs_exist_ok=True)
    elif record.get("stash_dirty"):
        console.print("[yellow]warning:[/] the stash had uncommitted changes when the run started; configs other "
                      f"than the experiment file come from stash commit {record['stash_commit'][:10]}.", markup=True)
    config_dir = work / "configs" / tool.name
    rel = Path(record["experiment_file"])
    prefix = Path("configs") / tool.name
    if not rel.is_relative_to(prefix):
        raise StashError(f"run.json experiment_file '{rel}' is not below {prefix}/: the record is damaged.")
    experiment_file = config_dir / rel.relative_to(prefix)
    experiment_file.parent.mkdir(parents=True, exist_ok=True)
    experiment_file.write_bytes(experiment_text(stash, record, run_dir))

    interpreter, entry, env = prepare_tool(stash, tool)
    env = dict(env)
    lock_sha = (record.get("env") or {}).get("lock_sha256")
    if interpreter.kind == "uv":
        # an environment of its own, built from the recorded lock file
        env["UV_PROJECT_ENVIRONMENT"] = str(stash.root / ".cache" / "venvs" / f"{tool.name}-{(lock_sha or 'nolock')[:12]}")
        if lock_sha and interpreter.lock_file and hashlib.sha256(interpreter.lock_file.read_bytes()).hexdigest() != lock_sha:
            console.print("[yellow]warning:[/] uv.lock at the recorded commit differs from the recorded lock sha256.",
                          markup=True)
    if entry[0] == "-m" and (tool.path / "src").is_dir():
        # a src layout: the worktree's package, not one installed from the user's checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tool.path / "src"), os.environ.get("PYTHONPATH")) if p)
    out_dir = stash.root / "outputs" / tool.name / record["experiment"] / new_id
    fixed = [o.replace("${run_dir}", str(out_dir)) for o in tool.overrides]
    overrides = [str(o) for o in record["overrides"]]
    argv = (
        *interpreter.prefix, *entry,
        f"--config-dir={config_dir}",
        f"--config-name={experiment_file.relative_to(config_dir).with_suffix('').as_posix()}",
        *fixed, *overrides,
        f"hydra.run.dir={hydra_value(str(out_dir))}",
    )
    spec = JobSpec(
        id=new_id, tool=tool, experiment=record["experiment"], experiment_file=experiment_file,
        overrides=tuple(overrides), argv=argv, cwd=tool.path, env=env, run_dir=out_dir, interpreter=interpreter,
    )
    pin = ToolPin(
        record.get("tool_kind") or "submodule", record.get("tool_pinned_commit"), record["tool_commit"],
        bool(tool_root.patch), list(record.get("tool_untracked") or []), tool_root.patch,
    )
    return spec, pin


def run_reproduction(stash: Stash, record: dict, spec: JobSpec, pin: ToolPin, grace: float = 5.0) -> tuple[dict, int | None]:
    """Run the planned reproduction in the foreground, like a single run; (final record, signal or None)."""
    from .execute import Runner, run_in_foreground

    runner = Runner(stash.root, grace=grace)
    extra = {"reproduces": record["id"], "experiment_file": record["experiment_file"]}
    sha = hashlib.sha256(spec.experiment_file.read_bytes()).hexdigest()
    return run_in_foreground(
        runner, lambda: runner.run(spec, pin, stash_state(stash.root), sha, stream=True, extra=extra)
    )


def _normalized(path: Path, run_dir: Path) -> bytes:
    data = path.read_bytes()
    if path.parent.name == ".hydra":
        # Hydra's own record of the config holds the run dir wherever an override used ${run_dir}
        data = data.replace(str(run_dir).encode(), b"${run_dir}")
    return data


def output_files(run_dir: Path) -> dict[str, str]:
    """sha256 of every file a run wrote, bookkeeping (logs, run.json, tool.diff, Hydra's hydra.yaml) excluded."""
    hashes = {}
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(run_dir).as_posix()
        if rel in BOOKKEEPING or path.suffix == ".log" or path.name.startswith(f".{RUN_FILE}."):
            continue
        hashes[rel] = hashlib.sha256(_normalized(path, run_dir)).hexdigest()
    return hashes


def _flat(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "result": value}


def compare(original: dict, original_dir: Path, new: dict, new_dir: Path) -> list[tuple[str, str, str]]:
    """[(what, identical|differs, detail)] for the result values and the output files of two runs."""
    rows = []
    old_result, new_result = _flat(original.get("result")), _flat(new.get("result"))
    for key in sorted(set(old_result) | set(new_result)):
        a, b = old_result.get(key, "<missing>"), new_result.get(key, "<missing>")
        same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
        detail = repr(a) if same else f"{a!r} -> {b!r}"
        rows.append((f"result {key}", "identical" if same else "differs", detail))
    old_files, new_files = output_files(original_dir), output_files(new_dir)
    for rel in sorted(set(old_files) | set(new_files)):
        if rel not in new_files:
            rows.append((rel, "differs", "only in the original run"))
        elif rel not in old_files:
            rows.append((rel, "differs", "only in the reproduction"))
        elif old_files[rel] == new_files[rel]:
            rows.append((rel, "identical", f"sha256 {old_files[rel][:12]}"))
        else:
            rows.append((rel, "differs", f"sha256 {old_files[rel][:12]} -> {new_files[rel][:12]}"))
    return rows


def cmd_reproduce(args, root: Path) -> int:
    from rich.console import Console
    from rich.markup import escape

    from .execute import exit_code_for

    stash = Stash.load(root)
    run_dir = Path(args.run_dir).expanduser()
    run_dir = (run_dir if run_dir.is_absolute() else Path.cwd() / run_dir).resolve()
    record = load_run(run_dir)
    with ExitStack() as stack:
        spec, pin = plan_reproduction(stash, record, run_dir, stack)
        extra = " + tool.diff" if pin.patch else ""
        console.print(
            f"reproducing run {record['id']}: tool {spec.tool.name} at {pin.commit[:10]}{extra}, "
            f"experiment {record['experiment']}, overrides {' '.join(record['overrides']) or '(none)'}",
            highlight=False,
        )
        outcome, signum = run_reproduction(stash, record, spec, pin, grace=args.grace)
    status = outcome.get("status", "interrupted")
    rel = spec.run_dir.relative_to(stash.root)
    style = "green" if status == "succeeded" else "red"
    console.print(f"[{style}]{status}[/] in {outcome.get('duration_s') or 0:.1f}s: {rel} "
                  f"(reproduces {record['id']})", markup=True, highlight=False)
    if status != "succeeded":
        console.print(f"  logs: {rel}/stdout.log, {rel}/stderr.log", highlight=False)
        return exit_code_for(status, outcome.get("exit_code"), signum)
    if not args.check:
        return 0
    rows = compare(record, run_dir, outcome, spec.run_dir)
    out = Console(highlight=False)
    for what, verdict, detail in rows:
        colour = "green" if verdict == "identical" else "red"
        out.print(f"[{colour}]{verdict:9}[/] {escape(what)}  [dim]{escape(detail)}[/]")
    differs = sum(1 for _, v, _ in rows if v == "differs")
    if not rows:
        out.print("nothing to compare: neither run wrote a result or an output file")
    elif differs:
        out.print(f"[red]differs[/]: {differs} of {len(rows)} compared items")
    else:
        out.print(f"[green]identical[/]: all {len(rows)} compared items")
    return 1 if differs else 0

"""Plan one job: (tool, experiment, tool overrides) -> JobSpec. Pure: no subprocess, nothing written."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from .. import StashError, stash_options
from ..overrides import override_key
from ..registry import Stash, Tool
from .argv import is_launcher_override, override_value


@dataclass(frozen=True)
class Interpreter:
    kind: str  # current | uv | python
    executable: str
    prefix: tuple[str, ...]  # argv before the entrypoint
    lock_file: Path | None = None

    def version(self) -> str | None:
        return platform.python_version() if self.kind == "current" else _python_version(self.executable)

    def lock_sha256(self) -> str | None:
        return file_sha256(self.lock_file) if self.lock_file else None


@lru_cache(maxsize=None)
def _python_version(executable: str) -> str | None:
    try:
        out = subprocess.run([executable, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


@lru_cache(maxsize=4096)
def file_sha256(path: Path) -> str:
    """sha256 of a file, read once per launch (an experiment file, a lock file)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class PreparedTool:
    """What running a tool needs, found once per tool: its interpreter, entrypoint and launcher-set environment."""

    tool: Tool
    interpreter: Interpreter
    entry: tuple[str, ...]
    env: dict[str, str]


def tool_command(prepared: PreparedTool, config_dir: Path, config_name: str, overrides,
                 run_dir: Path | None, fixed: bool = True) -> tuple[str, ...]:
    """The one place a tool's command line is built: single runs, sweep jobs, Slurm tasks, check, reproduce.

    The tool's fixed overrides from meta.yaml come first (with ${run_dir} filled in), then the user's as typed;
    `hydra.run.dir` sends everything the tool writes into the run dir."""
    given = [o.replace("${run_dir}", str(run_dir)) for o in prepared.tool.overrides] if fixed else []
    tail = [f"hydra.run.dir={hydra_value(str(run_dir))}"] if run_dir is not None else []
    return (*prepared.interpreter.prefix, *prepared.entry, f"--config-dir={config_dir}",
            f"--config-name={config_name}", *given, *overrides, *tail)


@dataclass(frozen=True)
class JobSpec:
    id: str
    tool: Tool
    experiment: str
    experiment_file: Path
    overrides: tuple[str, ...]  # the user's tool overrides, as typed
    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str]  # only what the launcher sets on top of its own environment
    run_dir: Path
    interpreter: Interpreter
    timeout: float | None = None
    sweep: dict | None = None  # {"id": sweep id, "num": job number}
    fingerprint: object = None  # fingerprint.Fingerprint, when computed
    tracker: str = "none"  # the experiment tracker the job reports to (trackers.py): none, wandb or mlflow
    stage: dict | None = None  # a pipeline's stage: {"pipeline", "stage", "upstream" (the run ids it consumed)}
    launcher: dict | None = None  # a sweep's job: its backend and launcher options (run.json `launcher`)


@lru_cache(maxsize=4096)
def _meta_value(word: str):
    key, _, text = word.partition("=")
    value = override_value(word)
    if key.startswith("stash."):
        return value
    if isinstance(value, (dict, list)):  # a name is one word: `experiment=[a,b]` is no file, a sweep is `-m a,b`
        raise StashError(f"'{word}': give one {key} (several, one job each: -m {key}=a,b).")
    if isinstance(value, (int, float, bool)):
        return text  # ids stay text as typed: experiment=2024 is the file 2024.yaml, not a number
    return value


def plain_base(base) -> dict:
    """The launcher's tool, experiment, pipeline and stash options as plain values, read once for a sweep's
    thousands of jobs (each read of Hydra's config resolves it again)."""
    return {"tool": base["tool"], "experiment": base["experiment"], "pipeline": base.get("pipeline"),
            "stash": {k: base["stash"].get(k) for k in stash_options.NAMES}}


def split_job(words, base) -> tuple[str | None, str | None, dict, list[str]]:
    """One job's overrides over the launcher's config -> (tool, experiment, stash options, tool overrides)."""
    tool = None if base["tool"] is None else str(base["tool"])
    experiment = None if base["experiment"] is None else str(base["experiment"])
    options = {k: base["stash"].get(k) for k in stash_options.NAMES}
    tool_words = []
    for word in words:
        key = override_key(word)
        if key == "tool":
            tool = _meta_value(word)
        elif key == "experiment":
            experiment = _meta_value(word)
        elif key.startswith("stash."):
            stash_options.check_name(key)
            options[key[len("stash."):]] = _meta_value(word)
        elif not is_launcher_override(word):
            tool_words.append(word)
    stash_options.check_values(options)
    return tool, experiment, options, tool_words


def pipeline_of(words, base) -> str | None:
    """The pipeline a job's overrides name (pipeline=<name>), over the launcher's config."""
    chosen = base.get("pipeline")
    for word in words:
        if override_key(word) == "pipeline":
            chosen = _meta_value(word)
    return None if chosen is None else str(chosen)


def reuses(spec: "JobSpec", options: dict) -> bool:
    """stash.reuse on the command line, else the tool's `reuse:` in meta.yaml."""
    return spec.tool.reuse if options.get("reuse") is None else bool(options["reuse"])


def base_config() -> dict:
    """The launcher's defaults (tool, experiment, stash.*) without Hydra, for a single run started directly and
    for replaying recorded jobs: like Hydra's composed config, read by key."""
    return {"tool": None, "experiment": None, "pipeline": None, "stash": stash_options.defaults()}


def new_run_id() -> str:
    """A sortable id unique even for runs started in the same second."""
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{secrets.token_hex(3)}"


def resolve_interpreter(stash: Stash, tool: Tool) -> Interpreter:
    env = tool.env
    if env == "auto":
        env = "uv" if (tool.path / "uv.lock").is_file() else "current"
    if env == "current":
        return Interpreter("current", sys.executable, (sys.executable,))
    if env == "uv":
        uv = shutil.which("uv")
        if uv is None:
            raise StashError(
                f"Tool '{tool.name}' runs with env: uv but `uv` is not on PATH: "
                "install it (pip install uv) or set env: current in configs/meta.local.yaml."
            )
        lock = tool.path / "uv.lock"
        if not lock.is_file():
            raise StashError(f"Tool '{tool.name}' runs with env: uv but {tool.rel_path}/uv.lock is missing: run `uv lock` there.")
        return Interpreter("uv", uv, (uv, "run", "--project", str(tool.path), "--frozen", "python"), lock)
    python = Path(env["python"]).expanduser()
    python = python if python.is_absolute() else stash.root / python
    if not python.is_file():
        raise StashError(
            f"Tool '{tool.name}': interpreter {python} (env.python) does not exist: "
            "fix the path in configs/meta.yaml or configs/meta.local.yaml."
        )
    return Interpreter("python", str(python), (str(python),))


def launcher_venv(stash: Stash, tool: Tool) -> Path:
    """Where a run makes a uv tool's environment when the tool's checkout has none (.venv)."""
    return stash.root / ".cache" / "venvs" / tool.name


def setup_missing(stash: Stash, tool: Tool) -> str | None:
    """What the tool still needs before it runs here, with the command that gives it; None when nothing."""
    try:
        interpreter = prepare_tool(stash, tool).interpreter
    except StashError as err:
        return str(err)
    if interpreter.kind == "uv" and not (tool.path / ".venv").exists() and not launcher_venv(stash, tool).exists():
        return (f"Tool '{tool.name}': its uv environment is not built: `cd {tool.rel_path} && uv sync --frozen` "
                "builds it (or the first run does, into .cache/venvs/).")
    return None


def prepare_tool(stash: Stash, tool: Tool) -> PreparedTool:
    """The interpreter, entrypoint argv and launcher-set environment of a tool, checked once per tool."""
    if not tool.path.is_dir() or not any(tool.path.iterdir()):
        raise StashError(
            f"Tool '{tool.name}': {tool.rel_path} is empty or missing. If it is a submodule, "
            f"run `git submodule update --init {tool.rel_path}`; otherwise fix path in configs/meta.yaml."
        )
    interpreter = resolve_interpreter(stash, tool)
    return PreparedTool(tool, interpreter, _check_entrypoint(tool, interpreter), launcher_env(stash, tool))


def _check_entrypoint(tool: Tool, interpreter: Interpreter) -> tuple[str, ...]:
    if tool.entrypoint[0] == "-m":
        module = tool.entrypoint[1]
        rel = Path(*module.split("."))
        candidates = [tool.path / base / rel.with_suffix(".py") for base in ("", "src")]
        candidates += [tool.path / base / rel / "__main__.py" for base in ("", "src")]
        if any(p.is_file() for p in candidates):
            return tuple(tool.entrypoint)
        if interpreter.kind == "current" and importlib.util.find_spec(module.split(".")[0]) is None:
            raise StashError(
                f"Tool '{tool.name}': entrypoint module '{module}' is neither in {tool.rel_path} "
                "nor installed: fix entrypoint in configs/meta.yaml."
            )
        return tuple(tool.entrypoint)
    script = (tool.path / tool.entrypoint[0]).resolve()
    if not script.is_relative_to(tool.path):
        raise StashError(
            f"Tool '{tool.name}': entrypoint {tool.entrypoint[0]} leads outside {tool.rel_path} (a link): the tool's "
            "pin would not cover the script. Fix entrypoint in configs/meta.yaml."
        )
    if not script.is_file():
        raise StashError(
            f"Tool '{tool.name}': entrypoint script {tool.rel_path}/{tool.entrypoint[0]} does not exist: "
            "fix entrypoint in configs/meta.yaml."
        )
    return (str(tool.path / tool.entrypoint[0]),)


_PLAIN = re.compile(r"[\w./+-]+", re.ASCII)  # Hydra's grammar takes no other letters unquoted


def hydra_value(text: str) -> str:
    """`text` as the value of an override that Hydra's grammar reads back as exactly this text: as it is when it
    is plain text, else in single quotes. Inside quotes Hydra takes a backslash as it is, except in a run of them
    before a quote or the closing quote: such a run is doubled."""
    if _PLAIN.fullmatch(text) and override_value(f"k={text}") == text:  # not a number, true, null, ...
        return text
    return "'" + re.sub(r"\\+(?='|$)", lambda run: run.group(0) * 2, text).replace("'", "\\'") + "'"


def launcher_env(stash: Stash, tool: Tool) -> dict[str, str]:
    env = {"PYTHONUNBUFFERED": "1"}
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # bytecode goes to the stash's cache, never into the tool's checkout. The prefix applies to every module,
        # installed ones too, so where no bytecode may be written it would only recompile them at each start.
        env["PYTHONPYCACHEPREFIX"] = str(stash.root / ".cache" / "pycache")
    if tool.search_packages:
        env["HYDRA_SEARCH_PACKAGES"] = ":".join(tool.search_packages)
    if (tool.path / "uv.lock").is_file() and not (tool.path / ".venv").exists():
        # keep a new uv environment out of the tool's checkout
        env["UV_PROJECT_ENVIRONMENT"] = str(launcher_venv(stash, tool))
    if tool.workdir == "run_dir" and tool.entrypoint[0] == "-m":
        # started in its run dir, `python -m` no longer finds the tool's package in the working dir: the same
        # folder goes first on the import path instead
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tool.path), os.environ.get("PYTHONPATH")) if p)
    return env


def job_cwd(tool: Tool, run_dir: Path) -> Path:
    """Where the tool starts (meta.yaml `workdir`): its folder, or its run dir for tools that keep their outputs
    under the working dir (W&B's `wandb.save(..., base_path=os.getcwd())`)."""
    return run_dir if tool.workdir == "run_dir" else tool.path


def plan_job(
    stash: Stash,
    tool_name: str | None,
    experiment: str | None,
    overrides: list[str] | tuple[str, ...],
    run_dir: Path,
    run_id: str,
    *,
    timeout: float | None = None,
    sweep: dict | None = None,
    prepared: dict[str, PreparedTool] | None = None,
    tracker: str | None = None,
) -> JobSpec:
    """`prepared` caches prepare_tool() across the jobs of a sweep; `tracker` (stash.tracker) wins over the
    tool's meta.yaml setting."""
    tool = stash.tool(tool_name)
    experiment_file = stash.experiment_file(tool.name, experiment)
    cache = prepared if prepared is not None else {}
    if tool.name not in cache:
        cache[tool.name] = prepare_tool(stash, tool)
    ready = cache[tool.name]
    argv = tool_command(ready, stash.root / "configs" / tool.name, stash.config_name(tool.name, experiment_file),
                        overrides, run_dir)
    return JobSpec(
        id=run_id,
        tool=tool,
        experiment=experiment,
        experiment_file=experiment_file,
        overrides=tuple(overrides),
        argv=argv,
        cwd=job_cwd(tool, run_dir),
        env=dict(ready.env),
        run_dir=run_dir,
        interpreter=ready.interpreter,
        timeout=timeout,
        sweep=sweep,
        tracker=tracker or tool.tracker,
    )

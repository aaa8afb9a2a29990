"""run.json and sweep.json: build, write atomically, read back."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import StashError
from .job import Interpreter, JobSpec
from .pins import StashState, ToolPin

RUN_SCHEMA = 1
SWEEP_SCHEMA = 1
RUN_FILE = "run.json"
SWEEP_FILE = "sweep.json"
PATCH_FILE = "tool.diff"
EXPERIMENT_COPY = "experiment.yaml"  # the experiment file as it was when the run started
_UMASK = os.umask(0)
os.umask(_UMASK)
FINAL = ("succeeded", "failed", "timeout", "interrupted", "cancelled", "preempted")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json(path: Path, data: dict) -> None:
    """Replace `path` atomically: a reader sees the old or the new file, never half of one."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # as readable as any file the user writes, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StashError(f"{path} does not exist.") from None
    except json.JSONDecodeError as err:
        raise StashError(f"{path} is not valid JSON (line {err.lineno}): {err.msg}.") from None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def _python_version(executable: str) -> str | None:
    try:
        out = subprocess.run(
            [executable, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True, timeout=30,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _venv_python(venv: Path) -> tuple[str | None, str | None]:
    cfg = venv / "pyvenv.cfg"
    version = None
    if cfg.is_file():
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version_info", "version"):
                version = value.strip()
    python = venv / "bin" / "python"
    return (str(python) if python.exists() else None), version


def env_record(spec: JobSpec) -> dict:
    interp: Interpreter = spec.interpreter
    record = {"kind": interp.kind, "python": None, "executable": interp.executable,
              "lock_file": None, "lock_sha256": None}
    if interp.kind == "current":
        record["python"] = platform.python_version()
    elif interp.kind == "python":
        record["python"] = _python_version(interp.executable)
    else:
        venv = Path(spec.env.get("UV_PROJECT_ENVIRONMENT") or spec.tool.path / ".venv")
        record["uv"] = interp.executable
        record["executable"], record["python"] = _venv_python(venv)
    if interp.lock_file is not None:
        record["lock_file"] = os.path.relpath(interp.lock_file, spec.tool.path)
        record["lock_sha256"] = sha256(interp.lock_file)
    record["variables"] = dict(spec.env)
    return record


def run_record(spec: JobSpec, root: Path, pin: ToolPin, stash: StashState, experiment_sha: str) -> dict:
    """The record of a run at its start (status running)."""
    return {
        "schema": RUN_SCHEMA,
        "id": spec.id,
        "status": "running",
        "exit_code": None,
        "tool": spec.tool.name,
        "experiment": spec.experiment,
        "experiment_file": spec.experiment_file.relative_to(root).as_posix(),
        "experiment_sha256": experiment_sha,
        "overrides": list(spec.overrides),
        "tool_commit": pin.commit,
        "tool_pinned_commit": pin.pinned,
        "tool_kind": pin.kind,
        "tool_dirty": pin.dirty,
        "tool_diff": PATCH_FILE if pin.patch else None,
        "tool_untracked": list(pin.untracked),
        "stash_commit": stash.commit,
        "stash_dirty": stash.dirty,
        "env": env_record(spec),
        "command": list(spec.argv),
        "cwd": os.path.relpath(spec.cwd, root),
        "run_dir": os.path.relpath(spec.run_dir, root),
        "host": socket.gethostname(),
        "started_at": now_iso(),
        "ended_at": None,
        "duration_s": None,
        "logs": {"stdout": "stdout.log", "stderr": "stderr.log"},
        "result": None,
        "sweep": spec.sweep,
    }


def read_result(spec: JobSpec):
    """The tool's result file (meta.yaml `result:`) parsed, or None when absent or unreadable."""
    if not spec.tool.result:
        return None
    try:
        return json.loads((spec.run_dir / spec.tool.result).read_text())
    except (OSError, ValueError):
        return None

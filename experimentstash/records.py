"""The run record (run.json) and the sweep record (sweep.json): one Status vocabulary, write, read, validate.

Everything read back from disk is untrusted: a record from a colleague, an older version or a damaged file.
Every record file is read by read_json(): a regular file (no link, device or FIFO; never a blocking open), of
bounded size and nesting. Reading checks every field's type and shape (40-hex commits, known statuses, plain
names, relative paths without '..') and refuses a newer schema; callers confine paths with `inside()`. A record
that fails is one BadRecord naming the file and the field.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from . import StashError
from .output import excerpt
from .signing import record_key, refusal, sign

RUN_SCHEMA = 2  # 2: owner, fingerprint, statuses lost and reused
SWEEP_SCHEMA = 2  # 2: resolved launcher options and which were given; backend fields per job
RUN_FILE = "run.json"
SWEEP_FILE = "sweep.json"
RUN_FOLDERS = ("outputs", "multirun")  # where run dirs are looked for, below the stash root
LOCK_FILE = ".experimentstash.lock"  # held by the launcher that runs jobs of a sweep
PATCH_FILE = "tool.diff"
EXPERIMENT_COPY = "experiment.yaml"  # the experiment file as it was when the run started
_UMASK = os.umask(0)
os.umask(_UMASK)
# what a record file may be when read back (larger, or nested deeper, is refused as damaged)
MAX_RUN_BYTES = 32 << 20  # run.json: room for a result file of MAX_RESULT_BYTES, indented
MAX_RESULT_BYTES = 4 << 20  # a tool's result file (meta.yaml `result:`)
MAX_SWEEP_BYTES = 1 << 30  # sweep.json: 1,000,000 jobs of up to 1 KiB each
MAX_PATCH_BYTES = 256 << 20  # a run's tool.diff (its uncommitted changes, untracked files included)
MAX_DEPTH = 100  # levels of nested lists and objects


class Status(str, Enum):
    """Every status a job or run can have, in the order tables and counts show them."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    REUSED = "reused"  # a sweep job skipped because an earlier run with the same fingerprint succeeded
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"
    LOST = "lost"  # recorded as running, but the process that ran it is gone

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)

    @property
    def ok(self) -> bool:
        return self in (Status.SUCCEEDED, Status.REUSED)

    @property
    def style(self) -> str:
        """rich style of the word in tables and progress lines."""
        return _STYLE[self]

    @property
    def ansi(self) -> str:
        """The same colour as an ANSI code, for plain-text tables."""
        return _ANSI[_STYLE[self].split()[-1]]


_STYLE = {
    Status.PENDING: "dim", Status.RUNNING: "cyan", Status.SUCCEEDED: "green", Status.REUSED: "green",
    Status.FAILED: "red", Status.TIMEOUT: "red", Status.INTERRUPTED: "yellow", Status.CANCELLED: "yellow",
    Status.PREEMPTED: "yellow", Status.LOST: "magenta",
}
_ANSI = {"dim": "2", "cyan": "36", "green": "32", "red": "31", "yellow": "33", "magenta": "35"}
STATUS_WORDS = tuple(s.value for s in Status)


# --- writing --------------------------------------------------------------------------------------------------

def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value) -> datetime | None:
    """An ISO 8601 time of a record (UTC), or None when it is none."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def write_json(path: Path, data: dict) -> None:
    """Replace `path` atomically: a reader sees the old or the new file, never half of one."""
    write_text(path, to_json(data, indent=2) + "\n")


NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def finite(value):
    """`value` with NaN, Infinity and -Infinity (which JSON has no words for) as the strings "NaN", "Infinity",
    "-Infinity"; readers of records take those strings back as numbers (numbers_back)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def numbers_back(value):
    """The strings "NaN", "Infinity" and "-Infinity" of a record's result as the numbers they stand for."""
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: numbers_back(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_back(v) for v in value]
    return value


def to_json(data, indent: int | None = None) -> str:
    """Strict JSON of a record or of output for scripts: never a bare NaN or Infinity."""
    try:
        return json.dumps(data, indent=indent, allow_nan=False)
    except ValueError:  # a non-finite number somewhere: the rare case pays for the walk
        return json.dumps(finite(data), indent=indent, allow_nan=False)


_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")


def redact(text: str) -> str:
    """Credentials in URLs never recorded or printed: scheme://user:secret@host -> scheme://user:***@host (a lone
    token before the '@' -> ***@host)."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: m.group().split(":", 1)[0] + ":***@" if ":" in m.group() else "***@", text)


def write_run(root: Path, run_dir: Path, record: "RunRecord", signed: bool = True) -> None:
    """The one writer of run.json (the Runner at a run's start and end, a Slurm task's signal handler, and
    Sweep.agree when a run's status is settled from outside it): signed with the stash's key (signing.py), unless
    `signed` is False (a record read back that was not this stash's stays unsigned when it is updated)."""
    data = finite(record.to_dict())  # signed as written: NaN and Infinity as the strings that a reader sees
    data.pop("signature", None)
    key = record_key(root, create=True) if signed else None
    write_json(run_dir / RUN_FILE, sign(data, key) if key else data)
    _touch_parent(root, run_dir)


def _touch_parent(root: Path, run_dir: Path) -> None:
    """Give the folder that holds a run dir below outputs/ or multirun/ a new time: replacing run.json changes only
    the run dir's, and the index (index.py) looks at the folders above run dirs, not at every run dir. A folder
    that takes no new time (another user's) leaves the record to the index's checks in turn."""
    if any(run_dir.is_relative_to(root / base) for base in RUN_FOLDERS):
        try:
            os.utime(run_dir.parent)
        except OSError:
            pass


def is_signed(root: Path, record: "RunRecord") -> bool:
    """A record read back carries this stash's signature over what it says (asked before it is changed)."""
    return refusal(finite(record.to_dict()), root) is None


def _probe(folder: Path) -> None:
    """Create and remove a file in `folder`: OSError when it takes none."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".experimentstash.", suffix=".probe")
    os.close(fd)
    os.unlink(tmp)


def check_writable(path: Path) -> None:
    """A StashError naming `path` when it cannot be written the way write_text() replaces it: a file created in
    its folder, and the file itself opened for writing. Tried, not guessed from permission bits (root, read-only
    file systems, `chattr +i`), and nothing is changed."""
    try:
        _probe(path.parent)
        if path.exists():
            os.close(os.open(path, os.O_WRONLY))
    except OSError as err:
        raise StashError(f"Cannot write {path}: {err.strerror}. Make it writable (or free space) and run the "
                         "command again; nothing was changed.") from None


def folder_problem(path: Path) -> str | None:
    """Why `path` cannot be, or become, a folder to write into (a sweep dir), in words; None when it can."""
    for at in (path, *path.parents):
        try:
            mode = os.stat(at).st_mode
        except OSError as err:
            if err.errno == errno.ENOENT and os.path.islink(at):
                return f"{at} is a link that leads nowhere (to {os.readlink(at)})"
            if err.errno == errno.ELOOP and os.path.islink(at):
                return f"{at} is a link that leads round in a loop"
            if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                continue  # the cause is further up
            return f"{at} cannot be looked at: {err.strerror}"
        if stat.S_ISDIR(mode):
            try:
                _probe(at)
            except OSError as err:
                return f"{at} cannot be written: {err.strerror}"
            return None
        kind = ("a file" if stat.S_ISREG(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a named pipe" if stat.S_ISFIFO(mode) else "a socket")
        return f"{at} is {kind}, not a folder"
    return None


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


class Reserve:
    """Disk space set aside next to a record, given back just before the record's last write.

    When the tool fills the disk, the final record (and the tail of the logs that did not fit) still lands."""

    SIZE = 64 * 1024

    def __init__(self, folder: Path, size: int = SIZE):
        self.path = folder / ".experimentstash.reserve"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)  # blocks of its own, without writing them
        finally:
            os.close(fd)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def is_disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


def flatten(value, prefix: str = "") -> dict[str, Any]:
    """A result (or config) as dotted keys: {"a": {"b": 1}} -> {"a.b": 1}; a value that is no mapping is "result"."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "result": value}


def interpreter_identity(env: dict) -> tuple:
    """What tells a run's interpreter (its record's `env`) from another's: the version, the file the executable
    resolves to and the virtual environment it starts in (a venv's bin/python links to a base interpreter that
    other venvs share). Two paths of one interpreter (.venv/bin/python, .venv/bin/python3) give one identity; a
    path that does not exist on this machine stands for itself."""
    executable = env.get("executable")
    if not executable or not os.path.isfile(executable):
        return env.get("python"), executable, None
    path = Path(executable)
    venv = next((d for d in (path.parent, path.parent.parent) if (d / "pyvenv.cfg").is_file()), None)
    return env.get("python"), os.path.realpath(path), venv and os.path.realpath(venv)


# --- validation -----------------------------------------------------------------------------------------------

class Invalid(Exception):
    """A field of a record that fails its check: (field, what is wrong)."""

    def __init__(self, name: str, why: str):
        super().__init__(f"{name}: {why}")
        self.name, self.why = name, why


HEX = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # sha1, or sha256 object names
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a tool name: a plain folder name, never an option


def is_name(value: str) -> bool:
    return bool(NAME.fullmatch(value))


_CONTROL = re.compile(r"[\x00-\x1f]")


def plain_relative(value: str) -> bool:
    """A relative POSIX path without '..', '.' parts, a leading '-' or control characters."""
    if not value or value.startswith(("/", "-")) or "\\" in value or _CONTROL.search(value):
        return False
    return all(part not in ("", ".", "..") for part in value.split("/"))


def inside(base: Path, rel: str | Path, what: str) -> Path:
    """base/rel with symlinks and '..' resolved, refused when it leads outside base."""
    target = (base / rel).resolve()
    if not target.is_relative_to(base.resolve()):
        raise StashError(f"{what} '{rel}' leads outside {base}: refusing to use it.")
    return target


def recorded_path(root: Path, path: Path) -> str:
    """A path as records keep it: relative to the stash root when inside it, else absolute (a single run's
    hydra.run.dir may lie anywhere, as Hydra allows)."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


Check = Callable[[str, Any], Any]


def _type(*types: type, what: str) -> Check:
    def check(name, value):
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise Invalid(name, f"expected {what}, got {type(value).__name__} {excerpt(value, 60)}")
        if type(value) is int and not -1 << 63 <= value < 1 << 63:  # no count or code is that large
            raise Invalid(name, f"expected {what} of at most 64 bits, got {excerpt(value, 60)}")
        return value
    return check


def _opt(check: Check) -> Check:
    return lambda name, value: None if value is None else check(name, value)


def _list_of(check: Check, what: str) -> Check:
    def run(name, value):
        if not isinstance(value, list):
            raise Invalid(name, f"expected a list of {what}, got {type(value).__name__} {excerpt(value, 60)}")
        items = []
        for i, item in enumerate(value):
            try:
                items.append(check(name, item))
            except Invalid as err:  # the item's name only when it is wrong: lists of a million jobs are read
                raise Invalid(f"{name}[{i}]", err.why) from None
        return items
    return run


def _pattern(regex: re.Pattern, what: str) -> Check:
    def check(name, value):
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise Invalid(name, f"expected {what}, got {excerpt(value, 60)}")
        return value
    return check


def _relative(name, value):
    if not isinstance(value, str) or not plain_relative(value):
        raise Invalid(name, f"expected a relative path without '..', got {excerpt(value)}")
    return value


def _status_word(name, value):
    if value not in STATUS_WORDS:
        raise Invalid(name, f"expected one of {', '.join(STATUS_WORDS)}, got {excerpt(value, 40)}")
    return value


def _status(name, value):
    return Status(_status_word(name, value))


def _count(name, value):
    _int(name, value)
    if value < 0:
        raise Invalid(name, f"expected 0 or more, got {value}")
    return value


def _argv_word(name, value):
    """A word given to a process (a command word, an interpreter): text without NUL, which no argument can hold."""
    _str(name, value)
    if "\0" in value:
        raise Invalid(name, f"a NUL character in {excerpt(value)}: no process can be given it")
    return value


def _override(name, value):
    """A tool override as typed: an argument word whose key (before '=') has no control characters either."""
    _argv_word(name, value)
    if _CONTROL.search(value.partition("=")[0]):
        raise Invalid(name, f"a control character in the key of {excerpt(value)}")
    return value


_str = _type(str, what="text")
_int = _type(int, what="a whole number")
_num = _type(int, float, what="a number")
_bool = _type(bool, what="true or false")
_dict = _type(dict, what="a mapping")
_commit = _pattern(HEX, "a full commit id (40 hex digits)")
_name = _pattern(NAME, "a plain name (letters, digits, '_', '-', '.')")
_opt_str = _opt(_str)
_strings = _list_of(_str, "strings")
_argv = _list_of(_argv_word, "strings")
_overrides = _list_of(_override, "strings")


def _experiment(name, value):
    if not isinstance(value, str) or not plain_relative(value) or value.endswith(".yaml"):
        raise Invalid(name, f"expected an experiment id like figure1/pca, got {excerpt(value)}")
    return value


def _sweep_ref(name, value):
    _dict(name, value)
    return {"id": _str(f"{name}.id", value.get("id")), "num": _count(f"{name}.num", value.get("num"))}


def _owner(name, value):
    _dict(name, value)
    return {"pid": _count(f"{name}.pid", value.get("pid")), "host": _str(f"{name}.host", value.get("host")),
            "started": _num(f"{name}.started", value.get("started"))}


check_owner = _opt(_owner)  # an owner kept elsewhere than in its record (the index), checked as the record's


def _patch_name(name, value):
    if value != PATCH_FILE:
        raise Invalid(name, f"expected '{PATCH_FILE}' (a file in the run dir) or null, got {excerpt(value, 60)}")
    return value


def _env(name, value):
    _dict(name, value)
    for key in ("kind", "python", "executable", "lock_file", "lock_sha256"):
        _opt_str(f"{name}.{key}", value.get(key))
    _opt(_argv_word)(f"{name}.executable", value.get("executable"))
    if value.get("kind") not in ("current", "uv", "python"):
        raise Invalid(f"{name}.kind", f"expected current, uv or python, got {excerpt(value.get('kind'), 40)}")
    if value.get("lock_file") is not None:
        _relative(f"{name}.lock_file", value["lock_file"])
    variables = value.get("variables") or {}
    _dict(f"{name}.variables", variables)
    for key, val in variables.items():
        _str(f"{name}.variables.{key}", val)
    return value


def _launcher(name, value):
    """The launcher options a run was started with: its backend, the options resolved, those given on the command
    line, and the profile they came from."""
    _dict(name, value)
    _name(f"{name}.backend", value.get("backend"))
    _dict(f"{name}.options", value.get("options"))
    _strings(f"{name}.given", value.get("given"))
    _opt(_name)(f"{name}.profile", value.get("profile"))
    return value


def _summary_number(name, value):
    """A number of a summary; NaN and Infinity come as the strings a record keeps them as."""
    return _num(name, numbers_back(value))


def _history(name, value):
    """The summary of a run's history file: {file, steps, x, keys: {key: {n, first, last, min, max}}}."""
    _dict(name, value)
    keys = _dict(f"{name}.keys", value.get("keys"))
    for key, stats in keys.items():
        _dict(f"{name}.keys.{key}", stats)
        _count(f"{name}.keys.{key}.n", stats.get("n"))
        for which in ("first", "last", "min", "max"):
            stats[which] = _opt(_summary_number)(f"{name}.keys.{key}.{which}", stats.get(which))
    return {"file": _relative(f"{name}.file", value.get("file")), "steps": _count(f"{name}.steps", value.get("steps")),
            "x": _opt_str(f"{name}.x", value.get("x")), "keys": keys}


def _rank(name, value):
    """One rank of a multi-task job: its number, node, exit code and logs (files in the run dir)."""
    _dict(name, value)
    _count(f"{name}.rank", value.get("rank"))
    _str(f"{name}.node", value.get("node"))
    _opt(_int)(f"{name}.exit_code", value.get("exit_code"))
    for key in ("stdout", "stderr"):
        _relative(f"{name}.{key}", value.get(key))
    return value


def _amount(name, value):
    """A measured figure: a finite number, 0 or more."""
    _num(name, value)
    if not (math.isfinite(value) and value >= 0):
        raise Invalid(name, f"expected 0 or more, got {excerpt(value, 60)}")
    return value


def _figures(checks: dict[str, Check]) -> Check:
    """A mapping whose known keys pass their checks (figures a later version adds are kept as they are)."""
    def check(name, value):
        _dict(name, value)
        for key, one in checks.items():
            if key in value:
                one(f"{name}.{key}", value[key])
        return value
    return check


_resources = _figures({
    **dict.fromkeys(("cpu_user_s", "cpu_system_s", "peak_rss_bytes", "max_process_rss_bytes", "max_processes",
                     "samples"), _amount),
    "gpus": _list_of(_figures({"index": _count, "uuid": _str, "name": _str, "memory_total_bytes": _amount,
                               "peak_memory_bytes": _amount, "mean_utilization_pct": _amount}), "GPU entries"),
    "slurm": _figures(dict.fromkeys(("total_cpu_s", "max_rss_bytes", "req_mem_bytes", "alloc_cpus", "timelimit_s",
                                     "elapsed_s", "max_gpu_memory_bytes"), _amount)),
})


def _run_schema(name, value):
    _int(name, value)
    if not 1 <= value <= RUN_SCHEMA:
        raise Invalid(name, f"expected 1 to {RUN_SCHEMA}, got {value}")
    return value


# --- the run record -------------------------------------------------------------------------------------------

def _f(check: Check, default: Any = None, required: bool = False):
    return field(default=default, metadata={"check": check, "required": required})


def _fl(check: Check, required: bool = False):
    return field(default_factory=list, metadata={"check": check, "required": required})


@dataclass
class RunRecord:
    """run.json: what ran, with what, and how it ended. Field order is the file's order."""

    schema: int = _f(_run_schema, RUN_SCHEMA, required=True)
    id: str = _f(_str, "", required=True)
    status: Status = _f(_status, Status.RUNNING, required=True)
    exit_code: int | None = _f(_opt(_int))
    tool: str = _f(_name, "", required=True)
    experiment: str = _f(_experiment, "", required=True)
    experiment_file: str = _f(_relative, "", required=True)
    experiment_sha256: str | None = _f(_opt(_pattern(re.compile(r"[0-9a-f]{64}"), "a sha256")))
    overrides: list[str] = _fl(_overrides, required=True)
    tool_commit: str | None = _f(_opt(_commit))
    tool_pinned_commit: str | None = _f(_opt(_commit))
    tool_kind: str = _f(_pattern(re.compile(r"submodule|in-tree|untracked|uninitialized"), "submodule or in-tree"),
                        "submodule")
    tool_dirty: bool = _f(_bool, False)
    tool_diff: str | None = _f(_opt(_patch_name))
    tool_untracked: list[str] = _fl(_strings)
    stash_commit: str | None = _f(_opt(_commit))
    stash_dirty: bool | None = _f(_opt(_bool))
    env: dict = _f(_env, None, required=True)
    command: list[str] = _fl(_argv)
    cwd: str | None = _f(_opt_str)
    run_dir: str | None = _f(_opt_str)
    host: str | None = _f(_opt_str)
    started_at: str | None = _f(_opt_str)
    ended_at: str | None = _f(_opt_str)
    duration_s: float | None = _f(_opt(_num))
    logs: dict = _f(_opt(_dict))
    result: Any = _f(lambda name, value: value)
    history: dict | None = _f(_opt(_history))  # a summary of the tool's history file (meta.yaml `history:`)
    sweep: dict | None = _f(_opt(_sweep_ref))
    owner: dict | None = _f(_opt(_owner))
    fingerprint: str | None = _f(_opt_str)
    fingerprint_parts: dict | None = _f(_opt(_dict))
    tool_touched: list[str] = _fl(_strings)  # files the run added or changed in the tool's checkout
    pipeline: str | None = _f(_opt(_name))  # the pipeline (configs/pipelines/<name>.yaml) the run is a stage of
    stage: str | None = _f(_opt(_name))
    upstream: list[str] = _fl(_strings)  # the run ids of the upstream stages' runs it consumed
    launcher: dict | None = _f(_opt(_launcher))  # the launcher options of its sweep's launch or rerun (a sweep's job)
    ranks: list[dict] = _fl(_list_of(_rank, "ranks"))  # a multi-task job's ranks (stash.distributed)
    resources: dict | None = _f(_opt(_resources))  # what its process tree used (launch/resources.py); Slurm's word
    extra: dict = field(default_factory=dict)  # fields of one kind of run: reproduces, slurm_job_id, node, ...

    @classmethod
    def from_dict(cls, data, source: str | Path = "run.json") -> "RunRecord":
        """A validated record; BadRecord naming the file and the field when anything is off."""
        schema = data.get("schema") if isinstance(data, dict) else None
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > RUN_SCHEMA:
            raise BadRecord(source, f"written with run.json schema {schema}, newer than this experimentstash reads "
                            f"(up to {RUN_SCHEMA}): upgrade experimentstash to use it", "")
        try:
            values = _checked(cls, data)
        except Invalid as err:
            raise BadRecord(source, f"field '{err.name}': {err.why}",
                            "The record is damaged or not a run record of experimentstash.") from None
        if "result" in values:
            values["result"] = numbers_back(values["result"])
        return cls(**values, extra=_extra(cls, data))

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["status"] = self.status.value
        return {**data, **self.extra}

    def get(self, name: str, default=None):
        return self.extra.get(name, default)


@functools.cache
def _checks(cls) -> tuple[tuple[str, Check, bool], ...]:
    """(name, check, required) of each checked field (not `extra`): looked up once, not for each of 10,000 records."""
    return tuple((f.name, f.metadata["check"], f.metadata.get("required", False))
                 for f in fields(cls) if "check" in f.metadata)


class _Names(dict):
    """Each record class's field names but `extra`, looked up once."""

    def __missing__(self, cls):
        self[cls] = names = frozenset(name for name, _, _ in _checks(cls))
        return names


_FIELD_NAMES = _Names()


def _checked(cls, data) -> dict:
    if not isinstance(data, dict):
        raise Invalid("(top)", f"expected a JSON object, got {type(data).__name__}")
    values = {}
    for name, check, required in _checks(cls):
        if name not in data:
            if required:
                raise Invalid(name, "missing")
            continue
        values[name] = check(name, data[name])
    return values


def _extra(cls, data: dict) -> dict:
    known = _FIELD_NAMES[cls]
    return {k: v for k, v in data.items() if k not in known and k != "extra"}


class BadRecord(StashError):
    """A record file that cannot be used: one message naming it, or (where records are listed) one warning."""

    def __init__(self, path: str | Path, reason: str, hint: str = "The record is damaged."):
        super().__init__(f"{path}: {reason}." + (f" {hint}" if hint else ""))
        self.path, self.reason = Path(path), reason


class Missing(BadRecord):
    """There is no record file (yet): a job that never started, a folder that is no run dir."""


class RunDirError(StashError):
    """A run dir or its first files cannot be written: nothing ran."""


_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device", stat.S_IFLNK: "a symbolic link"}


def open_regular(path: str | Path, follow: bool = False) -> int:
    """A file descriptor of a regular file, opened without ever blocking and, unless `follow`, not through a
    symbolic link: a FIFO, device, folder or link is refused before it is opened. BadRecord saying what it is."""
    try:
        kind = stat.S_IFMT(os.stat(path, follow_symlinks=follow).st_mode)
        if kind == stat.S_IFREG:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
                         | (0 if follow else os.O_NOFOLLOW))
            kind = stat.S_IFMT(os.fstat(fd).st_mode)
            if kind == stat.S_IFREG:
                return fd
            os.close(fd)  # replaced between the two looks
    except FileNotFoundError:
        raise Missing(path, "does not exist", "") from None
    except OSError as err:
        raise BadRecord(path, f"cannot be read ({err.strerror})", "") from None
    raise BadRecord(path, f"is {_KINDS.get(kind, 'a special file')}, not a regular file")


def read_limited(path: str | Path, limit: int, follow: bool = False) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (open_regular); BadRecord when larger."""
    fd = open_regular(path, follow)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size > limit:
            raise BadRecord(path, f"is larger than {limit >> 20} MiB")
        try:
            data = f.read(size + 1)  # not read(limit): that would set aside `limit` bytes for each record
            if len(data) > size:  # it grew while being read
                data += f.read(limit + 1 - len(data))
        except OSError as err:
            raise BadRecord(path, f"cannot be read ({err.strerror})", "") from None
    if len(data) > limit:
        raise BadRecord(path, f"is larger than {limit >> 20} MiB")
    return data


def read_json(path: str | Path, limit: int, check_depth: bool = True) -> Any:
    """The one reader of record files (run.json, sweep.json, result files): a regular file, not a link, at most
    `limit` bytes, JSON nested at most MAX_DEPTH levels. BadRecord naming the file and what is wrong.
    Without `check_depth` the caller checks the depth of the fields that can be nested (SweepRecord.read: a walk
    over a million jobs would take seconds)."""
    data = read_limited(path, limit)
    try:
        value = json.loads(data)
    except RecursionError:
        raise BadRecord(path, f"is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as err:
        raise BadRecord(path, f"is not valid JSON (line {err.lineno})") from None
    except UnicodeDecodeError:
        raise BadRecord(path, "is not valid JSON (not UTF-8 text)") from None
    except ValueError:  # an integer of thousands of digits
        raise BadRecord(path, "is not valid JSON (a number too long to read)") from None
    # depth is at most the number of brackets: the walk is needed only for the few records with many
    if check_depth and data.count(b"[") + data.count(b"{") > MAX_DEPTH and too_deep(value, MAX_DEPTH):
        raise BadRecord(path, f"is nested deeper than {MAX_DEPTH} levels")
    return value


def too_deep(value, limit: int) -> bool:
    """More than `limit` levels of nested lists and mappings (without recursion: the value may be that deep)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        items = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in items if isinstance(v, (dict, list)))
    return False


def read_run(run_dir: str | Path) -> RunRecord:
    """The run dir's validated record; BadRecord (Missing when there is none) naming the file."""
    path = os.path.join(run_dir, RUN_FILE)
    return RunRecord.from_dict(read_json(path, MAX_RUN_BYTES), path)


def read_run_if_any(run_dir: Path) -> RunRecord | None:
    """The run dir's record; None when there is none yet or it cannot be used (it is then not trusted)."""
    try:
        return read_run(run_dir)
    except BadRecord:
        return None


def mark_ended(root: Path, run_dir: Path, **fields) -> None:
    """Say in a run's run.json how it ended, from beside the run (a Slurm task's signal handler)."""
    record = read_run_if_any(run_dir)
    if record is None:
        return
    signed = is_signed(root, record)
    for key, value in fields.items():
        if hasattr(record, key):
            setattr(record, key, value)
        else:
            record.extra[key] = value
    record.ended_at = record.ended_at or now_iso()
    write_run(root, run_dir, record, signed)


# --- the sweep record -----------------------------------------------------------------------------------------

def _sweep_schema(name, value):
    _int(name, value)
    if not 1 <= value <= SWEEP_SCHEMA:
        raise Invalid(name, f"{value} is not a sweep.json schema this experimentstash reads (1 to {SWEEP_SCHEMA})")
    return value


@dataclass
class JobEntry:
    """A job of sweep.json: what it runs and how it stands, validated like a run record. A backend's own fields
    (slurm_job_id, ...) and the reason a job could not start (`error`) are in `extra`. The file keeps each entry's
    keys in the order they came (as read, or as set by update()): scripts that read sweep.json see no change."""

    num: int = _f(_count, 0, required=True)
    tool: str = _f(_name, "", required=True)
    experiment: str = _f(_experiment, "", required=True)
    overrides: list[str] = _fl(_overrides, required=True)
    run_dir: str = _f(_str, "", required=True)
    status: Status = _f(_status, Status.PENDING, required=True)
    exit_code: int | None = _f(_opt(_int))
    duration_s: float | None = _f(_opt(_num))
    ended_at: str | None = _f(_opt_str)
    launch_overrides: list[str] = _fl(_overrides, required=True)
    reused_from: str | None = _f(_opt(_relative))  # the earlier run a reused job stands on, below the stash root
    extra: dict = field(default_factory=dict)
    keys: list[str] = field(default_factory=list, repr=False, compare=False)  # the file's order of the keys

    @classmethod
    def new(cls, extra: dict, **values) -> "JobEntry":
        """A new job's entry: its fields, then the backend's own fields with their defaults."""
        entry = cls(**values, extra=dict(extra))
        entry.keys = [name for name, _, _ in _checks(cls) if name in values] + list(extra)
        return entry

    @classmethod
    def from_dict(cls, data, where: str) -> "JobEntry":
        """A job entry as parsed from sweep.json, validated (Invalid naming the field); a missing optional field
        is added at the end, as null."""
        if not isinstance(data, dict):
            raise Invalid(where, "expected a job object")
        try:
            values = _checked(cls, data)
            extra = _extra(cls, data)
            for key, value in extra.items():
                if isinstance(value, (dict, list)) and too_deep(value, MAX_DEPTH - 3):
                    raise Invalid(key, f"nested deeper than {MAX_DEPTH} levels")
        except Invalid as err:
            raise Invalid(f"{where}.{err.name}", err.why) from None
        entry = cls(**values, extra=extra)
        entry.keys = list(data) + [name for name, _, _ in _checks(cls) if name not in data]
        return entry

    def update(self, **fields) -> bool:
        """Set fields (a backend's own go to `extra`); whether anything changed."""
        changed = False
        for key, value in fields.items():
            typed = key in _FIELD_NAMES[JobEntry]
            if (getattr(self, key) if typed else self.extra.get(key, _ABSENT)) == value:
                continue
            changed = True
            if typed:
                setattr(self, key, value)
            else:
                self.extra[key] = value
            if key not in self.keys:
                self.keys.append(key)
        return changed

    def to_dict(self) -> dict:
        return {key: (self.status.value if key == "status" else self.extra[key] if key not in _FIELD_NAMES[JobEntry]
                      else getattr(self, key)) for key in self.keys}


_ABSENT = object()


@dataclass
class RerunEntry:
    """One `rerun` of a sweep (sweep.json `reruns`): when, which jobs, the words given to it, and the launcher
    options its jobs ran with (the next `rerun` starts from these)."""

    at: str = _f(_str, "", required=True)
    jobs: list[int] = _fl(_list_of(_count, "job numbers"), required=True)
    overrides: list[str] = _fl(_overrides)  # hydra.launcher.*, stash.timeout, stash.profile as given to `rerun`
    launcher: dict | None = _f(_opt(_dict))  # the backend's options resolved for this attempt
    profile: str | None = _f(_opt(_name))

    @classmethod
    def from_dict(cls, data, where: str) -> "RerunEntry":
        try:
            return cls(**_checked(cls, data))
        except Invalid as err:
            raise Invalid(f"{where}.{err.name}", err.why) from None

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name, _, _ in _checks(RerunEntry)}


@dataclass
class SweepRecord:
    """sweep.json: the sweep's command line, its backend and options, and every job's state."""

    id: str
    created_at: str
    backend: str
    command_line: list[str]
    launcher: dict  # the backend's resolved options
    given: list[str]  # which of them came from the command line
    jobs: list[JobEntry]
    reruns: list[RerunEntry] = field(default_factory=list)
    backend_state: dict = field(default_factory=dict)  # what the backend keeps (Slurm: the arrays)
    schema: int = SWEEP_SCHEMA
    profile: str | None = None  # the profile (meta.yaml `profiles:`) the launcher options came from

    @classmethod
    def read(cls, sweep_dir: Path) -> "SweepRecord":
        path = sweep_dir / SWEEP_FILE
        if not os.path.lexists(path):
            raise StashError(f"{sweep_dir} is not a sweep dir: it holds no {SWEEP_FILE}. Give a folder under multirun/.")
        data = read_json(path, MAX_SWEEP_BYTES, check_depth=False)
        try:
            if not isinstance(data, dict):
                raise Invalid("(top)", f"expected a JSON object, got {type(data).__name__}")
            for key in ("launcher", "backend_state", "reruns"):  # the fields of any shape (a job's: JobEntry)
                if too_deep(data.get(key), MAX_DEPTH - 1):
                    raise Invalid(key, f"nested deeper than {MAX_DEPTH} levels")
            schema = _sweep_schema("schema", data.get("schema"))
            jobs = data.get("jobs")
            if not isinstance(jobs, list):
                raise Invalid("jobs", "missing or not a list")
            checked = [JobEntry.from_dict(job, f"jobs[{i}]") for i, job in enumerate(jobs)]
            nums = [job.num for job in checked]
            if len(set(nums)) != len(nums):
                raise Invalid("jobs", "two jobs have the same num")
            launcher = _dict("launcher", data.get("launcher") or {})
            return cls(
                id=_name("id", data.get("id")), created_at=_str("created_at", data.get("created_at")),
                backend=_name("backend", data.get("backend")),
                command_line=_strings("command_line", data.get("command_line") or []),
                launcher=launcher, given=_strings("given", data.get("given") or []), jobs=checked,
                reruns=[RerunEntry.from_dict(entry, f"reruns[{i}]") for i, entry in
                        enumerate(_type(list, what="a list")("reruns", data.get("reruns") or []))],
                backend_state=_dict("backend_state", data.get("backend_state") or {}), schema=schema,
                profile=_opt(_name)("profile", data.get("profile")),
            )
        except Invalid as err:
            raise BadRecord(path, f"field '{err.name}': {err.why}") from None

    def head(self) -> dict:
        """Everything but the jobs, in the file's order."""
        return {"schema": SWEEP_SCHEMA, "id": self.id, "created_at": self.created_at, "backend": self.backend,
                "command_line": self.command_line, "launcher": self.launcher, "given": self.given,
                "backend_state": self.backend_state, "reruns": [entry.to_dict() for entry in self.reruns],
                "profile": self.profile}

    def last_launcher(self) -> tuple[dict, str | None]:
        """The launcher options and profile the sweep's jobs last ran with: the last rerun's, else the launch's."""
        for entry in reversed(self.reruns):
            if entry.launcher is not None:
                return entry.launcher, entry.profile
        return self.launcher, self.profile


def encode_sweep(head: dict, job_lines: list[str]) -> str:
    """sweep.json text with one line per job (jobs encoded by the caller, so that unchanged ones are reused)."""
    text = to_json(head, indent=2)
    return text[:-2] + ',\n  "jobs": [\n    ' + ",\n    ".join(job_lines) + "\n  ]\n}\n"


def move_aside(run_dir: Path, kind: str) -> list[str]:
    """An earlier attempt's run dir kept beside the new one, as <run dir>.<kind><k> (attempt: `rerun`, preempted:
    a requeued Slurm task); the names of every earlier attempt of that kind."""
    if run_dir.exists():
        k = 1
        while run_dir.with_name(f"{run_dir.name}.{kind}{k}").exists():
            k += 1
        try:
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.{kind}{k}"))
        except OSError as err:
            raise StashError(f"Cannot move {run_dir} aside (to {run_dir.name}.{kind}{k}): {err.strerror}.") from None
    return sorted(p.name for p in run_dir.parent.glob(f"{run_dir.name}.{kind}*"))


def job_dir_name(num: int, tool: str, experiment: str) -> str:
    return f"{num}_{tool}_{experiment.replace('/', '-')}"


def job_run_dir(root: Path, sweep_dir: Path, job: JobEntry) -> Path:
    """A job's run dir, where its record and result are: a child of the sweep dir named by its validated num, tool
    and experiment, or for a job that reused an earlier run, that run's dir (`reused_from`, inside the stash)."""
    if job.reused_from:
        return inside(root, job.reused_from, "sweep.json reused_from")
    path = sweep_dir / job_dir_name(job.num, job.tool, job.experiment)
    if path.is_symlink():
        raise StashError(f"{path} is a symbolic link: a run dir of the sweep must be a folder in it.")
    return path

"""The stash: its root, the tool registry in configs/meta.yaml, and experiment lookup."""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import META, StashError
from .output import excerpt
from .profiles import parse_profiles
from .records import MAX_DEPTH, BadRecord, is_name, plain_relative, read_limited

# limits of every YAML file the launcher reads: a small file must not expand into billions of items
MAX_CONFIG_BYTES = 1 << 20  # meta.yaml, meta.local.yaml and other settings files
MAX_EXPERIMENT_BYTES = 16 << 20  # an experiment file (the tool's config)
MAX_ALIASES = 100  # alias references (*name) in one document
MAX_NODES = 100_000  # items of one document with every alias expanded
META_LOCAL = Path("configs/meta.local.yaml")
SNAPSHOTS = "snapshots"  # configs/<tool>/snapshots/<tag>/<id>.yaml, run as experiment=snapshots/<tag>/<id>

# key -> (allowed types, description used in error messages)
TOOL_KEYS = {
    "path": ((str,), "a folder relative to the stash root"),
    "entrypoint": ((str,), "'-m package.module' or a script path relative to the tool folder"),
    "description": ((str,), "text"),
    "search_packages": ((str, list), "a package name or a list of them"),
    "env": ((str, dict), "'current', 'uv' or {python: <path>}"),
    "overrides": ((list,), "a list of tool overrides"),
    "result": ((str,), "a JSON, YAML or one-row CSV file inside the run dir (or a glob that matches one)"),
    "history": ((str,), "a JSON-lines or CSV file inside the run dir (or a glob that matches one)"),
    "reuse": ((bool,), "true or false: skip jobs that succeeded before with the same fingerprint"),
    "workdir": ((str,), "'tool' (the tool's folder) or 'run_dir'"),
    "tracker": ((str,), "'none', 'wandb' or 'mlflow'"),
    "wandb": ((dict,), "a mapping of W&B settings"),
    "mlflow": ((dict,), "a mapping of MLflow settings"),
    "check_ignore": ((list,), "a list of globs of run dir paths that `reproduce --check` does not compare"),
}
REQUIRED_KEYS = ("path", "entrypoint")
WORKDIRS = ("tool", "run_dir")
# the experiment trackers a run can report to, with the settings each takes (top level and per tool)
TRACKERS = ("none", "wandb", "mlflow")
TRACKER_SETTINGS = {"wandb": ("project", "entity"), "mlflow": ("tracking_uri", "experiment")}
# the top-level keys of meta.yaml besides the backends
_STASH_KEYS = {"tools", "tracker", "profiles", "notify", *TRACKER_SETTINGS}
NOTIFY_EVENTS = ("end", "first_failure")  # when a sweep sends its notification (notify: in meta.yaml)


@dataclass(frozen=True)
class Tool:
    name: str
    path: Path  # absolute
    rel_path: str  # relative to the root, as git names it
    entrypoint: list[str]
    description: str = ""
    search_packages: tuple[str, ...] = ()
    env: str | dict = "auto"
    overrides: tuple[str, ...] = ()
    result: str | None = None
    history: str | None = None  # the tool's per-step history file
    reuse: bool = False
    workdir: str = "tool"  # where the tool starts: its folder, or its run dir
    tracker: str = "none"  # the tool's, else the stash-wide `tracker:`
    tracker_settings: dict = field(default_factory=dict)  # {wandb: {...}, mlflow: {...}}: the tool's over the stash's
    check_ignore: tuple[str, ...] = ()  # globs of run dir paths (** for any depth): bookkeeping, not output


@dataclass(frozen=True)
class Notify:
    """`notify:` of meta.yaml: the notification URLs (apprise's) and the events that send to them."""

    urls: tuple[str, ...]
    when: tuple[str, ...]


def notify_setting(raw) -> Notify:
    """`notify:` is one URL, a list of URLs, or {urls: [...], when: [end, first_failure]}. The URLs hold secrets:
    messages name the item, never its value."""
    where = f"{META}: notify"
    when = ["end"]
    if isinstance(raw, dict):
        unknown = set(map(str, raw)) - {"urls", "when"}
        if unknown:
            raise StashError(f"{where}.{sorted(unknown)[0][:80]}: unknown key (known: urls, when).")
        when = raw.get("when") or when
        when = [when] if isinstance(when, str) else when
        if not isinstance(when, list) or any(event not in NOTIFY_EVENTS for event in when):
            raise StashError(f"{where}.when: expected a list of {', '.join(NOTIFY_EVENTS)}, got {excerpt(when)}.")
        raw = raw.get("urls")
    urls = [raw] if isinstance(raw, str) else raw or []
    if not isinstance(urls, list) or not all(isinstance(url, str) and url for url in urls):
        raise StashError(f"{where}: expected a notification URL or a list of them (apprise's URLs, e.g. "
                         "json://host/path, mailto://..., slack://...).")
    return Notify(tuple(urls), tuple(when))


@dataclass
class Stash:
    root: Path
    tools: dict[str, Tool]
    machine: dict = field(default_factory=dict)  # per backend (local:, slurm:): this machine's launcher defaults
    profiles: dict = field(default_factory=dict)  # name -> profiles.Profile: named sets of launcher options
    _experiments: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _files: dict[tuple[str, str], Path] = field(default_factory=dict, repr=False)
    notify: Notify = field(default_factory=lambda: Notify((), ("end",)), repr=False)  # URLs hold secrets: no repr

    @classmethod
    def load(cls, root: Path) -> "Stash":
        """The stash of this root; read once per process while meta.yaml and meta.local.yaml stay as they are."""
        key = (root, *(_mtime(root / name) for name in (META, META_LOCAL)))
        if key not in _LOADED:
            _LOADED[key] = cls._read(root)
        return _LOADED[key]

    @classmethod
    def _read(cls, root: Path) -> "Stash":
        raw = read_yaml(root / META, root) or {}
        local_path = root / META_LOCAL
        if local_path.is_file():
            raw = _deep_merge(raw, read_yaml(local_path, root) or {}, META_LOCAL)
        return cls.from_raw(root, raw)

    @classmethod
    def from_raw(cls, root: Path, raw) -> "Stash":
        from . import backends

        names = set(backends.BACKENDS)
        if isinstance(raw, dict) and set(map(str, raw)) - names - _STASH_KEYS:  # another package's backend, perhaps
            names.update(backends.added())
        tools = _parse_tools(root, raw, names, _tracker(f"{META}: ", raw if isinstance(raw, dict) else {}))
        machine = {}
        for name in names:
            value = raw.get(name) or {}
            if not isinstance(value, dict):
                raise StashError(f"{META}: '{name}' must be a mapping of launcher options of the {name} backend.")
            machine[name] = value
        return cls(root, tools, machine, parse_profiles(raw.get("profiles"), names),
                   notify=notify_setting(raw.get("notify")))

    def tool(self, name: str | None) -> Tool:
        if not name:
            raise StashError(f"No tool given: add tool=<name> ({_choices(sorted(self.tools))}).")
        if name not in self.tools:
            raise StashError(
                f"Unknown tool '{name}'{closest(name, self.tools)}; {_choices(sorted(self.tools))} "
                f"(registered in {META})."
            )
        return self.tools[name]

    def experiment_dir(self, tool: str) -> Path:
        return self.root / "configs" / tool / "experiment"

    def experiments(self, tool: str) -> list[str]:
        """Every experiment id of a tool, sorted (subfolders give ids like figure1/pca)."""
        if tool not in self._experiments:
            base = self.experiment_dir(tool)
            ids = [p.relative_to(base).with_suffix("").as_posix() for p in base.rglob("*.yaml")]
            for experiment in ids:
                if not plain_relative(experiment) or "${" in experiment:
                    file = f"{base.relative_to(self.root)}/{experiment}.yaml"  # repr: control characters shown
                    raise StashError(
                        f"{file!r} cannot be run: its experiment id holds a control character, a backslash, '${{' or "
                        "a part starting with '-', which Hydra cannot take as a name. Rename the file."
                    )
            self._experiments[tool] = sorted(ids)
        return self._experiments[tool]

    def experiment_file(self, tool: str, experiment: str | None) -> Path:
        """The file of an experiment id, refusing ids that leave the tool's experiment folder."""
        if (tool, experiment) not in self._files:
            self._files[(tool, experiment)] = self._check_experiment(tool, experiment)
        return self._files[(tool, experiment)]

    def _check_experiment(self, tool: str, experiment: str | None) -> Path:
        if not experiment:
            raise StashError(f"No experiment given: add experiment=<id> ({self._list_experiments(tool)}).")
        base = self.experiment_dir(tool)
        parts = Path(experiment).parts
        if not plain_relative(experiment) or experiment.endswith(".yaml"):
            raise StashError(
                f"Experiment id '{experiment}' must be a path below configs/{tool}/experiment/ "
                "without '..', a leading '/' or '.yaml' (e.g. experiment=figure1/pca)."
            )
        path = base / f"{experiment}.yaml"
        if parts[0] == SNAPSHOTS and not path.is_file():
            # a frozen snapshot: configs/<tool>/snapshots/<tag>/<id>.yaml runs as experiment=snapshots/<tag>/<id>
            base = self.root / "configs" / tool / SNAPSHOTS
            path = self.root / "configs" / tool / f"{experiment}.yaml"
            if not path.is_file():
                raise StashError(
                    f"Unknown snapshot '{experiment}' for tool '{tool}': no configs/{tool}/{experiment}.yaml "
                    f"(snapshots: {', '.join(self.snapshots(tool)) or 'none yet'})."
                )
        elif not path.is_file():
            raise StashError(
                f"Unknown experiment '{experiment}' for tool '{tool}'"
                f"{closest(experiment, self.experiments(tool))}; {self._list_experiments(tool)}."
            )
        if not path.resolve().is_relative_to(base.resolve()):
            raise StashError(f"Experiment '{experiment}' is a link that leads outside {base.relative_to(self.root)}/.")
        read_yaml(path, self.root, MAX_EXPERIMENT_BYTES)  # a syntax error is reported here, naming file and line
        return path

    def snapshots(self, tool: str) -> list[str]:
        """Every snapshot of a tool as the experiment id that runs it (snapshots/<tag>/<id>), sorted."""
        base = self.root / "configs" / tool
        return sorted(p.relative_to(base).with_suffix("").as_posix() for p in (base / SNAPSHOTS).rglob("*.yaml"))

    def config_name(self, tool: str, experiment_file: Path) -> str:
        """The --config-name of an experiment file for Hydra, whose --config-dir is configs/<tool>."""
        return experiment_file.relative_to(self.root / "configs" / tool).with_suffix("").as_posix()

    def _list_experiments(self, tool: str) -> str:
        ids = self.experiments(tool)
        if not ids:
            return f"none yet: add one to configs/{tool}/experiment/"
        return _choices(ids)


_LOADED: dict[tuple, "Stash"] = {}


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class Loader(yaml.SafeLoader):
    """yaml.safe_load's loader with limits: at most MAX_ALIASES aliases, MAX_NODES items with the aliases expanded
    and MAX_DEPTH levels of nesting. Without them a file of a few lines (an alias bomb) is billions of items for
    whoever walks the value, an error message included."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"it uses more than {MAX_ALIASES} YAML aliases")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.YAMLError(f"it is nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self):
        node = super().compose_document()
        if self.aliases and _expanded_size(node) > MAX_NODES:
            raise yaml.YAMLError(f"its aliases expand to more than {MAX_NODES} items")
        return node


def _expanded_size(root) -> float:
    """The items of a composed YAML document with every alias expanded (each alias repeats its whole node; a node
    that contains itself is endless), without recursion; stops counting past MAX_NODES."""
    sizes: dict[int, int] = {}
    started: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        if done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                return sizes[id(node)]
        elif id(node) not in sizes:
            if id(node) in started:  # reached again inside itself
                return float("inf")
            started.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def parse_yaml(text: str | bytes, shown) -> object:
    """The value of a YAML document read with the limits of Loader; a StashError naming `shown` (the file) and the
    line of a syntax error."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return yaml.load(text, Loader=Loader)
    except UnicodeDecodeError as err:
        raise StashError(f"{shown}: byte {err.start} is not UTF-8 text. Save the file as UTF-8 YAML.") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StashError(f"{shown}{where}: {err.problem or err}. Fix the YAML syntax there.") from None
    except yaml.YAMLError as err:
        raise StashError(f"{shown}: {err}. Fix the YAML there.") from None
    except ValueError:  # an integer of thousands of digits
        raise StashError(f"{shown}: a number is too long to read. Fix the YAML there.") from None


def read_yaml(path: Path, root: Path | None = None, limit: int = MAX_CONFIG_BYTES):
    """Parse a YAML file (a regular file of at most `limit` bytes); a StashError naming the file, and the line of a
    syntax error."""
    shown = path.relative_to(root) if root and path.is_relative_to(root) else path
    try:
        data = read_limited(path, limit, follow=True)
    except BadRecord as err:
        raise StashError(f"{shown}: {err.reason}. Give a YAML file of at most {limit >> 20} MiB.") from None
    return parse_yaml(data, shown)


def _deep_merge(base, extra, source: Path):
    if not isinstance(extra, dict):
        raise StashError(f"{source}: must be a mapping like meta.yaml (tools: ...).")
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value, source)
        else:
            merged[key] = value
    return merged


def _tracker(where: str, raw: dict, stash_wide: tuple[str, dict] = ("none", {})) -> tuple[str, dict]:
    """`tracker:` and the `wandb:` / `mlflow:` settings of one level (top, or a tool's over the stash's);
    `where` prefixes the key in messages ("configs/meta.yaml: " or "configs/meta.yaml: tools.x.")."""
    kind = raw.get("tracker", stash_wide[0]) or "none"
    if kind not in TRACKERS:
        raise StashError(f"{where}tracker: expected {', '.join(TRACKERS)}, got {excerpt(kind)}.")
    settings = {}
    for name, keys in TRACKER_SETTINGS.items():
        given = raw.get(name) or {}
        if not isinstance(given, dict):
            raise StashError(f"{where}{name}: expected a mapping with {' and/or '.join(keys)}, "
                             f"got {excerpt(given)}.")
        for key, value in given.items():
            if key not in keys:
                raise StashError(f"{where}{name}.{key}: unknown key (known: {', '.join(keys)}).")
            if not isinstance(value, str) or not value:
                raise StashError(f"{where}{name}.{key}: expected text, got {excerpt(value)}.")
        settings[name] = {**stash_wide[1].get(name, {}), **given}
    return kind, settings


def _parse_tools(root: Path, raw, backend_keys: set[str], tracker: tuple[str, dict]) -> dict[str, Tool]:
    if not isinstance(raw, dict):
        raise StashError(f"{META}: must be a mapping with a 'tools' key.")
    top_keys = {*_STASH_KEYS, *backend_keys}
    unknown = set(map(str, raw)) - top_keys
    if unknown:
        raise StashError(f"{META}: unknown key {excerpt(sorted(unknown)[0])} (known: "
                         f"{', '.join(sorted(top_keys))}).")
    entries = raw.get("tools") or {}
    if not isinstance(entries, dict):
        raise StashError(f"{META}: 'tools' must be a mapping of tool names to settings.")
    return {str(name): _parse_tool(root, str(name), entry, tracker) for name, entry in entries.items()}


def _parse_tool(root: Path, name: str, entry, stash_tracker: tuple[str, dict]) -> Tool:
    if not is_name(name):
        raise StashError(
            f"{META}: tool name {excerpt(name)} is not allowed: use letters, digits, '-', '_' and '.', not starting "
            "with '.' or '-' (it names configs/<name>/ and outputs/<name>/)."
        )
    where = f"{META}: tools.{name}"
    if not isinstance(entry, dict):
        raise StashError(f"{where} must be a mapping with at least 'path' and 'entrypoint'.")
    entry = {k: v for k, v in entry.items() if v is not None}  # `key: null` (in meta.local.yaml) unsets a key
    for key, value in entry.items():
        if key not in TOOL_KEYS:
            raise StashError(f"{where}.{str(key)[:80]}: unknown key (known: {', '.join(TOOL_KEYS)}).")
        types, meaning = TOOL_KEYS[key]
        if not isinstance(value, types):
            raise StashError(f"{where}.{key}: expected {meaning}, got {type(value).__name__} {excerpt(value)}.")
    for key in REQUIRED_KEYS:
        if not entry.get(key):
            raise StashError(f"{where}.{key} is missing: give {TOOL_KEYS[key][1]}.")
    path = (root / entry["path"]).resolve()
    if not path.is_relative_to(root.resolve()) or path == root.resolve():
        raise StashError(f"{where}.path: {excerpt(entry['path'])} is outside the stash; tools live below it "
                         f"(tools/{name}).")
    for key in ("result", "history"):
        if entry.get(key) is not None and not plain_relative(entry[key]):
            raise StashError(f"{where}.{key}: {excerpt(entry[key])} must be a file name (or a glob) inside the run dir, "
                             "without '..' or a leading '/'.")
    env = entry.get("env", "auto")
    if isinstance(env, dict) and (set(env) != {"python"} or not isinstance(env["python"], str)):
        raise StashError(f"{where}.env: expected 'current', 'uv' or {{python: <path>}}, got {excerpt(env)}.")
    if isinstance(env, str) and env not in ("current", "uv", "auto"):
        raise StashError(f"{where}.env: expected 'current', 'uv' or {{python: <path>}}, got {excerpt(env)}.")
    packages = entry.get("search_packages") or ()
    packages = (packages,) if isinstance(packages, str) else tuple(str(p) for p in packages)
    overrides = entry.get("overrides") or ()
    if not all(isinstance(o, str) for o in overrides):
        raise StashError(f"{where}.overrides: every item must be a string like key=value.")
    workdir = entry.get("workdir", "tool")
    if workdir not in WORKDIRS:
        raise StashError(f"{where}.workdir: expected 'tool' or 'run_dir', got {excerpt(workdir)}.")
    tracker, tracker_settings = _tracker(f"{where}.", entry, stash_tracker)
    check_ignore = entry.get("check_ignore") or ()
    for glob in check_ignore:
        if not isinstance(glob, str) or not plain_relative(glob):
            raise StashError(f"{where}.check_ignore: {excerpt(glob)} must be a glob of paths inside the run dir, like "
                             "'profiles/**' or '**/*.ckpt' (no leading '/', no '..').")
    return Tool(
        name=name,
        path=path,
        rel_path=path.relative_to(root.resolve()).as_posix(),  # as git names it (no ./, no trailing /)
        entrypoint=_split_entrypoint(where, entry["entrypoint"]),
        description=entry.get("description", ""),
        search_packages=packages,
        env=env,
        overrides=tuple(overrides),
        result=entry.get("result"),
        history=entry.get("history"),
        reuse=entry.get("reuse", False),
        workdir=workdir,
        tracker=tracker,
        tracker_settings=tracker_settings,
        check_ignore=tuple(check_ignore),
    )


def _split_entrypoint(where: str, entrypoint: str) -> list[str]:
    try:
        words = shlex.split(entrypoint)
    except ValueError:
        words = []
    if len(words) == 2 and words[0] == "-m" and re.fullmatch(r"[A-Za-z_][\w.]*", words[1]):
        return words
    if len(words) == 1 and not words[0].startswith("-"):
        if not plain_relative(words[0].removeprefix("./")):  # a link out of the folder: prepare_tool refuses it
            raise StashError(
                f"{where}.entrypoint: {excerpt(entrypoint)} is outside the tool's folder: a script the tool's pin does "
                "not cover. Give a path inside the tool, relative to its folder."
            )
        return words
    raise StashError(
        f"{where}.entrypoint: {excerpt(entrypoint)} is neither '-m package.module' nor a script path."
    )


def _choices(names: list[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"available: {shown}{more}" if names else "none registered"


def closest(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""

"""The backends a sweep can run on: the one place that names them, and loads them only when they are used.

Built in: local and slurm (below). Another package adds one through the entry point group
`experimentstash.backends`: `<name> = <module>:<class>`, its Backend subclass, chosen with
hydra/launcher=stash_<name>. A backend that cannot be loaded breaks only itself: choosing it is one clear
error, every other backend works. Hydra's plugin scan registers launcher configs from the options classes
alone (options_class): the built-ins' are in backends/options.py, apart from their code.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import typing
from dataclasses import fields

from .. import StashError
from ..output import excerpt

ENTRY_POINTS = "experimentstash.backends"
# backend name (as recorded in sweep.json, and the meta.yaml key of its defaults) -> (hydra/launcher=<name>,
# its Backend class, its options class)
BACKENDS = {
    "local": ("stash", "experimentstash.backends.local:LocalBackend", "experimentstash.backends.options:LocalOptions"),
    "slurm": ("stash_slurm", "experimentstash.backends.slurm:SlurmBackend",
              "experimentstash.backends.options:SlurmOptions"),
}
DEFAULT = "local"  # the backend of a single run, and of a sweep without hydra/launcher
LAUNCHER_TARGET = "hydra_plugins.experimentstash_launcher.launcher.StashLauncher"


@functools.cache
def added() -> dict[str, str]:
    """The backends other packages add (entry points): name -> `module:class`. Read only when a name is not
    a built-in's: the usual start-up never looks."""
    from importlib import metadata  # slow to import: only here

    found = {}
    for point in metadata.entry_points(group=ENTRY_POINTS):
        if point.name not in BACKENDS:
            found[point.name] = point.value
    return found


def names() -> list[str]:
    return [*BACKENDS, *added()]


def launcher_of(name: str) -> str:
    """hydra/launcher=<this> chooses the backend."""
    return BACKENDS[name][0] if name in BACKENDS else f"stash_{name}"


def _where(name: str) -> str:
    if name in BACKENDS:
        return BACKENDS[name][1]
    if name in added():
        return added()[name]
    raise StashError(f"Unknown backend '{name}' (known: {', '.join(names())}): this experimentstash cannot run or "
                     "follow its jobs.")


def _load(name: str, path: str):
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception as err:  # a broken backend breaks only itself
        raise StashError(f"The {name} backend ({path}) cannot be loaded: {type(err).__name__}: {err}. "
                         "Fix or remove it; the other backends work.") from None


@functools.cache
def backend_class(name: str):
    """The Backend class of a backend, checked against the contract (backends/base.py) when it is loaded."""
    from .base import Backend

    path = _where(name)
    cls = _load(name, path)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise StashError(f"The {name} backend ({path}) is not a subclass of experimentstash.backends.base.Backend.")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise StashError(f"The {name} backend ({path}) does not implement {', '.join(missing)} (a hook every backend "
                         "has): it cannot run.")
    if not dataclasses.is_dataclass(getattr(cls, "Options", None)):
        raise StashError(f"The {name} backend ({path}) has no Options dataclass of its hydra.launcher.* options.")
    return cls


def options_class(name: str):
    """A backend's options: a built-in's without importing its code, another's from its Backend class."""
    if name in BACKENDS:
        return _load(name, BACKENDS[name][2])
    return backend_class(name).Options


def create(name: str, options):
    return backend_class(name)(options)


def for_launcher(launcher: str | None) -> str | None:
    """The backend of `hydra/launcher=<launcher>` (none given: local), or None for another launcher (basic, ...)."""
    if launcher is None:
        return DEFAULT
    for name, (hydra_name, _, _) in BACKENDS.items():
        if hydra_name == launcher:
            return name
    name = launcher[len("stash_"):] if launcher.startswith("stash_") else None
    return name if name in added() else None


def option_names(name: str) -> list[str]:
    return [f.name for f in fields(options_class(name))]


def _typed(backend: str, name: str, value, kind):
    """`value` as the option's declared type (Hydra gives ints for `partition=123`), or a StashError."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is str:
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    elif origin in (list, typing.List):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value)
    elif origin in (dict, typing.Dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:  # the value quoted by an excerpt: it may be an alias bomb
        raise StashError(f"hydra.launcher.{name}={excerpt(value)}: expected {_describe(kind)} ({backend} backend).")
    if kind is float:
        return float(value)
    if kind is str:
        return str(value)
    if origin in (list, typing.List):
        return [str(v) for v in value]
    if origin in (dict, typing.Dict):
        return dict(value)
    return value


def _describe(kind) -> str:
    if typing.get_origin(kind) in (list, typing.List):
        return "a list like [a,b]"
    if typing.get_origin(kind) in (dict, typing.Dict):
        return "a mapping like {key: value}"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(kind, str(kind))


def resolve_options(name: str, values: dict, given: set[str], machine: dict, recorded: bool = False):
    """The backend's options: those given on the command line, then this machine's `<name>:` defaults from
    configs/meta(.local).yaml, then the defaults; each checked against its type and by the backend."""
    cls = options_class(name)
    known = option_names(name)
    values = {k: v for k, v in values.items() if k != "_target_"}
    unknown = sorted(set(map(str, given | set(values))) - set(known))
    if unknown:
        where = "recorded in sweep.json" if recorded else f"of hydra/launcher={launcher_of(name)}"
        raise StashError(f"Unknown launcher option 'hydra.launcher.{unknown[0]}' {where} (known: {', '.join(known)}).")
    unknown = sorted(set(map(str, machine)) - set(known))
    if unknown:
        raise StashError(f"Unknown option {excerpt(unknown[0])} under '{name}:' in configs/meta.yaml or "
                         f"meta.local.yaml (options of the {name} backend: {', '.join(known)}).")
    hints = typing.get_type_hints(cls)
    merged = {}
    for key in known:
        if key in values and (key in given or key not in machine):
            merged[key] = _typed(name, key, values[key], hints[key])
        elif key in machine:
            merged[key] = _typed(name, key, machine[key], hints[key])
    options = cls(**merged)
    backend_class(name).validate(options)
    return options


def recorded_options(name: str, data: dict):
    """The options a sweep.json recorded, checked again (the record is untrusted)."""
    return resolve_options(name, dict(data), set(data), {}, recorded=True)


def options_dict(options) -> dict:
    return dataclasses.asdict(options)

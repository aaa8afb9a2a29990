"""The backends a sweep can run on, named in this one place and imported only when used.

A backend is one module with an `Options` dataclass (its `hydra.launcher.*` options, also the defaults a stash
may set under `<backend>:` in configs/meta.yaml) and a `Backend` class (see backends/local.py for what it
implements). Adding one: write the module and add a line here.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from dataclasses import fields

from .. import StashError
from ..display import excerpt

# backend name (as recorded in sweep.json, and the meta.yaml key of its defaults) -> (hydra/launcher=<name>, module)
BACKENDS = {
    "local": ("stash", "experimentstash.backends.local"),
    "slurm": ("stash_slurm", "experimentstash.backends.slurm"),
}
DEFAULT = "local"  # the backend of a single run, and of a sweep without hydra/launcher
LAUNCHER_TARGET = "hydra_plugins.experimentstash_launcher.launcher.StashLauncher"


def module(name: str):
    if name not in BACKENDS:
        raise StashError(f"Unknown backend '{name}' (known: {', '.join(BACKENDS)}): this experimentstash cannot run "
                         "or follow its jobs.")
    return importlib.import_module(BACKENDS[name][1])


def backend_class(name: str):
    return module(name).Backend


def options_class(name: str):
    return module(name).Options


def for_launcher(launcher: str | None) -> str | None:
    """The backend of `hydra/launcher=<launcher>` (none given: local), or None for another launcher (basic, ...)."""
    if launcher is None:
        return DEFAULT
    return next((name for name, (hydra_name, _) in BACKENDS.items() if hydra_name == launcher), None)


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
        where = "recorded in sweep.json" if recorded else f"of hydra/launcher={BACKENDS[name][0]}"
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

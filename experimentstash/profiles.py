"""Profiles: named sets of launcher options under `profiles:` in configs/meta.yaml or meta.local.yaml, chosen with
stash.profile=NAME. A profile may choose its backend (`backend: slurm`); its other keys are that backend's
hydra.launcher.* options. The command line wins over the profile, the profile over this machine's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import StashError
from .output import excerpt
from .records import is_name

WHERE = "configs/meta.yaml or meta.local.yaml"


@dataclass(frozen=True)
class Profile:
    name: str
    backend: str | None  # the backend it chooses; None: the one the command line chooses
    options: dict = field(default_factory=dict)  # hydra.launcher.* options of that backend


def parse_profiles(raw, backends: set[str]) -> dict[str, Profile]:
    """The `profiles:` mapping of meta.yaml, checked: names, a known backend, a mapping of options each."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StashError(f"{WHERE}: 'profiles' must map profile names to launcher options, e.g. "
                         "profiles: {a100: {backend: slurm, partition: gpu, timeout_min: 240}}.")
    profiles = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not is_name(name):
            raise StashError(f"{WHERE}: profile name {excerpt(name)} must be a plain name (letters, digits, '_', "
                             "'-', '.').")
        value = {} if value is None else value
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise StashError(f"{WHERE}: profile '{name}' must be a mapping of launcher options (and backend:).")
        backend = value.get("backend")
        if backend is not None and backend not in backends:
            raise StashError(f"{WHERE}: profile '{name}': backend {excerpt(backend)} is not one of "
                             f"{', '.join(sorted(backends))}.")
        profiles[name] = Profile(name, backend, {k: v for k, v in value.items() if k != "backend"})
    return profiles


def choose(profiles: dict[str, Profile], name) -> Profile:
    """The profile stash.profile names; an unknown one is refused with the known ones."""
    if isinstance(name, str) and name in profiles:
        return profiles[name]
    known = ", ".join(sorted(profiles)) or f"none yet: add profiles: to {WHERE}"
    raise StashError(f"Unknown profile stash.profile={excerpt(name)} (known: {known}).")

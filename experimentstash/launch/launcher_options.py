"""The launcher options a launch or a rerun runs with: the command line's over the chosen profile's over this
machine's defaults (`local:`, `slurm:` in meta.yaml), each checked against the backend's Options."""

from __future__ import annotations

from .. import StashError, backends
from ..profiles import WHERE, Profile, choose
from ..registry import Stash


def chosen_profile(stash: Stash, name, backend: str) -> Profile | None:
    """The profile stash.profile names (None when none is), checked against the backend that runs the jobs."""
    if name is None:
        return None
    profile = choose(stash.profiles, name)
    if profile.backend not in (None, backend):
        raise StashError(f"stash.profile={name} is a profile of the {profile.backend} backend, but these jobs run on "
                         f"the {backend} backend (hydra/launcher={backends.launcher_of(backend)}). Leave "
                         "hydra/launcher out: the profile chooses it.")
    known = backends.option_names(backend)
    unknown = sorted(set(profile.options) - set(known))
    if unknown:
        raise StashError(f"Unknown option '{unknown[0]}' in profile '{name}' in {WHERE} (options of the {backend} "
                         f"backend: {', '.join(known)}).")
    return profile


def resolve(stash: Stash, backend: str, values: dict, given: set[str], profile: str | None, defaults=None):
    """The backend's options: `values` of the options `given` on the command line, then the profile's, then
    `defaults` (this machine's when None)."""
    chosen = chosen_profile(stash, profile, backend)
    below = stash.machine.get(backend, {}) if defaults is None else defaults
    return backends.resolve_options(backend, values, given, {**below, **(chosen.options if chosen else {})})

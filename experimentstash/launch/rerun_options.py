"""What `rerun SWEEP_DIR` takes after the sweep dir: hydra.launcher.* options, stash.timeout and stash.profile for
the jobs run again, checked as a launch checks them. Without any, the jobs run with the options of the sweep's
last attempt (sweep.json `reruns`), else of its launch."""

from __future__ import annotations

from dataclasses import dataclass

from .. import StashError, backends, stash_options
from ..overrides import is_override, override_key
from ..records import SWEEP_FILE, SweepRecord
from ..registry import Stash
from .argv import is_plain, launcher_values, override_value, parse_override, profile_name
from .launcher_options import resolve

TAKEN = "hydra.launcher.<option>=VALUE, stash.timeout=SECONDS and stash.profile=NAME"


@dataclass
class RerunOptions:
    options: object  # the backend's options for this attempt
    given: list[str]  # which of them a command line gave (the launch's or a rerun's)
    profile: str | None
    timeout: str | None  # the stash.timeout word given, which replaces the jobs' own


def rerun_options(stash: Stash, record: SweepRecord, words: list[str]) -> RerunOptions:
    """The launcher options of a rerun: the words' over the chosen profile's over the last attempt's."""
    for word in words:
        key = override_key(word) if is_override(word) else ""
        if "=" not in word or word[0] in "~+" or not (key.startswith("hydra.launcher.") or
                                                     key in ("stash.timeout", "stash.profile")):
            raise StashError(f"'{word}': rerun takes {TAKEN} after the sweep dir; the jobs run again with their own "
                             "recorded overrides.")
        if not is_plain(word) and parse_override(word).is_sweep_override():
            raise StashError(f"'{word}': give one value (rerun runs each job once).")
    last, last_profile = record.last_launcher()
    try:
        last = backends.options_dict(backends.recorded_options(record.backend, last))
    except StashError as err:
        raise StashError(f"{SWEEP_FILE}: the options of the sweep's last attempt: {err} The record is damaged.") \
            from None
    values, given = launcher_values(words)
    profile = profile_name(words)
    options = resolve(stash, record.backend, values, given, profile, defaults=last)
    timeouts = [w for w in words if override_key(w) == "stash.timeout"]
    if timeouts:
        stash_options.check_values({**stash_options.defaults(), "timeout": override_value(timeouts[-1])})
    earlier = set(record.given)
    for entry in record.reruns:
        earlier |= launcher_values(entry.overrides)[1]
    return RerunOptions(options, sorted(earlier | given), last_profile if profile is None else profile,
                        timeouts[-1] if timeouts else None)

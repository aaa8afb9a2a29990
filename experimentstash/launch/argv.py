"""The launch command line: Hydra's override grammar, the split into launcher words and tool overrides, and the
mistakes caught before anything runs.

Hydra rejects keys its config does not have, so the tool's overrides are taken out of Hydra's view before it
parses the command line and handed to the tool as typed.
"""

from __future__ import annotations

import re
import shlex

from .. import StashError
from ..overrides import is_override, override_key

LAUNCHER_KEYS = ("tool", "experiment", "pipeline", "stash", "hydra")
# Hydra's flags that take the next word as their value
FLAGS_WITH_VALUE = {
    "--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
    "--config-dir", "-cd", "--experimental-rerun",
}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
# Hydra's flags after which no tool runs: the launcher only prints something
NO_RUN_FLAGS = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--version"}


# a word of only these characters is read the same by Hydra's grammar and by override_value's shortcut
_PLAIN_WORD = re.compile(r"[~+]{0,2}[A-Za-z_][\w.\-/@]*(=[\w./:+\-@%]*)?", re.ASCII)
_INT = re.compile(r"[+-]?(0|[1-9](_?[0-9])*)")
_FLOAT = re.compile(r"[+-]?(([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|inf|nan)", re.I)


def is_plain(word: str) -> bool:
    return bool(_PLAIN_WORD.fullmatch(word))


def override_value(word: str):
    """The value of one override as Hydra's grammar reads it. A plain word (the usual `key=value`) is read here,
    without importing Hydra: a single run's start-up stays short; anything else goes to Hydra's parser."""
    if is_plain(word):
        text = word.partition("=")[2]
        if _INT.fullmatch(text):
            return int(text.replace("_", ""))
        if _FLOAT.fullmatch(text):
            return float(text)
        if text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text.lower()]
        return text
    return parse_override(word).value()


def parse_override(word: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(word)
    except HydraException as err:
        raise unparsable(word, err) from None


def unparsable(word: str, err: Exception) -> StashError:
    """The error for an override Hydra's grammar refuses."""
    if "Glob is incompatible" in str(err):  # Hydra's functions take no glob() inside
        key = override_key(word)
        return StashError(f"'{word}': glob() cannot go inside sort(), choice(), shuffle() or tag(). Give it alone (its "
                          f"matches come sorted), {key}=glob(...), or in a list with names, {key}=a,glob(...).")
    return StashError(f"Cannot parse override '{word}': {err}")



def is_launcher_override(word: str) -> bool:
    key = override_key(word)
    return key in LAUNCHER_KEYS or key.startswith(("stash.", "hydra.", "hydra/"))


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(words for Hydra, tool overrides as typed)."""
    hydra_words, tool_words = [], []
    words = iter(range(len(argv)))
    for i in words:
        word = argv[i]
        if word.startswith("-"):
            hydra_words.append(word)
            takes_value = word in FLAGS_WITH_VALUE or (
                word in ("--info", "-i") and i + 1 < len(argv) and argv[i + 1] in INFO_TOPICS
            )
            if takes_value and i + 1 < len(argv):
                hydra_words.append(argv[next(words)])
        elif not is_override(word):
            raise StashError(f"'{word}' is neither an option nor key=value: a value goes after its key (seed=3), "
                             "a flag starts with '-' (experimentstash --help lists them).")
        elif is_launcher_override(word):
            hydra_words.append(word)
        else:
            tool_words.append(word)
    return hydra_words, tool_words


def check_launcher_options(hydra_words: list[str], stash):
    """The launcher options and stash.* keys on the command line, checked before Hydra sees them (a single run's
    too): an unknown name or a value of the wrong type is one clear error, not Hydra's. Returns the options of
    the chosen backend (None for another launcher), which a single run uses too."""
    from .. import backends, stash_options

    backend = backends.for_launcher(chosen(hydra_words, "launcher"))
    runs_one = not ({"-m", "--multirun"} | NO_RUN_FLAGS) & set(hydra_words)
    if backend not in (None, backends.DEFAULT) and runs_one:
        raise StashError(f"hydra/launcher={backends.launcher_of(backend)} runs the jobs of a sweep: add -m "
                         "(--multirun) to run this one job there.")
    for word in hydra_words:
        if override_key(word).startswith("stash.") and "=" in word:
            stash_options.check_name(override_key(word))
    if backend is None:
        if chosen(hydra_words, "launcher") is not None:
            check_other_launcher(chosen(hydra_words, "launcher"), stash)
        return None
    from .launcher_options import resolve

    values, given = launcher_values(hydra_words)
    return resolve(stash, backend, values, given, profile_name(hydra_words))


def profile_name(words: list[str]):
    """The value of stash.profile among these words (None when not given)."""
    given = [override_value(w) for w in words if override_key(w) == "stash.profile" and "=" in w]
    return given[-1] if given else None


def with_profile_launcher(hydra_words: list[str], stash) -> list[str]:
    """A profile that names its backend chooses hydra/launcher when the command line does not."""
    from .. import backends
    from ..profiles import choose

    name = profile_name(hydra_words)
    if name is None or chosen(hydra_words, "launcher") is not None:
        return hydra_words
    profile = choose(stash.profiles, name)
    if profile.backend is None:
        return hydra_words
    return [*hydra_words, f"hydra/launcher={backends.launcher_of(profile.backend)}"]


def check_other_launcher(name: str, stash) -> None:
    """hydra/launcher=<not one of ours>: a launcher Hydra has (basic, joblib, ...), else refused, pointing to
    profiles, which are the named sets of launcher options."""
    from ..profiles import WHERE

    if name in stash.profiles:
        raise StashError(f"hydra/launcher={name}: '{name}' is a profile ({WHERE}): choose it with "
                         f"stash.profile={name}.")
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # the plugin scan registers the installed launchers' configs
    launchers = sorted(n.removesuffix(".yaml") for n in ConfigStore.instance().list("hydra/launcher"))
    if name not in launchers:
        profiles = ", ".join(sorted(stash.profiles)) or "none yet"
        raise StashError(f"hydra/launcher={name}: no such launcher (launchers: {', '.join(launchers)}). A named set of "
                         f"launcher options is a profile: `profiles:` in {WHERE}, chosen with stash.profile=NAME "
                         f"(profiles: {profiles}).")


def launcher_values(words: list[str]) -> tuple[dict, set[str]]:
    """The hydra.launcher.* values among these words as Hydra's grammar reads them, and the names of every option
    given (a nested key, a deletion or a sweep of values is named but left to Hydra)."""
    values, given = {}, set()
    for word in words:
        key = override_key(word)
        if not key.startswith("hydra.launcher.") or "=" not in word:
            continue
        name, _, nested = key[len("hydra.launcher."):].partition(".")
        given.add(name)
        if nested or word.startswith("~") or not is_plain(word) and parse_override(word).is_sweep_override():
            continue
        values[name] = override_value(word)
    return values, given


CONFIG_FLAGS = {"--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn"}
PRINT_FLAGS = {"--cfg", "-c", "--resolve", "--package", "-p", "--info", "-i"}


def check_command_line(hydra_words: list[str], tool_words: list[str]) -> None:
    """Mistakes caught before anything runs: Hydra's flags meant for the tool, hydra.* keys the launcher does not
    act on, overrides Hydra's grammar refuses, and sweep syntax without -m."""
    flags = {w.split("=", 1)[0] for w in hydra_words if w.startswith("-")}
    named = any(override_key(w) in ("tool", "experiment") for w in hydra_words)
    how = ("`experimentstash check tool=<tool> experiment=<id> [tool overrides]` prints the experiment as the "
           "tool's own Hydra composes it (--cfg job) and its config search path")
    if flags & CONFIG_FLAGS:
        raise StashError(f"{sorted(flags & CONFIG_FLAGS)[0]} is one of Hydra's own flags, which apply to the launcher's "
                         f"config, not the tool's: the tool's config dir is always configs/<tool>/ of the stash. {how}.")
    if flags & PRINT_FLAGS and named:
        raise StashError(f"{sorted(flags & PRINT_FLAGS)[0]} is one of Hydra's own flags, which apply to the launcher's "
                         f"config, not the tool's: {how}.")
    multirun = bool(flags & {"-m", "--multirun"})
    check_hydra_keys(hydra_words, multirun)
    for word in [*hydra_words, *tool_words]:
        if word.startswith("-") or not is_override(word) or is_plain(word):
            continue  # a flag, a flag's value, or a plain word: one value
        if parse_override(word).is_sweep_override() and not multirun:
            raise StashError(f"'{word}' is a sweep (several values): add -m (--multirun) to run one job per value, "
                             f"e.g. experimentstash -m {shlex.join([*hydra_words, *tool_words])}")


# the hydra.* keys the launcher acts on, as a refusal lists them
HYDRA_KEYS_TAKEN = ("hydra.run.dir (a single run's run dir), hydra.sweep.dir (-m), hydra/launcher, hydra.launcher.*, "
                    "hydra/sweeper and hydra.sweeper.* (of another sweeper)")


def check_hydra_keys(hydra_words: list[str], multirun: bool) -> None:
    """Every hydra.* key given does what Hydra does with it, or is refused here: the others would change only the
    launcher's own Hydra, which neither runs the tool nor writes its run dirs, so they would silently do nothing."""
    sweeper = chosen(hydra_words, "sweeper")
    for word in hydra_words:
        key = override_key(word)
        if not is_override(word) or not key.startswith(("hydra.", "hydra/")) and key != "hydra":
            continue  # a flag, a flag's value, or not Hydra's
        if word.startswith("~"):
            raise StashError(f"'{word}': Hydra's settings cannot be deleted here.")
        if key in ("hydra/launcher", "hydra/sweeper") or key.startswith("hydra.launcher."):
            continue
        if key.startswith("hydra.sweeper."):
            if sweeper not in (None, "stash"):
                continue
            raise StashError(f"'{word}': the stash sweeper (the default) takes no options; hydra.sweeper.* belongs "
                             "to another sweeper (hydra/sweeper=optuna, ...).")
        if key == "hydra.run.dir":
            if not multirun:
                continue
            raise StashError(f"'{word}' places a single run; with -m every job goes below hydra.sweep.dir.")
        if key == "hydra.sweep.dir":
            if multirun:
                continue
            raise StashError(f"'{word}' places a sweep (-m); a single run goes to hydra.run.dir.")
        if key == "hydra.sweep.subdir":
            raise StashError(f"'{word}': a job's run dir is always <num>_<tool>_<experiment> in its sweep dir, where "
                             "the records find it; choose the sweep dir with hydra.sweep.dir.")
        raise StashError(f"'{word}' would change only the launcher's own Hydra, which neither runs the tool nor "
                         f"writes its run dirs. The launcher takes {HYDRA_KEYS_TAKEN}; a setting of the tool's Hydra "
                         "goes into the experiment file, under hydra:.")


def chosen(hydra_words: list[str], group: str) -> str | None:
    """The option of hydra/<group> (launcher, sweeper) given on the command line, if any."""
    given = [w.split("=", 1)[1] for w in hydra_words if w.startswith(f"hydra/{group}=")]
    return given[-1] if given else None


def route_tool_overrides(hydra_words: list[str], tool_words: list[str]) -> tuple[list[str], list[str]]:
    """Show Hydra the tool overrides that another launcher or sweeper must see, as `++key=value`.

    Our sweeper and launchers take tool overrides from the side. Another sweeper (optuna, ...) must see the tool
    keys it searches; another launcher (basic, joblib) composes each job's config from its overrides and runs
    the task function, which reads them back from Hydra's config. Deletions (`~key`) always stay on the side.
    """
    from .. import backends

    if backends.for_launcher(chosen(hydra_words, "launcher")) is None:
        shown = [w for w in tool_words if not w.startswith("~")]
    elif chosen(hydra_words, "sweeper") not in (None, "stash"):
        shown = [w for w in tool_words if not w.startswith("~") and not is_plain(w)
                 and parse_override(w).is_sweep_override()]
    else:
        return hydra_words, tool_words
    return [*hydra_words, *("++" + w.lstrip("+") for w in shown)], [w for w in tool_words if w not in shown]


def objective_of(command_line: list[str]) -> dict[str, str]:
    """The direction of an optimizing sweep's objective, from its command line: {key: way} for
    stash.objective=KEY with hydra.sweeper.direction=minimize|maximize (lists pair up); {} when not both given."""
    given = {}
    for word in command_line:
        key = override_key(word)
        if key in ("stash.objective", "hydra.sweeper.direction") and "=" in word:
            try:
                given[key] = override_value(word)
            except StashError:  # a command line read back from a record: not one Hydra reads
                return {}
    keys, ways = given.get("stash.objective"), given.get("hydra.sweeper.direction")
    keys, ways = (v if isinstance(v, list) else [v] for v in (keys, ways))
    ways = [{"minimize": "min", "maximize": "max"}.get(str(w).lower()) for w in ways]
    if None in keys or None in ways or len(keys) != len(ways):
        return {}
    return {str(k): w for k, w in zip(keys, ways)}

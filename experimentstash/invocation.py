"""What this process was asked to do: the command line split into launcher and tool parts, and its exit code.

Hydra rejects keys its config does not have, so the tool's overrides are taken out of Hydra's view before it
parses the command line and handed to the tool as typed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import StashError

LAUNCHER_KEYS = ("tool", "experiment", "stash", "hydra")
# Hydra's flags that take the next word as their value
FLAGS_WITH_VALUE = {
    "--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
    "--config-dir", "-cd", "--experimental-rerun",
}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}



def __getattr__(name: str):
    """`console` (rich, for tables and live progress on stderr) is made on first use: a single run needs none."""
    if name == "console":
        from rich.console import Console

        globals()["console"] = Console(stderr=True, highlight=False, soft_wrap=True)
        return globals()["console"]
    raise AttributeError(name)


def say(text: str) -> None:
    """One line to the user on stderr."""
    print(text, file=sys.stderr, flush=True)


def override_key(word: str) -> str:
    """`+a.b=1` -> `a.b`, `~seed` -> `seed`, `hydra/launcher=x` -> `hydra/launcher`."""
    return word.lstrip("~+").split("=", 1)[0].split("@", 1)[0]


def is_launcher_override(word: str) -> bool:
    key = override_key(word)
    return key in LAUNCHER_KEYS or key.startswith(("stash.", "hydra.", "hydra/"))


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(words for Hydra, tool overrides as typed)."""
    if "-sc" in argv or "--shell-completion" in argv:
        return list(argv), []
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
        elif is_launcher_override(word):
            hydra_words.append(word)
        else:
            tool_words.append(word)
    return hydra_words, tool_words


def check_launcher_options(hydra_words: list[str]) -> None:
    """An unknown hydra.launcher.<option> of our launchers is one clear error listing the known ones."""
    from dataclasses import fields

    from hydra_plugins.experimentstash_launcher.config import StashLauncherConf, StashSlurmLauncherConf

    chosen = _chosen(hydra_words, "launcher") or "stash"
    conf = {"stash": StashLauncherConf, "stash_slurm": StashSlurmLauncherConf}.get(chosen)
    if conf is None:
        return
    known = [f.name for f in fields(conf) if f.name != "_target_"]
    for word in hydra_words:
        key = override_key(word)
        if key.startswith("hydra.launcher.") and key.split(".")[2] not in known:
            raise StashError(
                f"Unknown launcher option '{key}' of hydra/launcher={chosen} "
                f"(known: {', '.join(known)})."
            )


def _chosen(hydra_words: list[str], group: str) -> str | None:
    chosen = [w.split("=", 1)[1] for w in hydra_words if w.startswith(f"hydra/{group}=")]
    return chosen[-1] if chosen else None


def route_tool_overrides(hydra_words: list[str], tool_words: list[str]) -> tuple[list[str], list[str]]:
    """Show Hydra the tool overrides that another launcher or sweeper must see, as `++key=value`.

    Our sweeper and launchers take tool overrides from the side. Another sweeper (optuna, ...) must see the tool
    keys it searches; another launcher (basic, joblib) composes each job's config from its overrides and runs
    the task function, which reads them back from Hydra's config. Deletions (`~key`) always stay on the side.
    """
    if _chosen(hydra_words, "launcher") not in (None, "stash", "stash_slurm"):
        shown = [w for w in tool_words if not w.startswith("~")]
    elif _chosen(hydra_words, "sweeper") not in (None, "stash"):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create()
        shown = [w for w in tool_words if not w.startswith("~") and parser.parse_override(w).is_sweep_override()]
    else:
        return hydra_words, tool_words
    return [*hydra_words, *("++" + w.lstrip("+") for w in shown)], [w for w in tool_words if w not in shown]


@dataclass
class Invocation:
    root: Path | None = None
    argv: list[str] = field(default_factory=list)
    tool_overrides: list[str] = field(default_factory=list)
    tool_overrides_expanded: bool = False  # the stash sweeper put them in every job's list
    exit_code: int = 0

    def worse(self, code: int) -> None:
        """Keep the first non-zero exit code."""
        if code and not self.exit_code:
            self.exit_code = code


current = Invocation()


def fail(err: StashError) -> None:
    """Show a user error as one message and end with exit code 2."""
    say(f"error: {err}")
    sys.exit(2)

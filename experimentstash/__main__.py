"""`python -m experimentstash ...` and the `experimentstash` command.

A known subcommand word (or help) goes to the CLI; anything else is a Hydra command line for the launcher app.
"""

from __future__ import annotations

import sys

from . import StashError
from .invocation import (check_command_line, check_launcher_options, current, fail, override_key,
                         route_tool_overrides, split_argv)
from .registry import Stash, find_root

HELP = {"help", "-h", "--help"}
# launcher words a single run needs no Hydra app for (launcher options are checked before, and unused by one run)
DIRECT = ("stash.", "hydra.launcher.", "hydra/launcher", "hydra/sweeper")
# Hydra flags after which no tool runs: the launcher only prints something
NO_RUN_FLAGS = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--version", "-sc", "--shell-completion"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    from . import cli

    try:
        if not argv:
            sys.exit(cli.main(["list"]))
        if argv[0] in cli.COMMANDS or argv[0] == "help":
            sys.exit(cli.main(argv))
        if HELP & set(argv):
            print(cli.help_text(), end="")
            sys.exit(0)
        words = split_argv(argv)
        if "-sc" not in argv and "--shell-completion" not in argv:
            check_command_line(*words)
        hydra_words, tool_words = route_tool_overrides(*words)
        current.root = find_root()
        check_launcher_options(hydra_words, Stash.load(current.root))
    except StashError as err:
        fail(err)
    current.argv = list(argv)
    current.tool_overrides = tool_words
    if "-sc" in argv or "--shell-completion" in argv:
        register_choices(current.root)
    if not NO_RUN_FLAGS & set(argv):
        from .procs import keep

        keep()
    if all(override_key(w) in ("tool", "experiment") or override_key(w).startswith(DIRECT) for w in hydra_words):
        from .single import run_direct  # one run: Hydra's app would only parse what is parsed already

        sys.exit(run_direct(hydra_words))
    from .app import hydra_app

    sys.argv = [sys.argv[0], *hydra_words]
    hydra_app()
    sys.exit(current.exit_code)


def register_choices(root) -> None:
    """For shell completion only: tools and experiment ids as config-group options Hydra can list."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    stash = Stash.load(root)
    for name in stash.tools:
        store.store(group="tool", name=name, node={})
        for experiment in stash.experiments(name):  # an id with a '/' stays one option of the group
            store.store(group="experiment", name=experiment, node={})


if __name__ == "__main__":
    main()

"""`python -m experimentstash ...` and the `experimentstash` command.

A known subcommand word (or help) goes to the CLI; anything else is a Hydra command line for the launcher app.
"""

from __future__ import annotations

import sys

from . import StashError
from .invocation import (NO_RUN_FLAGS, check_command_line, check_launcher_options, chosen, current, fail,
                         is_override, override_key, route_tool_overrides, say, split_argv)
from .registry import Stash, find_root

HELP = {"help", "-h", "--help"}
# launcher words a single run needs no Hydra app for (launcher options are checked and resolved before)
DIRECT = ("stash.", "hydra.launcher.", "hydra/launcher", "hydra/sweeper")


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
        if not argv[0].startswith("-") and not is_override(argv[0]):
            raise StashError(cli.unknown_command(argv[0], argv[1:]))
        words = split_argv(argv)
        completing = "-sc" in argv or "--shell-completion" in argv
        if not completing:
            check_command_line(*words)
        hydra_words, tool_words = route_tool_overrides(*words)
        current.root = find_root()
        stash = Stash.load(current.root)
        current.launcher_options = check_launcher_options(hydra_words, stash)
        if completing:
            register_choices(stash)
    except StashError as err:
        fail(err)
    current.argv = list(argv)
    current.tool_overrides = tool_words
    if {"-m", "--multirun"} & set(hydra_words) and not NO_RUN_FLAGS & set(argv) and current.launcher_options is None:
        say(f"warning: hydra/launcher={chosen(hydra_words, 'launcher')} runs every job as a single run under "
            "outputs/: no sweep.json, no table at the end, no rerun, status or report of the sweep. The default "
            "launcher (hydra/launcher=stash) gives them all.")
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


def register_choices(stash: Stash) -> None:
    """For shell completion only: tools and experiment ids as config-group options Hydra can list."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name in stash.tools:
        store.store(group="tool", name=name, node={})
        for experiment in stash.experiments(name):  # an id with a '/' stays one option of the group
            store.store(group="experiment", name=experiment, node={})


if __name__ == "__main__":
    main()

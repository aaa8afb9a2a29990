"""`python -m experimentstash ...` and the `experimentstash` command.

A known subcommand word goes to the CLI; anything else is a Hydra command line for the launcher app.
"""

from __future__ import annotations

import sys

from . import StashError
from .invocation import check_launcher_options, current, expose_searched_keys, fail, split_argv
from .registry import find_root

SUBCOMMANDS = {"list", "runs", "rerun", "status", "reproduce", "snapshot", "add-tool", "check"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or argv[0] in SUBCOMMANDS:
            from . import cli

            sys.exit(cli.main(argv))
        hydra_words, tool_words = expose_searched_keys(*split_argv(argv))
        check_launcher_options(hydra_words)
        current.root = find_root()
    except StashError as err:
        fail(err)
    current.argv = list(argv)
    current.tool_overrides = tool_words
    from .app import hydra_app

    sys.argv = [sys.argv[0], *hydra_words]
    hydra_app()
    sys.exit(current.exit_code)


if __name__ == "__main__":
    main()

"""One thin module per subcommand (cli.COMMANDS names them): `add_arguments(parser)` and `run(args, root) -> exit
code`, parsing the arguments and printing; the work is the library's. Nothing imports them but cli.py."""

from __future__ import annotations

from pathlib import Path

from .. import StashError


def folder(root: Path, given: str, what: str = "a sweep dir (a folder under multirun/)") -> Path:
    """A folder given on the command line: as typed, or relative to the stash root."""
    path = Path(given).expanduser()
    for candidate in (path, root / path):
        if candidate.is_dir():
            return candidate.resolve()
    raise StashError(f"{given} does not exist: give {what}.")

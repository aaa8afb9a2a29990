"""What the launcher shows the user: the console on stderr, one-line messages and warnings, paths as the user can
use them, and text that comes from files and tools (records, configs, logs).

Such text is never trusted on a terminal: every character that is not printable (escape sequences, carriage
returns, bidi controls) is shown as a visible escape, so a record cannot retitle, clear or recolour a terminal;
rich never reads it as markup (tables get rich Text cells); a message quoting a value quotes a bounded excerpt.
"""

from __future__ import annotations

import os
import reprlib
import sys
from contextlib import contextmanager
from pathlib import Path


def plain(text: str, keep: str = "") -> str:
    """`text` with every non-printable character but those in `keep` shown as its escape (\\x1b, \\r, \\u202e)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def plain_lines(text: str) -> str:
    """Lines of a log or a message: newlines and tabs kept, every other control character made visible."""
    return plain(text, "\n\t")


def cell(value):
    """A rich table cell from file or tool text: shown as it is, never read as markup."""
    from rich.text import Text

    return Text(plain(str(value)))


_EXCERPT = reprlib.Repr()
_EXCERPT.maxlevel, _EXCERPT.maxstring, _EXCERPT.maxother, _EXCERPT.maxlong = 3, 60, 60, 40


def excerpt(value, limit: int = 80) -> str:
    """repr(value) cut to about `limit` characters without building the whole of it (a YAML alias bomb is
    billions of items when expanded)."""
    try:
        text = _EXCERPT.repr(value)
    except ValueError:  # an integer too long to convert to text
        text = f"<{type(value).__name__}>"
    return plain(text if len(text) <= limit else text[:limit - 3] + "...")


def __getattr__(name: str):
    """`console` (rich, for tables and live progress on stderr) is made on first use: a single run needs none."""
    if name == "console":
        return _console()
    raise AttributeError(name)


def _console():
    if "console" not in globals():
        # no markup or emoji codes read from what it prints: names and values from files go through it
        globals()["console"] = output(stderr=True, soft_wrap=True, markup=False, emoji=False)
    return globals()["console"]


def output(**options):
    """A rich Console for which a closed pipe (`... | head`) ends the output, not the launcher: what follows goes
    nowhere, and the exit code stays the runs' (rich's own default exits with 1)."""
    from rich.console import Console

    class Output(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, (sys.stderr if self.stderr else sys.stdout).fileno())
            os.close(devnull)

    return Output(highlight=False, **options)


def say(text: str) -> None:
    """One line to the user on stderr (with names and values from files in it: control characters made visible)."""
    print(plain_lines(text), file=sys.stderr, flush=True)


def warn(text: str) -> None:
    """A warning on stderr: the word in yellow, the text as it is (never markup)."""
    from rich.text import Text

    _console().print(Text.assemble(("warning:", "yellow"), " " + plain_lines(text)), highlight=False)


MAX_NAMED = 20  # bad records named one by one; the rest are counted


def warn_skipped(root: Path, bad) -> None:
    """One warning naming each record that was skipped (records.BadRecord), up to MAX_NAMED, then a count; in the
    order of their paths, whether they were found by a walk of the folders or by the index."""
    bad = sorted(bad, key=lambda err: str(err.path))
    for err in bad[:MAX_NAMED]:
        say(f"warning: skipped {shown_path(root, err.path)}: {err.reason}")
    if len(bad) > MAX_NAMED:
        say(f"warning: ... and {len(bad) - MAX_NAMED} more unreadable or invalid records skipped")


def shown_path(root: Path, path: Path) -> Path:
    """A path as the user can use it: relative when the command was typed at the stash root, else absolute."""
    try:
        here = Path.cwd().resolve()
    except OSError:
        here = None
    return path.relative_to(root) if here == root and path.is_relative_to(root) else path


@contextmanager
def quiet_when_closed():
    """Output into a closed pipe (`... | head`) ends the output, not the launcher: the rest goes nowhere."""
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)

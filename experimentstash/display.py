"""Text that comes from files and tools (records, configs, logs), as the launcher shows it.

Such text is never trusted on a terminal: every character that is not printable (escape sequences, carriage
returns, bidi controls) is shown as a visible escape, so a record cannot retitle, clear or recolour a terminal;
rich never reads it as markup (tables get rich Text cells); a message quoting a value quotes a bounded excerpt.
"""

from __future__ import annotations

import reprlib


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

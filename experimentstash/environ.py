"""Variables of this process's environment set for a while (what a library reads from os.environ, or what a
command started meanwhile inherits), then as they were."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def environ(values: dict[str, str]):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

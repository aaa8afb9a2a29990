"""experimentstash: run pinned Hydra tools on the experiments of a stash, and record every run."""

__version__ = "0.1.0"


class StashError(Exception):
    """An error the user caused and can fix: shown as one message, exit code 2."""

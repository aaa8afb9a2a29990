"""Signed run records: run.json carries `signature`, an HMAC-SHA256 under a key of this stash.

The key (32 random bytes) lives in the stash's git dir (`.git/experimentstash/record-key`), never in the
repository: a clone, a colleague's copied run dir or a record edited after it was written has no valid signature.
Such records are still shown by every view (they are facts someone claims), but never reused. A stash that is no
git repository has no key: its records are unsigned.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from pathlib import Path

KEY_FILE = Path("experimentstash") / "record-key"
KEY_BYTES = 32
UNSIGNED = "unsigned (written by hand, or before records were signed)"
FOREIGN = "not signed by this stash (copied from a clone or a colleague, or changed after it was written)"

_keys: dict[Path, bytes] = {}  # root -> key, once found or made in this process


def git_dir(root: Path) -> Path | None:
    """The stash's common git dir: `.git`, or where a `.git` file points (a worktree's, through its commondir)."""
    dot = root / ".git"
    if dot.is_dir():
        return dot
    try:
        text = dot.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir:"):
        return None
    folder = (root / text[len("gitdir:"):].strip()).resolve()
    try:
        return (folder / (folder / "commondir").read_text().strip()).resolve()
    except (OSError, UnicodeDecodeError):
        return folder


def record_key(root: Path, create: bool = False) -> bytes | None:
    """The stash's record key; made (0600) by the first write when `create`. None without a git dir, or when the
    key cannot be read or made (records are then unsigned)."""
    if root in _keys:
        return _keys[root]
    folder = git_dir(root)
    if folder is None:
        return None
    path = folder / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
        key = _make_key(path)
    except OSError:
        return None
    if key is None or len(key) != KEY_BYTES:
        return None
    _keys[root] = key
    return key


def _make_key(path: Path) -> bytes | None:
    """A new key, written whole before it takes its name (O_EXCL temp file, then a hard link that fails when another
    process was first): no reader ever sees half a key, and two writers agree on one."""
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".record-key.")  # O_EXCL, 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(KEY_BYTES))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
        return path.read_bytes()
    except OSError:
        return None


def _digest(data: dict, key: bytes) -> str:
    text = json.dumps({k: v for k, v in data.items() if k != "signature"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sign(data: dict, key: bytes) -> dict:
    """The record's fields with its signature over all the others."""
    return {**{k: v for k, v in data.items() if k != "signature"}, "signature": _digest(data, key)}


def refusal(data: dict, root: Path) -> str | None:
    """Why a record read back (as parsed from its file) cannot be trusted as this stash's, or None when it can."""
    signature = data.get("signature")
    if not isinstance(signature, str):
        return UNSIGNED
    key = record_key(root)
    valid = key and hmac.compare_digest(signature.encode(errors="replace"), _digest(data, key).encode())
    return None if valid else FOREIGN

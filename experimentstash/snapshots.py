"""Snapshots: an experiment's fully resolved config frozen under configs/<tool>/snapshots/<tag>/<id>.yaml, with a
header holding the tool commit and the time; committed and tagged `snapshot/<tag>` on request."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import git

from . import StashError
from .registry import SNAPSHOTS, Stash


TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_tag(tag: str) -> None:
    if not TAG.fullmatch(tag) or tag.endswith((".", ".lock")) or ".." in tag:
        raise StashError(
            f"--tag '{tag}': use letters, digits, '.', '_' and '-' (starting with a letter or digit), e.g. neurips2025."
        )


def snapshot_path(stash: Stash, tool: str, tag: str, experiment: str) -> Path:
    return stash.root / "configs" / tool / SNAPSHOTS / tag / f"{experiment}.yaml"


def header(tool: str, experiment: str, tag: str, commit: str, pinned: str | None, overrides: list[str],
           dirty: bool) -> str:
    lines = [
        "# @package _global_",  # a config in a subfolder belongs to that package unless it says otherwise
        f"# experimentstash snapshot '{tag}' of experiment '{experiment}' (tool '{tool}')",
        f"# tool_commit: {commit}",
    ]
    if pinned and pinned != commit:
        lines.append(f"# tool_pinned_commit: {pinned} (the stash pinned another commit when this was made)")
    if dirty:
        lines.append("# tool_dirty: true (made with --allow-dirty: uncommitted tool changes are not in that commit)")
    lines.append(f"# created_at: {datetime.now(timezone.utc).isoformat(timespec='seconds').replace('+00:00', 'Z')}")
    if overrides:
        lines.append(f"# overrides: {' '.join(overrides)}")
    lines.append("# fully resolved by the tool's Hydra (--cfg job --resolve); run it with:")
    lines.append(f"#   python -m experimentstash tool={tool} experiment={SNAPSHOTS}/{tag}/{experiment}")
    return "\n".join(lines) + "\n"


def commit(repo: git.Repo, rel: str, gitlink: str | None, tag_name: str, args, commit: str) -> None:
    paths = [rel] + ([gitlink] if gitlink else [])
    repo.git.add("--", *paths)
    changed = repo.git.diff("--cached", "--name-only", "HEAD", "--", *paths) if repo.head.is_valid() else rel
    if changed:
        message = f"Snapshot {args.tag}: {args.tool} {args.experiment} at {commit[:10]}"
        try:
            # only these paths: whatever else the user has staged stays out of the snapshot commit
            repo.git.commit("-q", "-m", message, "--only", "--", *paths)
        except git.GitCommandError as err:
            raise StashError(f"git commit of the snapshot failed: {err.stderr.strip()}") from None
    try:
        repo.create_tag(tag_name, ref=repo.head.commit, message=f"snapshot {args.tag}", force=args.force)
    except git.GitCommandError as err:
        raise StashError(f"git tag {tag_name} failed: {err.stderr.strip()}") from None

"""`experimentstash snapshot <tool> <experiment> --tag T [--commit]`: freeze an experiment's resolved config.

The tool's own Hydra composes the experiment (`--cfg job --resolve`), so no interpolation and no defaults list
is left: the file stands alone. It is written to configs/<tool>/snapshots/<T>/<id>.yaml with a header holding
the tool commit and the time, and runs like an experiment: `tool=<tool> experiment=snapshots/<T>/<id>`.
"""

from __future__ import annotations

from pathlib import Path

import git

from .. import StashError
from ..launch.compose import query, tail
from ..output import console, warn
from ..pins import inspect_tool
from ..registry import SNAPSHOTS, Stash, parse_yaml
from ..snapshots import check_tag, commit, header, snapshot_path


def add_arguments(p) -> None:
    p.add_argument("tool")
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*", help="tool overrides to freeze into the snapshot")
    p.add_argument("--tag", required=True, help="snapshot tag, e.g. neurips2025 (also the git tag snapshot/<tag>)")
    p.add_argument("--commit", action="store_true", help="commit the snapshot and the tool's gitlink, tag snapshot/<tag>")
    p.add_argument("--allow-dirty", action="store_true", help="snapshot a tool with uncommitted changes anyway")
    p.add_argument("--force", action="store_true", help="replace an existing snapshot file and tag")


def run(args, root: Path) -> int:
    stash = Stash.load(root)
    check_tag(args.tag)
    tool = stash.tool(args.tool)
    if args.experiment.split("/", 1)[0] == SNAPSHOTS:
        raise StashError(f"'{args.experiment}' is a snapshot already: snapshot an experiment of configs/{tool.name}/experiment/.")
    q = query(stash, tool.name, args.experiment)
    target = snapshot_path(stash, tool.name, args.tag, args.experiment)
    repo = None
    try:
        repo = git.Repo(stash.root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        if args.commit:
            raise StashError(f"--commit needs the stash {stash.root} to be a git repository.") from None
    tag_name = f"snapshot/{args.tag}"
    if repo is not None and tag_name in [t.name for t in repo.tags] and not args.force:
        raise StashError(f"The tag {tag_name} exists already: pick another --tag, or --force to replace it.")
    if target.exists() and not args.force:
        raise StashError(f"{target.relative_to(stash.root)} exists already: pick another --tag, or --force to replace it.")

    pin = inspect_tool(stash.root, tool)
    if pin.kind == "uninitialized":
        raise StashError(f"Tool '{tool.name}' is a submodule that is not checked out: run "
                         f"`git submodule update --init {tool.rel_path}`.")
    if not pin.commit:
        raise StashError(f"Tool '{tool.name}' has no commit to pin (is the stash a git repository with a commit?).")
    if pin.dirty and not args.allow_dirty:
        where = tool.rel_path if pin.kind == "submodule" else f"the stash below {tool.rel_path}"
        raise StashError(
            f"Tool '{tool.name}' has uncommitted changes in {where} ({', '.join(pin.untracked[:3]) or 'modified files'}): "
            "a snapshot of uncommitted code pins nothing. Commit them first, or pass --allow-dirty."
        )
    if pin.moved:
        warn(f"{tool.rel_path} is at {pin.commit[:10]}, the stash pins {pin.pinned[:10]}: "
             f"the snapshot records {pin.commit[:10]}" + (" and --commit pins it." if args.commit else "."))

    out = q.run("--cfg", "job", "--resolve", overrides=args.overrides, fixed=False)
    if out.returncode != 0:
        raise StashError(
            f"Tool '{tool.name}' could not compose experiment '{args.experiment}' (exit {out.returncode}):\n"
            f"{tail(out.stderr or out.stdout)}"
        )
    text = out.stdout
    parsed = parse_yaml(text, f"the --cfg job output of tool '{tool.name}'")
    if not isinstance(parsed, dict):
        raise StashError(f"Tool '{tool.name}' printed no config mapping for --cfg job:\n{tail(text)}")
    if "${" in text:
        line = next(i + 1 for i, line in enumerate(text.splitlines()) if "${" in line)
        raise StashError(
            f"The resolved config of '{args.experiment}' still holds '${{' (line {line} of the composed config, an "
            "escaped interpolation): a snapshot must be plain values. Replace that value in the experiment."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header(tool.name, args.experiment, args.tag, pin.commit, pin.pinned, list(args.overrides),
                             pin.dirty) + text)
    rel = target.relative_to(stash.root).as_posix()
    console.print(f"snapshot written: {rel} (tool {tool.name} at {pin.commit[:10]})", highlight=False)
    if args.commit:
        commit(repo, rel, tool.rel_path.rstrip("/") if pin.kind == "submodule" else None, tag_name, args, pin.commit)
        console.print(f"committed and tagged {tag_name}", highlight=False)
    console.print(f"run it: python -m experimentstash tool={tool.name} experiment={SNAPSHOTS}/{args.tag}/{args.experiment}",
                  highlight=False)
    return 0



"""`experimentstash add-tool <name> <url> [--entrypoint ...] [--copy-configs]`: a tool as a submodule, registered
(registering.py does it, and undoes every step when one fails)."""

from __future__ import annotations

from pathlib import Path

from .. import META, StashError
from ..output import console, warn
from ..registering import Undo, add, check_name, is_local, run_git
from ..registry import Stash, read_yaml


def add_arguments(p) -> None:
    p.add_argument("name")
    p.add_argument("url", help="git URL, file:// URL or local path of the tool's repository")
    p.add_argument("--entrypoint", help="'-m package.module' or a script path in the tool (default: found by @hydra.main)")
    p.add_argument("--description", help="one line for meta.yaml")
    p.add_argument("--copy-configs", action="store_true", help="copy the tool's config tree into configs/<name>/")


def run(args, root: Path) -> int:
    stash = Stash.load(root)
    name = args.name
    check_name(name)
    if name in stash.tools:
        raise StashError(f"Tool '{name}' is registered already in {META} (path {stash.tools[name].rel_path}).")
    raw = read_yaml(root / META, root) or {}
    if name in (raw.get("tools") or {}):
        raise StashError(f"Tool '{name}' is registered already in {META}.")
    rel = f"tools/{name}"
    if (root / rel).exists():
        raise StashError(f"{rel} exists already: remove it or choose another name.")
    if run_git(root, "rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
        raise StashError(f"The stash {root} is not a git repository: add-tool needs `git submodule add`.")
    listed = run_git(root, "config", "-f", ".gitmodules", "--get-regexp", r"^submodule\..*\.path$", check=False).stdout
    if any(line.split()[-1] == rel for line in listed.splitlines()) or \
            run_git(root, "config", "-f", ".gitmodules", "--get", f"submodule.{rel}.url", check=False).stdout.strip():
        raise StashError(f".gitmodules has an entry for {rel} already: remove it first.")
    url = args.url
    if is_local(url) and not url.startswith("file://"):
        local = Path(url).expanduser()
        if not local.is_absolute():
            local = Path.cwd() / local
        url = str(local.resolve())

    undo = Undo(root, name, rel)
    try:
        entry = add(stash, args, name, rel, url, undo)
    except BaseException as err:
        undo.restore()
        if isinstance(err, StashError):
            raise StashError(f"{err} Nothing was added.") from None
        raise
    console.print(f"added tool '{name}' at {rel} ({entry['entrypoint']}), registered in {META}", highlight=False)
    if (root / "configs" / name / "experiment" / "example.yaml").is_file():
        console.print(f"wrote configs/{name}/experiment/example.yaml; run it: "
                      f"python -m experimentstash tool={name} experiment=example", highlight=False)
    console.print(f"if the tool writes a JSON file of results into its output dir, add `result: <file name>` under "
                  f"tools.{name} in {META}: `runs` and `compare` then show its values.", highlight=False)
    # a new stash's .gitignore too, or every run records the stash as dirty
    untracked_ignore = (root / ".gitignore").is_file() and not run_git(root, "ls-files", "--", ".gitignore").stdout
    ignore = " .gitignore" if untracked_ignore else ""
    console.print(f"next: add experiments to configs/{name}/experiment/, then "
                  f"`git add {META} configs/{name}{ignore} && git commit -m 'Add tool {name}'`", highlight=False)
    if is_local(args.url):
        warn(f".gitmodules holds the local path {url} as the URL of {rel}, which collaborators cannot clone. Once "
             f"the tool has a shared repository: git submodule set-url -- {rel} URL && git commit -m 'Shared URL "
             f"for {rel}' .gitmodules")
    return 0

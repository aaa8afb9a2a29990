"""Adding a tool to the stash (`add-tool`): `git submodule add` into tools/<name>, a block appended to
configs/meta.yaml as text (its comments and order stay as they are), configs/<name>/experiment/ created, the
tool's Hydra entry point found. Any failure undoes every step: no .gitmodules entry, no tools/<name>, no
.git/modules/<name>, meta.yaml byte for byte as before."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from . import META, StashError
from .output import console, warn
from .registry import Stash


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(name: str) -> None:
    if not NAME.fullmatch(name) or name.endswith(".") or ".." in name:
        raise StashError(
            f"Tool name '{name}' is not allowed: use letters, digits, '_', '-' and '.', starting with a letter or "
            "digit, without path separators or spaces (it names tools/<name> and configs/<name>)."
        )


def run_git(root: Path, *args: str, check: bool = True, local_urls: bool = False) -> subprocess.CompletedProcess:
    extra = ["-c", "protocol.file.allow=always"] if local_urls else []
    out = subprocess.run(["git", *extra, *args], cwd=root, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise StashError(f"git {' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out


def is_local(url: str) -> bool:
    return url.startswith("file://") or "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


class Undo:
    """Records the stash's state before add-tool touches it, and puts it back."""

    def __init__(self, root: Path, name: str, rel: str):
        self.root, self.name, self.rel = root, name, rel
        self.meta = (root / META).read_bytes()
        gitmodules = root / ".gitmodules"
        self.gitmodules = gitmodules.read_bytes() if gitmodules.exists() else None
        entry = run_git(root, "ls-files", "-s", "--", ".gitmodules").stdout.split()
        self.gitmodules_index = (entry[0], entry[1]) if entry else None
        git_dir = Path(run_git(root, "rev-parse", "--absolute-git-dir").stdout.strip())
        self.config = git_dir / "config"
        self.config_bytes = self.config.read_bytes()
        self.modules = git_dir / "modules" / rel
        self.modules_alt = git_dir / "modules" / name
        self.created: list[Path] = []
        self.tools_dir_existed = (root / rel).parent.exists()

    def restore(self) -> None:
        run_git(self.root, "rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", self.rel, check=False)
        shutil.rmtree(self.root / self.rel, ignore_errors=True)
        for path in (self.modules, self.modules_alt):
            if not (path.exists() and path.resolve().is_relative_to(self.config.parent.resolve() / "modules")):
                continue
            shutil.rmtree(path, ignore_errors=True)
        for path in reversed(self.created):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        self.config.write_bytes(self.config_bytes)
        gitmodules = self.root / ".gitmodules"
        if self.gitmodules is None:
            gitmodules.unlink(missing_ok=True)
        else:
            gitmodules.write_bytes(self.gitmodules)
        if self.gitmodules_index:
            mode, sha = self.gitmodules_index
            run_git(self.root, "update-index", "--cacheinfo", f"{mode},{sha},.gitmodules", check=False)
        else:
            run_git(self.root, "rm", "-q", "--cached", "--ignore-unmatch", "--", ".gitmodules", check=False)
        (self.root / META).write_bytes(self.meta)
        parent = (self.root / self.rel).parent
        if not self.tools_dir_existed and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def _hydra_mains(tool_dir: Path) -> list[tuple[Path, ast.Call]]:
    """(file, @hydra.main(...) call) of every Python file of the tool that has one (tests and hidden folders skipped)."""
    found = []
    for path in sorted(tool_dir.rglob("*.py")):
        rel = path.relative_to(tool_dir)
        if any(part.startswith(".") or part in ("tests", "test", "docs", "examples") for part in rel.parts[:-1]):
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "hydra.main" not in text and "@main" not in text:
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for deco in node.decorator_list:
                    if isinstance(deco, ast.Call) and _is_hydra_main(deco.func):
                        found.append((path, deco))
    return found


def _is_hydra_main(func) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "main" and isinstance(func.value, ast.Name) and func.value.id == "hydra"
    return False


def _entrypoint_for(tool_dir: Path, path: Path) -> str:
    rel = path.relative_to(tool_dir)
    parts = rel.with_suffix("").parts
    base = 1 if parts[0] == "src" else 0
    package_dir = tool_dir / Path(*parts[: base + 1])
    if len(parts) > base + 1 and (package_dir / "__init__.py").is_file():
        return "-m " + ".".join(parts[base:])
    return rel.as_posix()


def _script_of(tool_dir: Path, entrypoint: str) -> Path | None:
    words = entrypoint.split()
    if words[0] == "-m" and len(words) == 2:
        rel = Path(*words[1].split("."))
        for base in ("", "src"):
            for candidate in (tool_dir / base / rel.with_suffix(".py"), tool_dir / base / rel / "__main__.py"):
                if candidate.is_file():
                    return candidate
        return None
    if len(words) == 1 and not words[0].startswith("-"):
        path = tool_dir / words[0]
        return path if path.is_file() else None
    raise StashError(f"--entrypoint '{entrypoint}' is neither '-m package.module' nor a script path.")


def first_experiment(call: ast.Call | None, config_dir: Path | None) -> str:
    """An experiment that runs as it is: on the tool's own primary config when it has one, else standing alone."""
    names = [kw.value.value for kw in (call.keywords if call else []) if kw.arg == "config_name"
             and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)]
    head = "# @package _global_\n# A first experiment: the file name (without .yaml) is its id.\n"
    if names and config_dir is not None and (config_dir / f"{names[0]}.yaml").is_file():
        return head + (f"# It starts from the tool's own config ({names[0]}) and overrides what follows.\n"
                       f"defaults:\n  - /{names[0]}\n  - _self_\n\n# seed: 1\n")
    return head + "# The tool has no primary config of its own: this file is its whole config.\n\n# seed: 1\n"


def _config_path(call: ast.Call) -> tuple[bool, object]:
    """(given, value) of config_path= in a @hydra.main call; value is None, a string or ast for a computed one."""
    for kw in call.keywords:
        if kw.arg == "config_path":
            if isinstance(kw.value, ast.Constant):
                return True, kw.value.value
            return True, kw.value
    return False, None


def config_path_warnings(tool_dir: Path, script: Path, call: ast.Call | None, name: str) -> tuple[list[str], Path | None]:
    """Warnings about the @hydra.main config_path of the entrypoint, and the tool's config folder if found."""
    if call is None:
        return [f"no @hydra.main found in {script.relative_to(tool_dir)}: check that it is a Hydra application."], None
    given, value = _config_path(call)
    if not given or value is None:
        return [f"@hydra.main in {script.relative_to(tool_dir)} sets no config_path: the tool has no config folder "
                f"of its own, so every config it composes must come from configs/{name}/ or its search packages."], None
    if not isinstance(value, str):
        return [f"@hydra.main in {script.relative_to(tool_dir)} computes config_path ({ast.unparse(value)}): "
                f"check that it exists when the tool runs from tools/{name}."], None
    if value.startswith("pkg://"):
        return [], None
    folder = (Path(value) if Path(value).is_absolute() else script.parent / value).resolve()
    if Path(value).is_absolute() or not folder.is_relative_to(tool_dir.resolve()):
        return [f"@hydra.main in {script.relative_to(tool_dir)} hard-codes config_path='{value}', outside the "
                f"tool's repository ({folder}): --config-dir=configs/{name} cannot stand in for it, and the tool's "
                f"primary config will be missing wherever that folder is missing. Use a path inside the tool, a "
                "pkg:// path, or config_path=None."], None
    if not folder.is_dir():
        return [f"@hydra.main in {script.relative_to(tool_dir)} uses config_path='{value}' but {folder} does not "
                f"exist in the tool's repository: --config-dir=configs/{name} only adds a folder, so the tool's own "
                "configs will be missing."], None
    return [], folder


def append_block(text: str, name: str, entry: dict) -> str:
    """meta.yaml text with the tool's entry appended under `tools:`, everything else left byte for byte."""
    lines = text.splitlines(keepends=True)
    top = [i for i, line in enumerate(lines) if re.match(r"tools\s*:", line)]
    body = yaml.safe_dump({name: entry}, sort_keys=False, default_flow_style=False, width=1000)
    if not top:
        prefix = text if text.endswith("\n") or not text else text + "\n"
        return prefix + "tools:\n" + _indent(body, "  ")
    start = top[0]
    rest = lines[start].split(":", 1)[1].split("#", 1)[0].strip()
    if rest not in ("", "{}", "null", "~"):
        raise StashError(f"{META}: 'tools:' holds an inline value ({rest}): write it as a block mapping first.")
    if rest:
        lines[start] = "tools:" + lines[start].split(rest, 1)[1]  # `tools: {}` -> `tools:`, keep a comment
    indent = None
    for line in lines[start + 1:]:
        if line.strip() and not line.lstrip().startswith("#"):
            if not line[0].isspace():
                raise StashError(f"{META}: 'tools:' is not the last top-level key; add the tool by hand.")
            indent = line[: len(line) - len(line.lstrip())]
            break
    indent = indent or "  "
    out = "".join(lines)
    if out and not out.endswith("\n"):
        out += "\n"
    separated = len(re.findall(r"\n\s*\n", "".join(lines[start + 1:]))) > 0
    if separated and not out.endswith("\n\n"):
        out += "\n"
    return out + _indent(body, indent, step=indent)


def _indent(body: str, indent: str, step: str = "  ") -> str:
    out = []
    for line in body.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 2
        out.append(indent + step * depth + line.lstrip(" ") + "\n")
    return "".join(out)


def add(stash: Stash, args, name: str, rel: str, url: str, undo: Undo) -> dict:
    root = stash.root
    out = run_git(root, "submodule", "add", "--quiet", "--", url, rel, check=False,
               local_urls=is_local(url))
    if out.returncode != 0:
        message = (out.stderr.strip() or out.stdout.strip()).splitlines()
        raise StashError(f"git cannot clone '{args.url}': {' '.join(message[-2:])}.")
    tool_dir = root / rel
    if args.entrypoint:
        entrypoint = args.entrypoint
        script = _script_of(tool_dir, entrypoint)
        if script is None:
            raise StashError(f"--entrypoint '{entrypoint}' does not exist in {rel}.")
        calls = [c for p, c in _hydra_mains(tool_dir) if p == script]
        call = calls[0] if calls else None
    else:
        mains = _hydra_mains(tool_dir)
        scripts = sorted({p for p, _ in mains})
        if len(scripts) != 1:
            found = ", ".join(str(p.relative_to(tool_dir)) for p in scripts[:5]) or "none"
            raise StashError(
                f"Cannot tell the tool's entrypoint: files with @hydra.main in {rel}: {found}. "
                "Give --entrypoint '-m package.module' or --entrypoint path/to/script.py."
            )
        script = scripts[0]
        call = mains[0][1]
        entrypoint = _entrypoint_for(tool_dir, script)
    warnings, config_dir = config_path_warnings(tool_dir, script, call, name)
    entry = {"path": rel, "entrypoint": entrypoint}
    if args.description:
        entry["description"] = args.description

    configs = root / "configs" / name
    if not configs.exists():
        undo.created.append(configs)
    experiments = configs / "experiment"
    experiments.mkdir(parents=True, exist_ok=True)
    if args.copy_configs:
        if config_dir is None:
            raise StashError(f"--copy-configs: the tool has no config folder to copy ({'; '.join(warnings) or 'none found'}).")
        copied = _copy_tree(config_dir, configs, undo)
        console.print(f"copied {copied} config files from {config_dir.relative_to(root)} to configs/{name}/",
                      highlight=False)
        warnings.append(
            f"the tool's own {config_dir.relative_to(tool_dir)}/ is searched before configs/{name}/: a copied file "
            "only takes effect under a new name (`experimentstash check` warns about shadowed files)."
        )
    if not any(experiments.iterdir()):
        first = experiments / "example.yaml"
        first.write_text(first_experiment(call, config_dir))
        undo.created.append(first)

    meta = root / META
    new_text = append_block(meta.read_text(), name, entry)
    parsed = yaml.safe_load(new_text) or {}
    old = yaml.safe_load(undo.meta) or {}
    tools = parsed.get("tools") or {}
    if tools.get(name) != entry or {k: v for k, v in tools.items() if k != name} != (old.get("tools") or {}):
        raise StashError(f"{META}: could not append the tool's block safely; add it by hand.")
    meta.write_text(new_text)
    Stash.load(root).tool(name)  # the new registration validates
    for warning in warnings:
        warn(warning)
    return entry


def _copy_tree(source: Path, target: Path, undo: Undo) -> int:
    count = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".py":
            continue
        dest = target / path.relative_to(source)
        if dest.exists():
            continue
        for parent in reversed(dest.relative_to(target).parents):
            folder = target / parent
            if not folder.exists():
                folder.mkdir()
                undo.created.append(folder)
        shutil.copy2(path, dest)
        undo.created.append(dest)
        count += 1
    return count

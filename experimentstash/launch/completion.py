"""Shell completion (`-sc install=bash|zsh|fish`, then `-sc query=<shell>` at every TAB), answered from the stash
without Hydra: Hydra's own completion composes the launcher's config at each TAB (too slow for a TAB), cannot tell
which tool an experiment belongs to, and does not work for `python -m experimentstash`.

A query gets the command line up to the cursor (COMP_LINE, COMP_POINT) and prints every word that can stand where
the cursor's word is, whole (`experiment=figure1/pca_noisy`): the first word offers the subcommands; `tool=` the
registered tools; `experiment=` the experiment ids and snapshots of the tool named on the line (of every tool when
none is) and `glob(`; `stash.*` and the chosen backend's `hydra.launcher.*` options their allowed values.
"""

from __future__ import annotations

import os
import typing
from dataclasses import fields

from .. import StashError, backends, find_root, stash_options
from ..overrides import override_key

SHELLS = ("bash", "zsh", "fish")
FLAGS = ("-m", "--multirun", "--help")
# the hydra.* keys the launcher acts on (launch/argv.py refuses the others)
HYDRA_KEYS = ("hydra/launcher=", "hydra.run.dir=", "hydra.sweep.dir=")
DONE = ("=", "/", "(", ",")  # a candidate ending so goes on: no space after it

# bash. The line up to the cursor goes to the same program the user is typing
# (`experimentstash`, or `python -m experimentstash` with that python). Bash splits words at '=' and ':' too:
# each candidate loses what comes before the word bash replaces. After any other `python ...`, the completion that
# python had before runs.
BASH = r"""_experimentstash_python_before=$(complete -p python 2>/dev/null | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
_experimentstash_complete() {
    local line=${COMP_LINE:0:$COMP_POINT} cur=${COMP_WORDS[COMP_CWORD]} words program token prefix i
    read -ra words <<< "$line"
    if [[ ${words[0]##*/} == python* ]]; then
        if [[ ${words[1]} != -m || ${words[2]} != experimentstash || ${#words[@]} -lt 3 ]] ||
           [[ ${#words[@]} -eq 3 && $line != *[[:space:]] ]]; then
            [[ -n $_experimentstash_python_before ]] && "$_experimentstash_python_before" "$@"
            return
        fi
        program=("${words[0]}" -m experimentstash)
    else
        program=("${words[0]}")
    fi
    token=${line##*[[:space:]]}
    prefix=""
    [[ -n $cur && $token == *"$cur" ]] && prefix=${token%"$cur"}
    local IFS=$'\n'
    COMPREPLY=($(COMP_LINE=$line COMP_POINT=${#line} "${program[@]}" -sc query=bash 2>/dev/null))
    for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]=${COMPREPLY[i]#"$prefix"}; done
}
complete -o nospace -o default -F _experimentstash_complete experimentstash python python3
"""
BASH_UNINSTALL = """complete -r experimentstash python python3
[[ -n $_experimentstash_python_before ]] && complete -F "$_experimentstash_python_before" python
unset -f _experimentstash_complete
unset _experimentstash_python_before
"""
# zsh: the same, natively (bash's script through bashcompinit fails: zsh reads arrays and `read` otherwise)
ZSH = """_experimentstash() {
    local line=${BUFFER[1,CURSOR]}
    local -a program found
    if [[ ${words[1]:t} == python* ]]; then
        if [[ ${words[2]} != -m || ${words[3]} != experimentstash || $CURRENT -le 3 ]]; then
            if (( $+functions[_python] )); then _python; else _files; fi
            return
        fi
        program=(${words[1]} -m experimentstash)
    else
        program=(${words[1]})
    fi
    found=(${(f)"$(COMP_LINE=$line COMP_POINT=${#line} $program -sc query=zsh 2>/dev/null)"})
    if (( ${#found} )); then compadd -Q -S '' -- $found; else _files; fi
}
compdef _experimentstash experimentstash python python3
"""
ZSH_UNINSTALL = """compdef -d experimentstash
if (( $+functions[_python] )); then compdef _python python python3; else compdef -d python python3; fi
unfunction _experimentstash
"""
FISH = """function __experimentstash_complete
    set -lx COMP_LINE (commandline -cp)
    set -lx COMP_POINT (string length -- "$COMP_LINE")
    set -l words (commandline -cpo)
    if string match -q 'python*' -- (basename -- $words[1])
        $words[1] -m experimentstash -sc query=fish 2>/dev/null
    else
        $words[1] -sc query=fish 2>/dev/null
    end
end
complete -c experimentstash -f -a '(__experimentstash_complete)'
complete -c python -n 'string match -qr -- " -m experimentstash " (commandline -cp)' -f -a '(__experimentstash_complete)'
complete -c python3 -n 'string match -qr -- " -m experimentstash " (commandline -cp)' -f -a '(__experimentstash_complete)'
"""
FISH_UNINSTALL = """complete -e -c experimentstash
functions -e __experimentstash_complete
"""


def shell_completion(value: str | None, commands) -> int:
    """`-sc install=<shell>`, `-sc uninstall=<shell>` or `-sc query=<shell>`: print the shell's script, or the
    candidates for COMP_LINE up to COMP_POINT."""
    action, _, shell = (value or "").partition("=")
    if action not in ("install", "uninstall", "query") or shell not in SHELLS:
        raise StashError(f"-sc {value or ''}: give install=<shell>, uninstall=<shell> or query=<shell>, with a shell "
                         f"of {', '.join(SHELLS)} (eval \"$(experimentstash -sc install=bash)\" in ~/.bashrc).")
    if action == "query":
        line = os.environ.get("COMP_LINE", "")
        point = os.environ.get("COMP_POINT", "")
        words = candidates(line[:int(point)] if point.isdigit() else line, commands)
        if shell != "fish":  # a word that is whole gets its space (the script completes with -o nospace)
            words = [w if w.endswith(DONE) else w + " " for w in words]
        if words:
            print("\n".join(words))
    else:
        scripts = {"bash": (BASH, BASH_UNINSTALL), "zsh": (ZSH, ZSH_UNINSTALL), "fish": (FISH, FISH_UNINSTALL)}
        print(scripts[shell][action == "uninstall"], end="")
    return 0


def candidates(line: str, commands) -> list[str]:
    """Every word that can stand where the last word of `line` is (the cursor's end), starting with it."""
    words = line.split()
    word = "" if not words or line[-1].isspace() else words.pop()
    args = _arguments(words)
    if args is None:  # still on the program's own words
        return []
    quote = word[:1] if word[:1] in "'\"" else ""
    typed = word[len(quote):]
    if args == ["help"]:
        return sorted(c for c in commands if c.startswith(typed))
    if args and args[0] in commands or args[:1] == ["help"]:
        return []  # a command's own arguments: file names, as the shell gives them
    args = [w.strip("'\"") for w in args]
    if "=" in typed:
        found = _values(typed, args)
    else:
        found = [*_keys(args), *FLAGS, *([] if args else [*commands, "help"])]
    return sorted(quote + f for f in found if f.startswith(typed))


def _arguments(words: list[str]) -> list[str] | None:
    """The words after `experimentstash` or `python -m experimentstash`; None before them."""
    if not words:
        return None
    if os.path.basename(words[0]).startswith("python"):
        return words[3:] if words[1:3] == ["-m", "experimentstash"] else None
    return words[1:]


def _keys(args: list[str]) -> list[str]:
    """The launcher's keys, each as `key=` (those given already left out)."""
    given = {override_key(w) + "=" for w in args}
    keys = ["tool=", "experiment=", "pipeline=", *(f"stash.{name}=" for name in stash_options.NAMES), *HYDRA_KEYS,
            *(f"hydra.launcher.{name}=" for name in _launcher_options(args))]
    return [k for k in keys if k not in given]


def _values(typed: str, args: list[str]) -> list[str]:
    key, _, value = typed.partition("=")
    head = value[:value.rfind(",") + 1]  # a list (a,b,c): the last item is completed
    if key in ("tool", "experiment"):
        names = _names(key, args)
        return [f"{key}={head}{name}" for name in [*names, "glob("]] if names is not None else []
    if key in ("pipeline", "stash.profile"):
        values = _names(key, args) or []
    elif key == "hydra/launcher":
        values = [backends.launcher_of(name) for name in backends.names()]
    elif key.startswith("stash.") and key[len("stash."):] in stash_options.NAMES:
        usage = next(f.metadata["usage"] for f in fields(stash_options.StashOptions) if f"stash.{f.name}" == key)
        values = usage.split("|") if "|" in usage else []
    elif key.startswith("hydra.launcher."):
        values = _launcher_options(args).get(key[len("hydra.launcher."):], [])
    else:
        values = []  # a tool's key: its values are the tool's
    return [f"{key}={head}{v}" for v in values]


def _names(key: str, args: list[str]) -> list[str] | None:
    """Registered tools, pipelines or profiles, or the experiment ids (and snapshots) of the tools named on the line;
    None outside a stash or with a meta.yaml that cannot be read."""
    from ..pipelines import pipeline_names
    from ..registry import Stash

    try:
        stash = Stash.load(find_root())
        if key == "tool":
            return sorted(stash.tools)
        if key == "pipeline":
            return pipeline_names(stash.root)
        if key == "stash.profile":
            return sorted(stash.profiles)
        named = [w.partition("=")[2] for w in args if override_key(w) == "tool"]
        tools = [t for t in named[-1].split(",") if t in stash.tools] if named else list(stash.tools)
        return sorted({i for t in tools for i in [*stash.experiments(t), *stash.snapshots(t)]})
    except StashError:
        return None


def _launcher_options(args: list[str]) -> dict[str, list[str]]:
    """The hydra.launcher.* options of the backend the line chooses (hydra/launcher=, else the default), each with
    its values when they are few (true, false)."""
    chosen = [w.partition("=")[2] for w in args if w.startswith("hydra/launcher=")]
    backend = backends.for_launcher(chosen[-1] if chosen else None)
    if backend is None:
        return {}
    try:
        options = backends.options_class(backend)
    except StashError:  # another package's backend that cannot be loaded
        return {}
    hints = typing.get_type_hints(options)
    return {f.name: ["true", "false"] if bool in (hints[f.name], *typing.get_args(hints[f.name])) else []
            for f in fields(options)}

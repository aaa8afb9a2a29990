"""The command line: a known subcommand word (or help) runs its module of commands/, anything else is a Hydra
command line for the launcher (launch/). The one place where errors become exit codes: a StashError is one
message and 2, Interrupted is 128 + its signal, and otherwise the runs' own exit code.

Each command is a module of commands/ with `add_arguments(parser)` and `run(args, root) -> exit code`, imported
only when it runs (Hydra, GitPython and submitit load slowly). A module with RUNS_TOOLS = True starts tools: it
runs under the keeper (launch/supervise.py), like a Hydra launch; one with NEEDS_STASH = False runs anywhere (root
None).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import shlex
import sys

from . import Escape, Interrupted, StashError, find_root
from .output import say
from .overrides import is_override

# name -> (module, one line of help)
COMMANDS = {
    "init": ("init", "make a new stash: a git repository with configs/meta.yaml and a .gitignore"),
    "list": ("listing", "the registered tools, their pins and experiments, and what a tool still needs to run"),
    "runs": ("runs", "past runs from the run.json files under outputs/ and multirun/"),
    "status": ("status", "the state of every job of a sweep, from its run.json files and its backend"),
    "rerun": ("rerun", "re-launch the jobs of a sweep that did not succeed"),
    "reproduce": ("reproduce", "run a past run again exactly as recorded (tool commit, changes, config)"),
    "snapshot": ("snapshot", "freeze an experiment's fully resolved config under configs/<tool>/snapshots/"),
    "add-tool": ("addtool", "add a tool as a git submodule under tools/<name> and register it"),
    "check": ("check", "compose an experiment in the tool's environment without running it"),
    "compare": ("compare", "runs side by side: the overrides that vary and the result values, or mean ± std over a key"),
    "diff": ("diff", "what differs between two runs: commits, experiment, config, overrides, env, results"),
    "report": ("report", "one self-contained HTML file with a sweep's table and plots"),
}

USAGE = """\
usage: experimentstash [-m] tool=<tool> experiment=<id> [tool overrides] [stash.*=...] [hydra.*=...]
       experimentstash [-m] pipeline=<name> [<stage>.key=value] [tool overrides] [stash.*=...]
       experimentstash <command> [options]        (experimentstash <command> --help for its details)

Run the experiments of a stash: one run, or with -m (--multirun) a sweep over every combination, the way
Hydra expands it (experiment=a,b  'seed=range(3)'  'experiment=glob(figure1/*)').
Every override other than tool, experiment, pipeline, stash.* and hydra.* goes to the tool as typed; with a
pipeline (configs/pipelines/<name>.yaml), one whose first key is a stage's name goes to that stage only.

  experimentstash tool=demo experiment=pca n_components=3
  experimentstash -m tool=demo experiment=pca,random_projection 'seed=range(3)'
  experimentstash -m hydra/launcher=stash_slurm tool=demo 'experiment=glob(*)'

launcher options:
{options}
{backends}
commands:
{commands}

Hydra's own flags (--cfg, --info, --multirun, ...) apply to the launcher's config; --hydra-help lists them.
"""


def help_text() -> str:
    from dataclasses import MISSING, fields

    from . import backends

    lines = []
    for name in backends.names():
        launcher = backends.launcher_of(name)
        try:
            options_class = backends.options_class(name)
        except StashError as err:  # another package's backend that cannot be loaded: named, with why
            lines.append(f"  hydra/launcher={launcher} ({name}): {err}")
            continue
        options = []
        for f in fields(options_class):
            default = f.default if f.default is not MISSING else f.default_factory()
            options.append(f"{f.name}={'null' if default is None else default}")
        lines.append(f"  hydra/launcher={launcher} ({name}): hydra.launcher." + ", ".join(options))
    commands = "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())
    from . import stash_options  # here: it imports the stash's registry, which a command such as `runs` never needs

    return USAGE.format(options="\n".join(stash_options.help_lines()), backends="\n".join(lines), commands=commands)


def unknown_command(word: str, rest: list[str]) -> str:
    """The message for a first word that is neither a command nor an override: the closest command, and the
    Hydra form of a run (with the rest of the line when that is all overrides)."""
    close = difflib.get_close_matches(word, [*COMMANDS, "help"], n=1, cutoff=0.5)
    guess = f" (did you mean {close[0]}?)" if close else ""
    overrides = rest and all(is_override(w) or w.startswith("-") for w in rest)
    run = shlex.join(["experimentstash", *rest]) if overrides else "experimentstash tool=<tool> experiment=<id>"
    return (f"Unknown command '{word}'{guess}. The commands: {', '.join(COMMANDS)}; a run is {run} "
            "(experimentstash --help).")


def _command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command only: its module alone is imported."""
    module, text = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"experimentstash {name}", description=text[0].upper() + text[1:] + ".")
    parser.set_defaults(module=module)
    importlib.import_module(f"experimentstash.commands.{module}").add_arguments(parser)
    return parser


HELP = {"help", "-h", "--help"}
# launcher words a single run needs no Hydra app for (launcher options are checked and resolved before)
DIRECT = ("stash.", "hydra.launcher.", "hydra/launcher", "hydra/sweeper")


def main(argv: list[str]) -> int:
    """Run the command line; its exit code. Every error a user can cause ends here as one message."""
    try:
        return _dispatch(argv)
    except Escape as escaped:  # through Hydra's call stack
        return exit_code(escaped.error)
    except (StashError, Interrupted) as err:
        return exit_code(err)


def exit_code(err: Exception) -> int:
    if isinstance(err, Interrupted):
        return 128 + err.signum
    if isinstance(err, StashError):
        say(f"error: {err}")
        return 2
    raise err


def _dispatch(argv: list[str]) -> int:
    if not argv:
        return run_command(["list"])
    for flag in ("-sc", "--shell-completion"):  # answered from the stash, before Hydra (launch/completion.py)
        if flag in argv:
            from .launch.completion import shell_completion

            at = argv.index(flag) + 1
            return shell_completion(argv[at] if at < len(argv) else None, COMMANDS)
    if argv[0] in COMMANDS or argv[0] == "help":
        return run_command(argv)
    if HELP & set(argv):
        print(help_text(), end="")
        return 0
    if not argv[0].startswith("-") and not is_override(argv[0]):
        raise StashError(unknown_command(argv[0], argv[1:]))
    return launch(argv)


def launch(argv: list[str]) -> int:
    """A Hydra command line: one run, or a sweep with -m."""
    from .launch.argv import (NO_RUN_FLAGS, check_command_line, check_launcher_options, chosen,
                              route_tool_overrides, split_argv, with_profile_launcher)
    from . import backends
    from .launch.invocation import current
    from .overrides import override_key
    from .registry import Stash

    words = split_argv(argv)
    check_command_line(*words)
    hydra_words, tool_words = route_tool_overrides(*words)
    current.root = find_root()
    stash = Stash.load(current.root)
    hydra_words = with_profile_launcher(hydra_words, stash)
    current.launcher_options = check_launcher_options(hydra_words, stash)
    current.backend = backends.for_launcher(chosen(hydra_words, "launcher"))
    current.argv = list(argv)
    current.tool_overrides = tool_words
    if {"-m", "--multirun"} & set(hydra_words) and not NO_RUN_FLAGS & set(argv) and current.launcher_options is None:
        say(f"warning: hydra/launcher={chosen(hydra_words, 'launcher')} runs every job as a single run under "
            "outputs/: no sweep.json, no table at the end, no rerun, status or report of the sweep. The default "
            "launcher (hydra/launcher=stash) gives them all.")
    if not NO_RUN_FLAGS & set(argv):
        from .launch.supervise import keep

        keep()
    if all(override_key(w) in ("tool", "experiment", "pipeline") or override_key(w).startswith(DIRECT) for w in hydra_words):
        from .launch.single import run_direct  # one run: Hydra's app would only parse what is parsed already

        return run_direct(hydra_words)
    from .launch.app import hydra_app

    sys.argv = [sys.argv[0], *hydra_words]
    hydra_app()
    return current.exit_code


def run_command(argv: list[str]) -> int:
    if argv[0] == "help":
        if len(argv) > 1 and argv[1] in COMMANDS:
            _command_parser(argv[1]).print_help()
        else:
            print(help_text(), end="")
        return 0
    parser = _command_parser(argv[0])
    try:  # options and positional words in any order (snapshot demo pca --tag t --commit n_components=3); after
        # `--` every word is positional (add-tool -- -x url), which parse_intermixed_args does not honour
        args = parser.parse_args(argv[1:]) if "--" in argv else parser.parse_intermixed_args(argv[1:])
    except TypeError:  # a command that takes the rest of the line as it is (check)
        args = parser.parse_args(argv[1:])
    module = importlib.import_module(f"experimentstash.commands.{args.module}")
    root = find_root() if getattr(module, "NEEDS_STASH", True) else None
    if getattr(module, "RUNS_TOOLS", False):
        from .launch.supervise import keep

        keep()
    return module.run(args, root)

"""The subcommands (everything that is not a Hydra command line), listed once, and the help.

Each command is a module with `add_arguments(parser)` and `run(args, root) -> exit code`, imported only when
it runs (Hydra, GitPython and submitit load slowly). A module with RUNS_TOOLS = True starts tools: it runs
under the keeper (procs.keep), like a Hydra launch.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import shlex

from . import StashError, stash_options
from .invocation import fail, is_override
from .registry import find_root

# name -> (module, one line of help)
COMMANDS = {
    "list": ("listing", "the registered tools, their pins and experiments"),
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
       experimentstash <command> [options]        (experimentstash <command> --help for its details)

Run the experiments of a stash: one run, or with -m (--multirun) a sweep over every combination, the way
Hydra expands it (experiment=a,b  'seed=range(3)'  'experiment=glob(figure1/*)').
Every override other than tool, experiment, stash.* and hydra.* goes to the tool as typed.

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
    for name, (launcher, _) in backends.BACKENDS.items():
        options = []
        for f in fields(backends.options_class(name)):
            default = f.default if f.default is not MISSING else f.default_factory()
            options.append(f"{f.name}={'null' if default is None else default}")
        lines.append(f"  hydra/launcher={launcher} ({name}): hydra.launcher." + ", ".join(options))
    commands = "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())
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
    importlib.import_module(f"experimentstash.{module}").add_arguments(parser)
    return parser


def main(argv: list[str]) -> int:
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
    module = importlib.import_module(f"experimentstash.{args.module}")
    try:
        root = find_root()
        if getattr(module, "RUNS_TOOLS", False):
            from .procs import keep

            keep()
        return module.run(args, root)
    except StashError as err:
        fail(err)

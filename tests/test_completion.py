"""Shell completion: the answers to a TAB as the shell asks for them (COMP_LINE and COMP_POINT, `-sc query=bash`), and
bash, zsh and fish themselves completing lines on a terminal with the script `-sc install=<shell>` prints (a shell
that is not installed is skipped, except with EXPERIMENTSTASH_REQUIRE_SHELLS=1, as in CI)."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import experiment, new_stash


@pytest.fixture(scope="module")
def two_tools(tmp_path_factory):
    """The test stash with a second tool `gx` (the same checkout, experiments of its own) and a snapshot of fx."""
    stash = new_stash(tmp_path_factory.mktemp("completion"))
    meta = stash.root / "configs/meta.yaml"
    meta.write_text(meta.read_text() + "  gx:\n    path: tools/fx\n    entrypoint: tool.py\n")
    stash.write("configs/gx/experiment/only_gx.yaml", experiment())
    stash.write("configs/gx/experiment/sub/deeper/g2.yaml", experiment())
    stash.write("configs/fx/snapshots/v1/a.yaml", "value: 1\n")
    stash.write("configs/pipelines/chain.yaml", "stages:\n  first: {tool: fx, experiment: a}\n")
    meta.write_text(meta.read_text() + "profiles:\n  short: {max_parallel: 2}\n  long: {backend: slurm, timeout_min: 600}\n")
    stash.commit("a second tool, a pipeline and profiles")
    return stash


def complete(stash, line: str, cwd: Path | None = None) -> list[str]:
    out = stash.run("-sc", "query=bash", cwd=cwd, env={"COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout.splitlines()


FX = ["a", "b", "c", "crash", "fig1/x", "fig1/y", "glob(", "slow", "snapshots/v1/a"]


@pytest.mark.parametrize("line,expected", [
    # experiment= offers the ids of the tool on the line only: nested ones, snapshots, glob(
    ("experimentstash tool=fx experiment=", [f"experiment={i}" + ("" if i == "glob(" else " ") for i in FX]),
    ("experimentstash tool=gx experiment=", ["experiment=glob(", "experiment=only_gx ", "experiment=sub/deeper/g2 "]),
    ("experimentstash -m tool=fx experiment=fig1/", ["experiment=fig1/x ", "experiment=fig1/y "]),
    ("experimentstash -m tool=fx experiment=a,fig1/", ["experiment=a,fig1/x ", "experiment=a,fig1/y "]),
    ("experimentstash experiment=only", ["experiment=only_gx "]),  # no tool named: every tool's
    ("python -m experimentstash tool=", ["tool=fx ", "tool=glob(", "tool=gx "]),
    ("/usr/bin/python3 -m experimentstash tool=gx 'experiment=su", ["'experiment=sub/deeper/g2 "]),
    # pipelines and profiles of the stash
    ("experimentstash -m pipeline=", ["pipeline=chain "]),
    ("experimentstash -m stash.profile=", ["stash.profile=long ", "stash.profile=short "]),
    # launcher options with their allowed values
    ("experimentstash stash.pin=", ["stash.pin=off ", "stash.pin=strict ", "stash.pin=warn "]),
    ("experimentstash stash.reuse=", ["stash.reuse=false ", "stash.reuse=true "]),
    ("experimentstash stash.tracker=", ["stash.tracker=mlflow ", "stash.tracker=none ", "stash.tracker=wandb "]),
    ("experimentstash stash.r", ["stash.reuse="]),
    ("experimentstash -m hydra/launcher=", ["hydra/launcher=stash ", "hydra/launcher=stash_slurm "]),
    ("experimentstash -m hydra.launcher.", ["hydra.launcher.fail_fast=", "hydra.launcher.gpus=",
                                           "hydra.launcher.gpus_per_job=", "hydra.launcher.max_parallel=",
                                           "hydra.launcher.timeout="]),
    ("experimentstash -m hydra.launcher.fail_fast=", ["hydra.launcher.fail_fast=false ",
                                                      "hydra.launcher.fail_fast=true "]),
    ("experimentstash -m hydra/launcher=stash_slurm hydra.launcher.w", ["hydra.launcher.wait="]),
    ("experimentstash -m hydra/launcher=stash_slurm hydra.launcher.wait=f", ["hydra.launcher.wait=false "]),
    ("experimentstash tool=fx t", []),  # tool= is given already
    ("experimentstash tool=fx seed=", []),  # a tool's key: its values are the tool's
    ("experimentstash --m", ["--multirun "]),
    # the first word: the commands too; a command's arguments are left to the shell (file names)
    ("experimentstash re", ["report ", "reproduce ", "rerun "]),
    ("experimentstash in", ["init "]),
    ("experimentstash runs ", []),
    ("experimentstash help re", ["report ", "reproduce ", "rerun "]),
    ("experimentstash help runs ", []),
    ("python -m experimentstas", []),  # still the program's words
])
def test_completion_answers(two_tools, line, expected):
    assert complete(two_tools, line) == expected


def test_the_first_word_offers_every_command_and_the_launchers_keys(two_tools):
    from experimentstash.cli import COMMANDS

    words = complete(two_tools, "experimentstash ")
    assert {f"{name} " for name in COMMANDS} <= set(words)
    assert {"tool=", "experiment=", "stash.pin=", "hydra/launcher=", "hydra.launcher.max_parallel=", "-m "} <= \
        set(words)
    assert not [w for w in words if "_target_" in w]


def test_outside_a_stash_the_commands_are_offered_and_no_tools(two_tools, tmp_path):
    assert complete(two_tools, "experimentstash in", cwd=tmp_path) == ["init "]
    assert complete(two_tools, "experimentstash tool=", cwd=tmp_path) == []


def test_a_shell_completion_word_that_is_none_is_refused(two_tools):
    out = two_tools.run("-sc", "query=tcsh")
    assert out.returncode == 2
    assert out.stderr.startswith("error: -sc query=tcsh: give install=<shell>, uninstall=<shell> or query=<shell>")


# each shell: how it starts without the user's settings, what it runs first, and how the script is loaded
SHELLS = {
    "bash": (["bash", "--norc", "--noprofile", "-i"], "true", 'eval "$(experimentstash -sc install=bash)"'),
    "zsh": (["zsh", "-f", "-i"], "bindkey -e; autoload -U compinit && compinit -u",
            'eval "$(experimentstash -sc install=zsh)"'),
    "fish": (["fish", "--no-config", "-i"], "true", "experimentstash -sc install=fish | source"),
}


class Terminal:
    """An interactive shell on a pseudo-terminal, in the stash, with the script of `-sc install=<shell>` loaded."""

    def __init__(self, shell: str, stash, bin_dir: Path):
        argv, setup, install = SHELLS[shell]
        env = {**os.environ, "PYTHONPATH": stash.pythonpath, "PATH": f"{bin_dir}:{os.environ['PATH']}",
               "PS1": "$ ", "TERM": "dumb", "INPUTRC": "/dev/null", "HOME": str(bin_dir)}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(stash.root)
            os.execvpe(argv[0], argv, env)
        self.type(f"{setup}; {install}; echo READY\n")
        self.read_until(re.compile(r"\nREADY"))

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def read_until(self, pattern: re.Pattern, timeout: float = 60) -> str:
        seen, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.2)[0]:
                seen += os.read(self.fd, 4096)
                found = pattern.search(seen.decode(errors="replace"))
                if found:
                    return found.group(1) if pattern.groups else found.group(0)
        raise AssertionError(f"the shell never printed {pattern.pattern!r}; it printed {seen!r}")

    def completed(self, keys: str) -> str:
        """The line the shell makes of `keys` (TABs completing it), printed back by echo (Ctrl-A goes to its start),
        with a mark after it that shows a space the shell added at its end."""
        self.type(keys + "@\x01echo LINE: \n")
        return self.read_until(re.compile(r"\nLINE: ([^\r\n]*)@\r?\n"))

    def close(self) -> None:
        os.close(self.fd)
        os.waitpid(self.pid, 0)


@pytest.fixture(params=list(SHELLS))
def terminal(request, two_tools, tmp_path):
    if shutil.which(request.param) is None and not os.environ.get("EXPERIMENTSTASH_REQUIRE_SHELLS"):
        pytest.skip(f"{request.param} is not installed here (apt-get install {request.param})")
    script = tmp_path / "experimentstash"  # the console script, as pip installs it
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m experimentstash \"$@\"\n")
    script.chmod(0o755)
    shell = Terminal(request.param, two_tools, tmp_path)
    yield shell
    shell.close()


def test_the_shell_completes_the_console_script_and_python_dash_m(terminal):
    assert terminal.completed("experimentstash tool=f\t") == "experimentstash tool=fx "
    assert terminal.completed("experimentstash tool=gx exp\tsu\t") == \
        "experimentstash tool=gx experiment=sub/deeper/g2 "
    assert terminal.completed("python -m experimentstash -m tool=fx experiment=fig1/y stash.pin=st\t") == \
        "python -m experimentstash -m tool=fx experiment=fig1/y stash.pin=strict "
    assert terminal.completed("python -m experimentstash ini\t") == "python -m experimentstash init "

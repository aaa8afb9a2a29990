"""`status --watch SWEEP_DIR`: a running sweep followed until it ends, each failure shown with its log as it
happens; Ctrl-C ends the watch quietly, never the sweep. (On Slurm, the same loop follows sacct: test_slurm_limits.)"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys

from conftest import experiment
from experimentstash.testing import sweep_dir, wait_for


def started_sweep(stash, *words):
    """A local sweep running in the background, once its sweep.json can be read."""
    proc = stash.popen("-m", "tool=fx", *words)

    def readable():
        try:
            return json.loads((sweep_dir(stash) / "sweep.json").read_text())["jobs"]
        except (OSError, ValueError, AssertionError):
            return None

    wait_for(readable, what="sweep.json")
    return proc


def read_until(proc, *patterns: str) -> str:
    """The output of `proc` up to the line where every pattern has matched a line (it fails when the output ends
    first)."""
    text = ""
    while not all(re.search(pattern, text, re.MULTILINE) for pattern in patterns):
        line = proc.stdout.readline()
        assert line, f"{patterns} not all in: {text}"
        text += line
    return text


def test_watch_follows_a_sweep_to_its_end_and_shows_each_failure(stash):
    stash.write("configs/fx/experiment/long.yaml", experiment("sleep: 60\n"))
    sweep = started_sweep(stash, "experiment=crash,long", "stash.grace=1")
    watcher = stash.popen("status", "--watch", str(sweep_dir(stash)))
    read_until(watcher, r"^job 1 running: fx long",  # running jobs as they start
                      r"^job 0 failed, exit code 3: fx crash", r"^    boom: the fixture tool was asked to crash")
    sweep.send_signal(signal.SIGINT)  # the sweep ends: so does the watch
    sweep.communicate(timeout=120)
    rest, stderr = watcher.communicate(timeout=120)
    assert watcher.returncode == 0 and "Traceback" not in stderr, stderr
    assert "sweep multirun/" in rest  # the end table, after the failure was shown
    (counts,) = [line for line in rest.splitlines() if line.startswith("2 jobs: ")]
    assert "1 failed" in counts and "1 interrupted" in counts


def test_ctrl_c_ends_the_watch_quietly_and_not_the_sweep(stash):
    stash.write("configs/fx/experiment/long.yaml", experiment("sleep: 60\n"))
    sweep = started_sweep(stash, "experiment=long", "stash.grace=1")
    watcher = stash.popen("status", "--watch", str(sweep_dir(stash)))
    assert watcher.stdout.readline().startswith("job 0 running: fx long")  # the watch is under way
    watcher.send_signal(signal.SIGINT)
    stdout, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 130 and stderr == "", stdout + stderr
    assert sweep.poll() is None  # the sweep goes on
    sweep.send_signal(signal.SIGINT)
    sweep.communicate(timeout=60)


def test_on_a_terminal_the_view_is_live_with_each_running_jobs_elapsed_time(stash):
    stash.write("configs/fx/experiment/long.yaml", experiment("sleep: 60\n"))
    sweep = started_sweep(stash, "experiment=long", "stash.grace=1")
    command = shlex.join([sys.executable, "-m", "experimentstash", "status", "--watch", str(sweep_dir(stash))])
    terminal = subprocess.Popen(["script", "-qec", command, "/dev/null"], cwd=stash.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": stash.pythonpath, "COLUMNS": "120"})
    seen = read_until(terminal, r"0\s+fx\s+long\s+\d+s")  # the running job and its elapsed time, live
    assert "elapsed" in seen and "job 0 running" not in seen  # a live table, not the plain lines
    sweep.send_signal(signal.SIGINT)
    sweep.communicate(timeout=120)
    rest, _ = terminal.communicate(timeout=120)
    assert terminal.returncode == 0, rest
    assert "1 jobs: 1 interrupted" in rest

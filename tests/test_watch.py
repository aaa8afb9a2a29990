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


def test_watch_follows_a_sweep_to_its_end_and_shows_each_failure(stash):
    stash.write("configs/fx/experiment/later.yaml", experiment("sleep: 6\ncrash: true\n"))
    proc = started_sweep(stash, "experiment=crash,later,a", "hydra.launcher.max_parallel=2")
    out = stash.run("status", "--watch", str(sweep_dir(stash)), timeout=300)
    assert proc.wait(timeout=120) == 1
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    text = out.stdout
    assert "job 0 failed, exit code 3: fx crash" in text and "job 1 failed, exit code 3: fx later" in text
    assert text.count("boom: the fixture tool was asked to crash") >= 2  # each failure's log
    assert "job 1 running: fx later" in text  # running jobs as they start
    assert text.index("job 1 failed") < text.index("sweep multirun/")  # shown as it happened, before the end table
    assert text.rstrip().splitlines()[-4].startswith("3 jobs: 2 failed, 1 succeeded.")


def test_ctrl_c_ends_the_watch_quietly_and_not_the_sweep(stash):
    stash.write("configs/fx/experiment/long.yaml", experiment("sleep: 60\n"))
    sweep = started_sweep(stash, "experiment=long", "stash.grace=1")
    watcher = stash.popen("status", "--watch", str(sweep_dir(stash)))
    assert watcher.stdout.readline().startswith("job 0 running: fx long")  # the watch is under way
    watcher.send_signal(signal.SIGINT)
    stdout, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 130 and stderr == "", stderr
    assert sweep.poll() is None  # the sweep goes on
    sweep.send_signal(signal.SIGINT)
    sweep.communicate(timeout=60)


def test_on_a_terminal_the_view_is_live_with_each_running_jobs_elapsed_time(stash):
    stash.write("configs/fx/experiment/later.yaml", experiment("sleep: 6\ncrash: true\n"))
    proc = started_sweep(stash, "experiment=later")
    command = shlex.join([sys.executable, "-m", "experimentstash", "status", "--watch", str(sweep_dir(stash))])
    out = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=stash.root, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": stash.pythonpath, "COLUMNS": "120"})
    assert proc.wait(timeout=120) == 1
    assert out.returncode == 0, out.stdout
    assert "elapsed" in out.stdout and re.search(r"0\s+fx\s+later\s+\d+s", out.stdout)  # the running job, live
    assert "job 0 failed, exit code 3" in out.stdout and "boom: the fixture tool was asked to crash" in out.stdout

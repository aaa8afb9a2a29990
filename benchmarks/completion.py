"""How long one TAB takes: `python -m experimentstash -sc query=bash` on this repository's stash (the demo stash),
interpreter start included, for a few command lines, against `python -c pass` (target: under 0.3 s).

    python benchmarks/completion.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 0.3
LINES = [
    "experimentstash ",
    "experimentstash tool=demo experiment=",
    "experimentstash stash.pin=",
    "python -m experimentstash -m hydra/launcher=stash_slurm hydra.launcher.",
]


def timed(argv: list[str], env: dict, repeat: int) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system) of `repeat` runs: on a loaded machine the CPU time says more."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def show(label: str, walls: list[float], cpus: list[float]) -> None:
    print(f"{label:<75} wall median {statistics.median(walls):.3f} s (min {min(walls):.3f}), "
          f"CPU median {statistics.median(cpus):.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="completion-pycache-")
    # bytecode as on a user's machine (written once, outside the checkout), whatever this shell says
    base = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": cache}
    for name in ("EXPERIMENTSTASH_ROOT", "PYTHONDONTWRITEBYTECODE"):
        base.pop(name, None)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    show("python -c pass", *timed([sys.executable, "-c", "pass"], base, args.repeat))
    worst = 0.0
    for line in LINES:
        env = {**base, "COMP_LINE": line, "COMP_POINT": str(len(line))}
        timed([sys.executable, "-m", "experimentstash", "-sc", "query=bash"], env, 1)  # writes the bytecode
        walls, cpus = timed([sys.executable, "-m", "experimentstash", "-sc", "query=bash"], env, args.repeat)
        worst = max(worst, statistics.median(walls))
        show(repr(line), walls, cpus)
    shutil.rmtree(cache)
    print(f"slowest median {worst:.3f} s, target {TARGET_S} s: {'met' if worst <= TARGET_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What measuring each run's resources costs the launcher: its own CPU time with the sampler on and off.

16 processes that sleep 5 s each run at once, started as the launcher starts its tools (a session of their own,
one thread per run waiting with os.wait4); with measurement on, each is also watched by the resources sampler
(one thread, one pass over /proc per second for all of them) and finished with its rusage. The figure is this
process's own CPU time (time.process_time: the sampler thread included, the sleepers not), per job-second and
as a share of one core over the wall time. Rounds alternate off and on; medians are reported.
Target: on - off <= 1% of one core.

    python benchmarks/resources_overhead.py              # 16 jobs of 5 s, 3 rounds
    python benchmarks/resources_overhead.py -n 32 --seconds 10 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PYTHON, REPO, median  # noqa: E402

sys.path.insert(0, str(REPO))
from experimentstash.launch import resources  # noqa: E402


def one_round(jobs: int, seconds: float, measure: bool) -> tuple[float, float, list[dict]]:
    """(this process's CPU seconds, wall seconds, the runs' records) for `jobs` sleepers run at once."""
    records: list[dict] = []

    def run(num: int) -> None:
        proc = subprocess.Popen([PYTHON, "-c", f"import time; time.sleep({seconds})"], start_new_session=True)
        if measure:
            resources.watch(str(num), proc.pid, None)
        _, _, rusage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        if measure:
            records.append(resources.finish(str(num), rusage))

    cpu, wall = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=run, args=(num,)) for num in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.process_time() - cpu, time.monotonic() - wall, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=16, help="jobs at once (default 16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each job's length (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating (default 3)")
    args = parser.parse_args()

    processes = sum(name.isdigit() for name in os.listdir("/proc"))
    read = "all of them: running as root" if os.geteuid() == 0 else "those of this user"
    print(f"{args.n} jobs of {args.seconds:g} s at once, {args.rounds} rounds each; "
          f"{processes} processes on this machine before they start (each tick reads {read})")
    figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    records: list[dict] = []
    for _ in range(args.rounds):
        for measure in (False, True):
            cpu, wall, got = one_round(args.n, args.seconds, measure)
            figures[measure].append((cpu, wall))
            records += got
    job_seconds = args.n * args.seconds
    share = {}
    for measure, label in ((False, "off"), (True, "on ")):
        cpu = median(c for c, _ in figures[measure])
        wall = median(w for _, w in figures[measure])
        share[measure] = cpu / wall
        print(f"measurement {label}: launcher CPU {cpu * 1000:7.1f} ms over {wall:.2f} s wall = "
              f"{cpu / job_seconds * 1000:.3f} ms per job-second, {share[measure] * 100:.3f}% of one core")
    difference = (share[True] - share[False]) * 100
    samples = median(r["samples"] for r in records)
    print(f"difference: {difference:.3f}% of one core (target <= 1%: {'met' if difference <= 1 else 'NOT met'}); "
          f"{samples:g} samples per run")


if __name__ == "__main__":
    main()

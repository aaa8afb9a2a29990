"""Resumable sweeps: a sweep of N no-op jobs that runs, then the same sweep again with every job reused.

Measured in one invocation, on a throw-away stash with a no-op script tool (`env: current`):
  (a) `-m tool=noop experiment=noop 'seed=range(N)' stash.reuse=true hydra.launcher.max_parallel=2`: every job runs
      (no earlier run);
  (b) the same command again: every job is reused (each earlier run checked: its signature, fingerprint and
      files), no tool process starts;
  (c) in-process: fingerprinting the N planned jobs (Sweep.inspect, which includes one git status per sweep)
      against planning them alone (Sweep.plan), per job.
Targets: (b) <= 2 s; fingerprints <= 1 ms per job.

    python benchmarks/reuse_sweep.py            # N=1000
    python benchmarks/reuse_sweep.py -n 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PLAIN_NOOP_TOOL, REPO, launcher_argv, make_stash, run, temp_dir  # noqa: E402


def fingerprint_cost(root: Path, n: int) -> tuple[float, float]:
    """(seconds to plan N jobs, seconds to inspect + fingerprint them), in this process."""
    sys.path.insert(0, str(REPO))
    os.chdir(root)
    from experimentstash.launch.invocation import current
    from experimentstash.registry import Stash
    from experimentstash.launch.plan import base_config
    from experimentstash.launch.sweep import Sweep

    current.root = root
    stash = Stash.load(root)
    sweep = Sweep(stash, root / "multirun" / "bench", "local", _local_options(), [], [], base_config())
    numbered = [(i, ["tool=noop", "experiment=noop", f"seed={i}"]) for i in range(n)]
    start = time.perf_counter()
    planned = sweep.plan(numbered)
    planned_at = time.perf_counter()
    sweep.inspect(planned)
    return planned_at - start, time.perf_counter() - planned_at


def _local_options():
    from experimentstash import backends

    return backends.resolve_options("local", {}, set(), {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="jobs (default 1000)")
    args = parser.parse_args()
    with temp_dir("es-bench-reuse-") as tmp:
        root = make_stash(Path(tmp), {"noop": {"files": {"tool.py": PLAIN_NOOP_TOOL}, "entrypoint": "tool.py"}})
        words = ["-m", "tool=noop", "experiment=noop", f"seed=range({args.n})", "stash.reuse=true",
                 "hydra.launcher.max_parallel=2"]
        first = run(launcher_argv(*words), cwd=root, log=Path(tmp) / "first.log")
        second = run(launcher_argv(*words), cwd=root, log=Path(tmp) / "second.log")
        folders = sorted((root / "multirun").iterdir())
        statuses = [{j["status"] for j in json.loads((f / "sweep.json").read_text())["jobs"]} for f in folders]
        plan_s, inspect_s = fingerprint_cost(root, args.n)
        print(f"sweep of {args.n} no-op jobs, max_parallel=2 ({os.cpu_count()} CPUs)")
        print(f"  (a) every job runs           {first:7.2f} s   statuses {sorted(statuses[0])}")
        print(f"  (b) again, every job reused  {second:7.2f} s   statuses {sorted(statuses[1])}")
        print(f"  ratio (b)/(a)                {second / first:7.3f}")
        print(f"  (c) plan {args.n} jobs {plan_s * 1000:8.1f} ms; inspect + fingerprint them {inspect_s * 1000:8.1f} ms "
              f"= {inspect_s * 1000 / args.n:.3f} ms per job")
        print(f"target (b) <= 2 s: {'met' if second <= 2 else 'missed'}; "
              f"fingerprints <= 1 ms per job: {'met' if inspect_s / args.n <= 0.001 else 'missed'}")


if __name__ == "__main__":
    main()

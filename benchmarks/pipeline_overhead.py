"""Pipeline overhead: N two-stage chains of a no-op tool vs the same 2N jobs as one flat sweep.

The tool is a plain Python script that ignores its arguments and exits at once (`env: current`). Measured:
  - flat: `python -m experimentstash -m tool=noop experiment=noop 'seed=range(2N)' hydra.launcher.max_parallel=2`;
  - pipeline: `python -m experimentstash -m pipeline=two 'seed=range(N)' hydra.launcher.max_parallel=2`, where the
    stage `second` needs `first` and is given its run dir;
  - from the pipeline's records: the time from a chain's first stage ending to its second stage starting.
Targets: (pipeline wall - flat wall) / 2N <= 10 ms per stage job; a chain's next stage starts within 1 s of its
upstream succeeding (every chain).

    python benchmarks/pipeline_overhead.py            # N=1000 chains (2,000 jobs each way)
    python benchmarks/pipeline_overhead.py --quick    # N=100
    python benchmarks/pipeline_overhead.py -n 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PLAIN_NOOP_TOOL, TWO_STAGE_PIPELINE, git, launcher_argv, make_stash, run, temp_dir  # noqa: E402
from stashkit import write  # noqa: E402


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="chains (default 1000: 2,000 stage jobs)")
    parser.add_argument("--quick", action="store_true", help="100 chains")
    args = parser.parse_args()
    n = 100 if args.quick else args.n
    print(f"{n} two-stage chains vs {2 * n} flat jobs; load average {os.getloadavg()[0]:.2f} at the start")

    with temp_dir("es-bench-pipeline-") as tmp:
        root = make_stash(Path(tmp), {"noop": {"files": {"tool.py": PLAIN_NOOP_TOOL}, "entrypoint": "tool.py"}})
        write(root / "configs" / "pipelines" / "two.yaml", TWO_STAGE_PIPELINE)
        git(root, "add", "-A")
        git(root, "commit", "-qm", "a two-stage pipeline")
        flat = run(launcher_argv("-m", "tool=noop", "experiment=noop", f"seed=range({2 * n})",
                                 "hydra.launcher.max_parallel=2", f"hydra.sweep.dir={root}/multirun/flat"),
                   cwd=root, log=Path(tmp) / "flat.log")
        piped = run(launcher_argv("-m", "pipeline=two", f"seed=range({n})", "hydra.launcher.max_parallel=2",
                                  f"hydra.sweep.dir={root}/multirun/pipeline"), cwd=root, log=Path(tmp) / "pipe.log")
        jobs = json.loads((root / "multirun" / "pipeline" / "sweep.json").read_text())["jobs"]
        records = {j["num"]: json.loads((root / j["run_dir"] / "run.json").read_text()) for j in jobs}
        gaps = [moment(records[j["num"]]["started_at"]) - moment(records[j["needs"][0]]["ended_at"])
                for j in jobs if j["stage"] == "second"]

    extra_ms = (piped - flat) / (2 * n) * 1000
    print(f"{f'flat sweep of {2 * n} jobs:':32}{flat:8.1f} s   ({flat / (2 * n) * 1000:.1f} ms a job)")
    print(f"{f'pipeline of {n} chains:':32}{piped:8.1f} s   ({piped / (2 * n) * 1000:.1f} ms a stage job)")
    print(f"{'extra per stage job:':32}{extra_ms:8.1f} ms  (target <= 10 ms: {'met' if extra_ms <= 10 else 'NOT met'})")
    print(f"upstream end -> next stage start: median {statistics.median(gaps):.3f} s, max {max(gaps):.3f} s "
          f"(target <= 1 s: {'met' if max(gaps) <= 1 else 'NOT met'})")


if __name__ == "__main__":
    main()

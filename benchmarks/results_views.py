"""How long `compare` takes over 10,000 run records (target: under 2 s) and `report` over a 1,000-job sweep
(target: under 5 s, a file under 10 MB), each against a baseline that reads the same records.

Generates the records in a temporary stash (the run dirs of benchmarks/runs_listing.py for `compare`; a sweep dir
with sweep.json and 1,000 job run dirs for `report`), every run with a history of --steps steps (a history file
of two keys, summarized in its run.json) and its fingerprint parts, then times the commands end to end
(interpreter start included), median of --repeat runs.

    python benchmarks/results_views.py [--runs 10000] [--jobs 1000] [--steps 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from runs_listing import history, make_stash, timed
from stashkit import PYTHON, median


def cpu_timed(argv: list[str], root: Path, repeat: int):
    """timed(), and the CPU time (user + system) of each run: on a machine shared with other work the wall time
    grows with the load, the CPU time much less."""
    cpu = []

    def one():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        walls, out = timed(argv, root, 1)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return walls[0], out

    runs = [one() for _ in range(repeat)]
    return [wall for wall, _ in runs], cpu, runs[-1][1]

COMPARE_TARGET_S = 2.0
REPORT_TARGET_S = 5.0
REPORT_TARGET_MB = 10.0


def make_sweep(root: Path, jobs: int, steps: int) -> Path:
    """A finished sweep of `jobs` jobs: experiment x lr x depth x seed, every 20th job failed with a stderr; each
    with a history of `steps` steps."""
    sweep = root / "multirun" / "2025-02-01_10-00-00_bench1"
    experiments, lrs, depths = ["pca", "umap"], ["0.001", "0.01", "0.1", "0.3", "1.0"], list(range(1, 11))
    entries = []
    for num in range(jobs):
        experiment = experiments[num % 2]
        lr, depth, seed = lrs[num // 2 % 5], depths[num // 10 % 10], num // 100
        overrides = [f"lr={lr}", f"depth={depth}", f"seed={seed}"]
        failed = num % 20 == 19
        name = f"{num}_demo_{experiment}"
        folder = sweep / name
        (folder / ".hydra").mkdir(parents=True)
        (folder / "stderr.log").write_text("Traceback (most recent call last):\nValueError: diverged\n" if failed else "")
        (folder / "stdout.log").write_text("done\n")
        status = "failed" if failed else "succeeded"
        score = 1.0 - abs(float(lr) - 0.1) + depth / 100 + (seed % 3) / 50
        record = {
            "schema": 2, "id": f"bench1_{num}", "status": status, "exit_code": 1 if failed else 0, "tool": "demo",
            "experiment": experiment, "experiment_file": f"configs/demo/experiment/{experiment}.yaml",
            "overrides": overrides, "tool_commit": "ab" * 20, "tool_pinned_commit": "ab" * 20,
            "tool_kind": "submodule", "tool_dirty": False, "stash_commit": "cd" * 20, "stash_dirty": False,
            "env": {"kind": "current", "python": "3.11.7", "executable": "/usr/bin/python3", "lock_file": None,
                    "lock_sha256": None, "variables": {}},
            "run_dir": f"multirun/{sweep.name}/{name}", "started_at": "2025-02-01T10:00:00.000Z",
            "ended_at": "2025-02-01T10:00:30.000Z", "duration_s": 30.0 + num % 7,
            "result": None if failed else {"score": score, "loss": 1 / (1 + score), "time": {"fit": 3.5 + seed}},
            "sweep": {"id": sweep.name, "num": num},
            "fingerprint_parts": {
                "tool_commit": "ab" * 20, "tool_changes": None, "configs": "tree " + "ef" * 20,
                "experiment_files": {f"configs/demo/experiment/{experiment}.yaml": "12" * 32},
                "experiment": experiment, "overrides": overrides,
                "registration": {"entrypoint": ["demo.py"], "overrides": [], "env": "current", "search_packages": [],
                                 "workdir": "tool"},
                "python": "3.11.7", "lock_sha256": None},
        }
        if steps:
            text, record["history"] = history(steps, 1 + float(lr) + depth / 10)
            (folder / "history.jsonl").write_text(text)
        (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")
        entries.append({"num": num, "tool": "demo", "experiment": experiment, "overrides": overrides,
                        "run_dir": record["run_dir"], "status": status, "exit_code": record["exit_code"],
                        "duration_s": record["duration_s"], "launch_overrides": ["tool=demo",
                                                                                 f"experiment={experiment}", *overrides]})
    head = {"schema": 2, "id": sweep.name, "created_at": "2025-02-01T10:00:00.000Z", "backend": "local",
            "command_line": ["-m", "tool=demo", "experiment=pca,umap", "lr=0.001,0.01,0.1,0.3,1.0",
                             "depth=range(1,11)", "seed=range(10)"],
            "launcher": {}, "given": [], "backend_state": {}, "reruns": [], "jobs": entries}
    (sweep / "sweep.json").write_text(json.dumps(head) + "\n")
    return sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=1_000)
    parser.add_argument("--steps", type=int, default=100, help="steps of each run's history (0: none)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = [PYTHON, "-m", "experimentstash"]
    with tempfile.TemporaryDirectory(prefix="results-bench-") as tmp:
        root = Path(tmp) / "runs"
        start = time.perf_counter()
        make_stash(root, args.runs, args.steps)
        print(f"generated {args.runs} run dirs in {time.perf_counter() - start:.1f}s")
        runs_json, runs_cpu, _ = cpu_timed([*base, "runs", "--json"], root, args.repeat)
        compare_json, json_cpu, out = cpu_timed([*base, "compare", "--format", "json"], root, args.repeat)
        assert len(json.loads(out.stdout)) == args.runs
        compare_table, table_cpu, out = cpu_timed([*base, "compare"], root, args.repeat)
        assert out.stdout.rstrip().endswith(f"{args.runs} runs.")
        compare_over, over_cpu, out = cpu_timed([*base, "compare", "--over", "seed", "--sort=-explained_variance"],
                                                root, args.repeat)

        sweep_root = Path(tmp) / "sweep"
        make_stash(sweep_root, 0)
        sweep = make_sweep(sweep_root, args.jobs, args.steps)
        output = Path(tmp) / "report.html"
        sweep_compare, sweep_cpu, out = cpu_timed([*base, "compare", str(sweep), "--format", "json"], sweep_root,
                                                  args.repeat)
        assert len(json.loads(out.stdout)) == args.jobs
        report_plain, plain_cpu, _ = cpu_timed([*base, "report", str(sweep), "-o", str(output)], sweep_root,
                                               args.repeat)
        size_plain = os.path.getsize(output)
        report_over, report_over_cpu, _ = cpu_timed([*base, "report", str(sweep), "--over", "seed", "-o",
                                                     str(output)], sweep_root, args.repeat)
        size_over = os.path.getsize(output)

    med = median
    print(f"\n{args.runs} run records under outputs/ and multirun/, each with a {args.steps}-step history "
          f"(median of {args.repeat}; wall, and CPU time):")
    print(f"  runs --json (baseline: reads the same records)  {med(runs_json):.3f} s  cpu {med(runs_cpu):.3f} s")
    print(f"  compare --format json                           {med(compare_json):.3f} s  cpu {med(json_cpu):.3f} s "
          f"({med(compare_json) / med(runs_json):.2f}x the baseline)")
    print(f"  compare (table)                                 {med(compare_table):.3f} s  cpu {med(table_cpu):.3f} s")
    print(f"  compare --over seed --sort=-explained_variance  {med(compare_over):.3f} s  cpu {med(over_cpu):.3f} s")
    worst = max(med(compare_json), med(compare_table), med(compare_over))
    print(f"  target: compare under {COMPARE_TARGET_S:.1f} s -> slowest form {worst:.3f} s, "
          f"{worst / COMPARE_TARGET_S:.2f} of the budget ({'met' if worst < COMPARE_TARGET_S else 'MISSED'})")
    print(f"  load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"\na sweep of {args.jobs} jobs (2 experiments x 5 lr x 10 depth x 10 seeds, 3 metrics, a {args.steps}-step "
          "history of 2 keys each):")
    print(f"  compare SWEEP --format json (baseline: reads the same sweep)  {med(sweep_compare):.3f} s  "
          f"cpu {med(sweep_cpu):.3f} s")
    print(f"  report SWEEP                 {med(report_plain):.3f} s  cpu {med(plain_cpu):.3f} s "
          f"({med(report_plain) / med(sweep_compare):.2f}x the baseline), {size_plain / 1e6:.1f} MB")
    print(f"  report SWEEP --over seed     {med(report_over):.3f} s  cpu {med(report_over_cpu):.3f} s "
          f"({med(report_over) / med(sweep_compare):.2f}x the baseline), {size_over / 1e6:.1f} MB")
    worst_s, worst_mb = max(med(report_plain), med(report_over)), max(size_plain, size_over) / 1e6
    met = worst_s < REPORT_TARGET_S and worst_mb < REPORT_TARGET_MB
    print(f"  target: report under {REPORT_TARGET_S:.0f} s and {REPORT_TARGET_MB:.0f} MB -> {worst_s:.3f} s, "
          f"{worst_mb:.1f} MB ({'met' if met else 'MISSED'})")


if __name__ == "__main__":
    main()

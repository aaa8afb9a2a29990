"""Parallel efficiency: 64 jobs that each sleep 1 s with max_parallel=16, against the ideal 4 s.

The tool is a plain Python script that sleeps for its `sleep=SECONDS` argument (`env: current`). Measured in
one invocation:
  - the stash launcher: `python -m experimentstash -m tool=sleep experiment=sleep sleep=1 'seed=range(64)'
    hydra.launcher.max_parallel=16` (wall time of the whole command, and the span from the first job's start
    to the last job's end taken from the run.json records);
  - hydra-joblib-launcher on the same meta app (`hydra/launcher=joblib hydra.launcher.n_jobs=16`), first with
    the stash sweeper, then with Hydra's basic sweeper (sweeping a launcher option, since the basic sweeper
    never sees tool keys); whatever happens is reported as is;
  - `xargs -P 16` running the same 64 tool commands directly, the baseline when joblib cannot run the app.
Target: the launcher's wall time within 1.1x of the ideal (jobs x sleep / max_parallel) and of xargs. xargs and the
launcher run --repeat times each, in turn (a change in a shared machine's load meets both alike): the medians, and
the median of the pairs' ratios, are shown.

    python benchmarks/parallel_efficiency.py             # 64 jobs x 1 s, 16 at once
    python benchmarks/parallel_efficiency.py --quick     # 32 jobs x 1 s, 16 at once
    python benchmarks/parallel_efficiency.py -n 128 --parallel 16 --sleep 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PYTHON, SLEEP_TOOL, env, launcher_argv, make_stash, median, run, temp_dir  # noqa: E402


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def attempt(words: list[str], cwd: Path, log: Path, timeout: float = 300) -> tuple[int, float, str]:
    """Run the launcher; returns (exit code, wall time, last meaningful lines of its output)."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.run(launcher_argv(*words), cwd=cwd, env=env(), stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout)
    wall = time.perf_counter() - start
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return proc.returncode, wall, "\n".join(lines[-4:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=64, help="jobs (default 64)")
    parser.add_argument("--parallel", type=int, default=16, help="max_parallel / n_jobs / xargs -P (default 16)")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each job sleeps (default 1)")
    parser.add_argument("--quick", action="store_true", help="32 jobs")
    parser.add_argument("--no-joblib", action="store_true", help="leave out the joblib launcher runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs of xargs and of the launcher, in turn")
    parser.add_argument("--no-keeper", action="store_true",
                        help="run the launcher without its keeper process (EXPERIMENTSTASH_NO_KEEPER=1)")
    args = parser.parse_args()
    if args.no_keeper:  # every launcher command gets this process's environment (stashkit.env)
        os.environ["EXPERIMENTSTASH_NO_KEEPER"] = "1"
    print(f"keeper {'off' if args.no_keeper else 'on'}, load average {os.getloadavg()[0]:.2f} at the start")
    n = 32 if args.quick else args.n
    par, sleep = args.parallel, args.sleep
    ideal = -(-n // par) * sleep

    with temp_dir("es-bench-parallel-") as tmp:
        tmp = Path(tmp)
        root = make_stash(tmp, {"sleep": {"files": {"sleep.py": SLEEP_TOOL}, "entrypoint": "sleep.py"}})
        tool_dir = root / "tools" / "sleep"
        run(launcher_argv("tool=sleep", "experiment=sleep", "sleep=0"), cwd=root, log=tmp / "warmup.log")

        # xargs -P: the same command lines the launcher runs (checked below against run.json)
        commands = [[f"{tool_dir / 'sleep.py'}", f"--config-dir={root / 'configs' / 'sleep'}",
                     "--config-name=experiment/sleep", f"sleep={sleep:g}", f"seed={i}",
                     f"hydra.run.dir={tmp / 'xargs-runs' / str(i)}"] for i in range(n)]
        listing = tmp / "xargs.list"
        listing.write_bytes(b"".join(w.encode() + b"\0" for c in commands for w in c))
        # in turn, so that a change in the machine's load meets both alike; the median of each, and of the ratios
        xargs_walls, launcher_walls = [], []
        for _ in range(args.repeat):
            xargs_walls.append(run(["xargs", "-0", "-n", str(len(commands[0])), "-P", str(par), "-a", str(listing),
                                    PYTHON], cwd=tool_dir))
            code, wall, tail = attempt(["-m", "tool=sleep", "experiment=sleep", f"sleep={sleep:g}",
                                        f"seed=range({n})", f"hydra.launcher.max_parallel={par}"],
                                       root, tmp / "launcher.log")
            if code != 0:
                raise SystemExit(f"the stash launcher failed (exit {code}):\n{tail}")
            launcher_walls.append(wall)
        ratios = [a / b for a, b in zip(launcher_walls, xargs_walls)]
        xargs_wall, launcher_wall = median(xargs_walls), median(launcher_walls)
        last = sorted((root / "multirun").iterdir())[-1]
        records = [json.loads(p.read_text()) for p in last.rglob("run.json")]
        starts = sorted(parse_time(r["started_at"]) for r in records)
        ends = sorted(parse_time(r["ended_at"]) for r in records)
        span = ends[-1] - starts[0]
        job0 = next(r for r in records if r["sweep"]["num"] == 0)
        same = job0["command"][1:-1] == commands[0][:-1]
        # the most jobs running at once, from the records
        events = sorted([(s, 1) for s in starts] + [(e, -1) for e in ends])
        running = peak = 0
        for _, step in events:
            running += step
            peak = max(peak, running)

        joblib_runs = []
        for label, words in () if args.no_joblib else (
            ("joblib launcher + stash sweeper",
             ["-m", "tool=sleep", "experiment=sleep", f"sleep={sleep:g}", f"seed=range({n})",
              "hydra/launcher=joblib", f"hydra.launcher.n_jobs={par}"]),
            ("joblib launcher + basic sweeper",
             ["-m", "tool=sleep", "experiment=sleep", f"sleep={sleep:g}", f"stash.grace=range(5,{5 + n})",
              "hydra/sweeper=basic", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={par}"]),
        ):
            before = len(list(root.rglob("run.json")))
            jcode, jwall, jtail = attempt(words, root, tmp / f"{label.split()[3]}.log")
            joblib_runs.append((label, words, jcode, jwall, jtail, len(list(root.rglob("run.json"))) - before))

        print(f"{n} jobs x sleep {sleep:g} s, {par} at once: ideal {ideal:.2f} s "
              f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs); medians of {args.repeat} runs of each, "
              f"in turn; load average {os.getloadavg()[0]:.2f} at the end")
        print(f"  stash launcher wall (whole command)     {launcher_wall:6.2f} s  = {launcher_wall / ideal:.2f}x ideal "
              f"(target <= 1.1x): {'met' if launcher_wall <= 1.1 * ideal else 'MISSED'}")
        print(f"  stash launcher, first start..last end   {span:6.2f} s  = {span / ideal:.2f}x ideal; "
              f"at most {peak} jobs running at once; {len(records)} run.json, "
              f"statuses {sorted({r['status'] for r in records})}")
        print(f"  xargs -P {par} wall, same commands{' ' if par < 10 else ''}       {xargs_wall:6.2f} s  = "
              f"{xargs_wall / ideal:.2f}x ideal   (command lines match the launcher's: {'yes' if same else 'NO'})")
        ratio = median(ratios)
        print(f"  stash launcher / xargs                  {ratio:6.2f}x   (target <= 1.1x): "
              f"{'met' if ratio <= 1.1 else 'MISSED'}; each pair: {', '.join(f'{r:.2f}' for r in ratios)}")
        for label, words, jcode, jwall, jtail, made in joblib_runs:
            verdict = "ran" if jcode == 0 else f"FAILED (exit {jcode})"
            print(f"  {label}: {verdict} after {jwall:.2f} s, {made} run.json written")
            print(f"    command: python -m experimentstash {' '.join(words)}")
            print("    last output: " + jtail.replace("\n", "\n                 "))


if __name__ == "__main__":
    main()

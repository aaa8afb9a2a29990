"""Sweep overhead: sweeps of N no-op jobs through the stash launcher vs `xargs -P 2` running the same commands.

The tool is a plain Python script that ignores its arguments and exits at once (`env: current`). Measured:
  - launcher: `python -m experimentstash -m tool=noop experiment=noop 'seed=range(N)' hydra.launcher.max_parallel=2`
    (wall time; CPU time of the launcher process itself; its peak RSS from /proc/<pid>/status VmHWM, and the
    `/usr/bin/time -v` maximum RSS, which is the largest of the launcher and its reaped children);
  - xargs: `xargs -0 -n 5 -P 2 -a <list> <python>` running the N command lines the launcher runs (same
    interpreter, script, arguments and cwd; checked against the launcher's run.json), in the caller's environment;
  - xargs with the environment variables the launcher sets for its tools (from its run.json) on a subset, to
    tell the tool's own slower start apart from the launcher's work;
  - context: Hydra's basic sweeper + basic launcher on the same meta app for a smaller count.
  - how many times sweep.json was written (it is replaced whole: a new inode each time, looked at every 20 ms).
Targets: launcher wall <= 1.5x xargs wall; (launcher wall - xargs wall) / N <= 3 ms at every N; peak RSS < 200 MB.

    python benchmarks/sweep_overhead.py              # N=300 and N=3000, basic launcher 30 jobs
    python benchmarks/sweep_overhead.py --no-keeper  # the same, the launcher without its keeper process
    python benchmarks/sweep_overhead.py --quick      # N=200, basic launcher 20 jobs, env subset 100
    python benchmarks/sweep_overhead.py -n 500 --basic-jobs 30 --env-jobs 100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PLAIN_NOOP_TOOL, PYTHON, env, launcher_argv, make_stash, run, temp_dir  # noqa: E402

TIME = "/usr/bin/time"


def hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """user + system CPU seconds of one process itself (children not included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def launcher_process(top: int, kept: bool = True) -> int | None:
    """The launcher below `top` (/usr/bin/time, then the keeper): the process running experimentstash whose
    parent, the keeper, runs it too (without the keeper: the one whose parent is `top`). None until it has
    started."""
    table = {}  # pid -> (parent pid, runs experimentstash)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parent = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
                table[int(name)] = (parent, b"experimentstash" in Path(f"/proc/{name}/cmdline").read_bytes())
            except (OSError, IndexError):
                continue
    for pid, (parent, ours) in table.items():
        if not kept and ours and parent == top:
            return pid
        if ours and table.get(parent, (0, False))[1] and top in (parent, table.get(parent, (0,))[0]):
            return pid
    return None


def sweep_json_inode(multirun: Path | None) -> int | None:
    """The inode of the sweep's sweep.json (a new one at each write: it is replaced whole), None before it exists."""
    for path in multirun.glob("*/sweep.json") if multirun is not None and multirun.is_dir() else []:
        try:
            return path.stat().st_ino
        except OSError:
            return None
    return None


def run_launcher(words: list[str], cwd: Path, log: Path, extra_env: dict | None = None,
                 multirun: Path | None = None) -> dict:
    """Run the launcher from this wrapper; returns wall time, peak RSS figures (kB) and how many times it wrote
    the sweep.json below `multirun`."""
    argv = launcher_argv(*words)
    time_out = log.with_suffix(".time")
    use_time = os.path.exists(TIME)
    if use_time:
        argv = [TIME, "-v", "-o", str(time_out), *argv]
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env(**(extra_env or {})), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        launcher_pid = proc.pid
        kept = not (extra_env or {}).get("EXPERIMENTSTASH_NO_KEEPER")
        for _ in range(400):  # below /usr/bin/time and the keeper: the launcher, the process that runs the sweep
            found = launcher_process(proc.pid, kept)
            if found is not None:
                launcher_pid = found
                break
            time.sleep(0.005)
        peak, cpu, writes, inode, polls = 0, 0.0, 0, None, 0
        while proc.poll() is None:
            now = sweep_json_inode(multirun)
            if now is not None and now != inode:
                writes, inode = writes + 1, now
            polls += 1
            if polls % 3 == 0:  # every 60 ms
                peak = max(peak, hwm_kb(launcher_pid) or 0)
                cpu = max(cpu, cpu_s(launcher_pid) or 0.0)
            time.sleep(0.02)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"launcher failed (exit {proc.returncode}): {' '.join(words)}\n{log.read_text()[-3000:]}")
    result = {"wall": wall, "hwm_kb": peak, "cpu": cpu, "time_max_rss_kb": None, "writes": writes}
    if use_time:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_out.read_text())
        result["time_max_rss_kb"] = int(match.group(1)) if match else None
    else:  # fall back: the maximum over this wrapper's children (the launcher and everything it reaped)
        import resource
        result["time_max_rss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


def run_xargs(commands: list[list[str]], cwd: Path, parallel: int, listing: Path, extra_env=None) -> float:
    """`xargs -0 -P <parallel> -n <words> -a <listing> <interpreter>`: xargs runs the interpreter itself."""
    width = {len(c) for c in commands}
    programs = {c[0] for c in commands}
    assert len(width) == 1 and len(programs) == 1, "xargs -n needs one program and one word count"
    listing.write_bytes(b"".join(w.encode() + b"\0" for c in commands for w in c[1:]))
    return run(["xargs", "-0", "-n", str(width.pop() - 1), "-P", str(parallel), "-a", str(listing),
                programs.pop()], cwd=cwd, extra_env=extra_env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, nargs="+", default=[300, 3000], help="jobs in each sweep (default 300 3000)")
    parser.add_argument("--parallel", type=int, default=2, help="max_parallel and xargs -P (default 2)")
    parser.add_argument("--basic-jobs", type=int, default=30, help="jobs for Hydra's basic launcher (0: skip)")
    parser.add_argument("--env-jobs", type=int, default=100, help="jobs for xargs with the launcher's tool env")
    parser.add_argument("--no-keeper", action="store_true",
                        help="run the launcher without its keeper process (EXPERIMENTSTASH_NO_KEEPER=1)")
    parser.add_argument("--quick", action="store_true", help="N=200, 20 basic-launcher jobs, 100 env jobs")
    args = parser.parse_args()
    if args.quick:
        args.n, args.basic_jobs, args.env_jobs = [200], 20, 100
    par = args.parallel
    keeper = {"EXPERIMENTSTASH_NO_KEEPER": "1"} if args.no_keeper else {}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, keeper {'off' if args.no_keeper else 'on'}, "
          f"load average {os.getloadavg()[0]:.2f} at the start")

    with temp_dir("es-bench-sweep-") as tmp:
        tmp = Path(tmp)
        root = make_stash(tmp, {"noop": {"files": {"noop.py": PLAIN_NOOP_TOOL}, "entrypoint": "noop.py"}})
        tool_dir = root / "tools" / "noop"

        def commands(count: int, folder: Path) -> list[list[str]]:
            return [[PYTHON, str(tool_dir / "noop.py"), f"--config-dir={root / 'configs' / 'noop'}",
                     "--config-name=experiment/noop", f"seed={i}", f"hydra.run.dir={folder / str(i)}"]
                    for i in range(count)]

        # warm-up: file cache and the launcher's imports
        run(launcher_argv("tool=noop", "experiment=noop"), cwd=root, log=tmp / "warmup.log")
        mb = lambda kb: f"{kb / 1024:.0f} MB" if kb else "n/a"  # noqa: E731

        for k, n in enumerate(args.n):
            shutil.rmtree(root / "multirun", ignore_errors=True)
            xargs_wall = run_xargs(commands(n, tmp / f"xargs-runs-{n}"), tool_dir, par, tmp / "xargs.list")
            launcher = run_launcher(["-m", "tool=noop", "experiment=noop", f"seed=range({n})",
                                     f"hydra.launcher.max_parallel={par}"], root, tmp / f"launcher-{n}.log",
                                    keeper, root / "multirun")
            # the launcher ran the same command lines (up to the run dir)
            records = [json.loads(p.read_text()) for p in (root / "multirun").rglob("run.json")]
            statuses = {r["status"] for r in records}
            job0 = next(r for r in records if r["sweep"]["num"] == 0)
            same = (job0["command"][:-1] == commands(1, tmp)[0][:-1]
                    and job0["command"][-1].startswith("hydra.run.dir="))
            inner = sorted(r["duration_s"] for r in records)
            per_job_ms = (launcher["wall"] - xargs_wall) / n * 1000
            ratio = launcher["wall"] / xargs_wall
            print(f"sweep of {n} no-op jobs, max_parallel={par}")
            print(f"  launcher ran the same command lines as xargs: {'yes' if same else 'NO'}; "
                  f"{len(records)} run.json, statuses {sorted(statuses)}")
            print(f"  xargs -P {par} wall                       {xargs_wall:8.2f} s  ({xargs_wall / n * 1000:.1f} ms/job)")
            print(f"  launcher wall                          {launcher['wall']:8.2f} s  "
                  f"({launcher['wall'] / n * 1000:.1f} ms/job)")
            print(f"  ratio launcher / xargs                 {ratio:8.2f}x   (target <= 1.5x): "
                  f"{'met' if ratio <= 1.5 else 'MISSED'}")
            print(f"  launcher overhead per job              {per_job_ms:8.1f} ms  (target <= 3 ms): "
                  f"{'met' if per_job_ms <= 3 else 'MISSED'}")
            print(f"  launcher's own CPU (user+sys, its process only) {launcher['cpu']:6.2f} s = "
                  f"{launcher['cpu'] / n * 1000:.1f} ms/job (sampled every 50 ms: a lower bound)")
            print(f"  sweep.json written {launcher['writes']} times in {launcher['wall']:.1f} s "
                  f"({launcher['writes'] / launcher['wall']:.1f} per second; seen every 20 ms)")
            print(f"  launcher peak RSS (VmHWM, own process) {mb(launcher['hwm_kb']):>8}   (target < 200 MB): "
                  f"{'met' if launcher['hwm_kb'] < 200 * 1024 else 'MISSED'}")
            print(f"  max RSS launcher + children ({'time -v' if os.path.exists(TIME) else 'RUSAGE_CHILDREN'})  "
                  f"{mb(launcher['time_max_rss_kb']):>8}")
            print(f"  job duration inside the launcher (run.json): median {inner[len(inner) // 2] * 1000:.0f} ms, "
                  f"max {inner[-1] * 1000:.0f} ms")
            if k == 0 and args.env_jobs:
                tool_env = job0["env"]["variables"]  # what the launcher sets for its tools
                env_wall = run_xargs(commands(args.env_jobs, tmp / "xargs-env-runs"), tool_dir, par,
                                     tmp / "xargs-env.list", tool_env)
                env_ms = env_wall / args.env_jobs * 1000
                print(f"  xargs -P {par} with the launcher's tool env ({args.env_jobs} jobs) {env_wall:6.2f} s "
                      f"({env_ms:.1f} ms/job); env: {tool_env}")
                explained = (env_ms - xargs_wall / n * 1000)
                print(f"    the tool's own slower start under that env: {explained:.1f} ms/job of the "
                      f"{per_job_ms:.1f} ms/job overhead; the launcher's own work: {per_job_ms - explained:.1f} ms/job")
        if args.basic_jobs:
            shutil.rmtree(root / "outputs", ignore_errors=True)
            # Hydra's basic sweeper never sees tool keys (seed=range(K) would reach the tool as one literal
            # override), so the sweep is over a launcher option that does not change the job: stash.grace
            words = ["-m", "tool=noop", "experiment=noop", f"stash.grace=range(5,{5 + args.basic_jobs})",
                     "hydra/launcher=basic", "hydra/sweeper=basic"]
            basic = run_launcher(words, root, tmp / "basic.log", keeper)
            basic_runs = len(list((root / "outputs").rglob("run.json")))
            k = args.basic_jobs
            per = basic["wall"] / k * 1000
            print(f"context: Hydra basic sweeper + basic launcher, {k} jobs ({basic_runs} runs recorded) "
                  f"{basic['wall']:6.2f} s = {per:.0f} ms/job (jobs one at a time)")
            print(f"  of which over the tool itself (run.json durations excluded): "
                  f"{(basic['wall'] - sum(json.loads(p.read_text())['duration_s'] for p in (root / 'outputs').rglob('run.json'))) / k * 1000:.0f} ms/job;"
                  f" peak RSS {mb(basic['hwm_kb'])}")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            print("note: PYTHONDONTWRITEBYTECODE is set in this environment, so no bytecode is ever written "
                  "to PYTHONPYCACHEPREFIX")


if __name__ == "__main__":
    main()

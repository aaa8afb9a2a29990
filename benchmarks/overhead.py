"""Single-run overhead: what `python -m experimentstash tool=X experiment=Y` adds to running the tool directly.

Measures, interleaved, N times each (median reported):
  (a)  the no-op Hydra tool run directly, as the launcher would run it (same interpreter, cwd = the tool
       folder, `--config-dir=... --config-name=experiment/noop hydra.run.dir=<tmp>`);
  (a') the same direct command with the environment variables the launcher sets for its tools (read from
       the run.json of a launcher run): shows how much of the overhead is the tool's own slower start;
  (b)  the same tool through `python -m experimentstash tool=noop experiment=noop`;
  (c)  a bare Hydra application (a trivial @hydra.main app, no config) starting and returning;
  (p)  `python -c pass`, the interpreter alone, for context.
Target: (b) - (a) <= (c), i.e. the launcher adds no more than one bare Hydra start-up (~0.3 s).

    python benchmarks/overhead.py            # N=10
    python benchmarks/overhead.py --quick    # N=3
    python benchmarks/overhead.py -n 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import HYDRA_NOOP_TOOL, PYTHON, launcher_argv, make_stash, median, run, temp_dir, write  # noqa: E402

BARE_APP = '''\
import hydra


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    return None


if __name__ == "__main__":
    main()
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 runs of each command")
    parser.add_argument("--no-keeper", action="store_true",
                        help="run the launcher without its keeper process (EXPERIMENTSTASH_NO_KEEPER=1)")
    args = parser.parse_args()
    if args.no_keeper:  # every launcher command gets this process's environment (stashkit.env)
        os.environ["EXPERIMENTSTASH_NO_KEEPER"] = "1"
    print(f"keeper {'off' if args.no_keeper else 'on'}, load average {os.getloadavg()[0]:.2f} at the start")
    n = 3 if args.quick else args.n

    with temp_dir("es-bench-overhead-") as tmp:
        tmp = Path(tmp)
        root = make_stash(tmp, {"noop": {"files": {"tool.py": HYDRA_NOOP_TOOL, "conf/config.yaml": "seed: 0\n"},
                                         "entrypoint": "tool.py"}})
        tool_dir = root / "tools" / "noop"
        bare = write(tmp / "bare" / "bare.py", BARE_APP)
        # the variables the launcher sets for its tools, as its run.json records them (filled after the warm-up)
        launcher_tool_env: dict[str, str] = {}

        def direct(i: int, extra=None, tag="a") -> float:
            return run([PYTHON, str(tool_dir / "tool.py"), f"--config-dir={root / 'configs' / 'noop'}",
                        "--config-name=experiment/noop", f"hydra.run.dir={tmp / 'direct' / f'{tag}{i}'}"],
                       cwd=tool_dir, extra_env=extra)

        commands = {
            "(p) python -c pass": lambda i: run([PYTHON, "-c", "pass"], cwd=tmp),
            "(c) bare Hydra app": lambda i: run([PYTHON, str(bare), f"hydra.run.dir={tmp / 'bare' / str(i)}"],
                                                cwd=tmp / "bare"),
            "(a) tool directly": lambda i: direct(i),
            "(a') tool directly, launcher's tool env": lambda i: direct(i, launcher_tool_env, "env"),
            "(b) through experimentstash": lambda i: run(
                launcher_argv("tool=noop", "experiment=noop"), cwd=root, log=tmp / f"launcher{i}.log"),
        }
        # one warm-up round (file cache, first bytecode writes), then interleaved timed rounds
        commands["(b) through experimentstash"](-1)
        warmup = next((root / "outputs").rglob("run.json"))
        launcher_tool_env.update(json.loads(warmup.read_text())["env"]["variables"])
        warmup.unlink()
        for fn in commands.values():
            fn(-1)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(n):
            for name, fn in commands.items():
                times[name].append(fn(i))
        inner = [json.loads(p.read_text())["duration_s"] for p in (root / "outputs").rglob("run.json")][-n:]

        med = {name: median(values) for name, values in times.items()}
        print(f"single-run overhead, median of {n} runs each (python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs)")
        for name, value in med.items():
            spread = f"min {min(times[name]):.3f}  max {max(times[name]):.3f}"
            print(f"  {name:<42} {value:7.3f} s   ({spread})")
        print(f"  {'tool run as seen inside (b) (run.json)':<42} {median(inner):7.3f} s")
        print(f"  launcher's tool env (run.json env.variables): {launcher_tool_env}")
        a, a_env, b, c = (med["(a) tool directly"], med["(a') tool directly, launcher's tool env"],
                          med["(b) through experimentstash"], med["(c) bare Hydra app"])
        added = b - a
        print(f"launcher adds (b)-(a)                       {added:7.3f} s")
        print(f"  of which the tool's slower start (a')-(a)  {a_env - a:7.3f} s")
        print(f"  of which the launcher's own work (b)-(a')  {b - a_env:7.3f} s")
        print(f"one bare Hydra start-up (c)                 {c:7.3f} s")
        print(f"ratio ((b)-(a)) / (c)                       {added / c:7.2f}x  (target <= 1.0x)")
        print(f"target met: {'yes' if added <= c else 'no'}")
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            print("note: PYTHONDONTWRITEBYTECODE is set in this environment, so no bytecode is ever written "
                  "to PYTHONPYCACHEPREFIX")


if __name__ == "__main__":
    main()

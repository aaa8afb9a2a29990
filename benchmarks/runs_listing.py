"""How long `experimentstash runs` takes to read 10,000 run records (target: under 2 s).

Generates N run dirs with a realistic run.json (and the files a run dir holds) in a temporary stash, then times
`python -m experimentstash runs --json` and the table form end to end (interpreter start included), and the
reading alone in this process.

    python benchmarks/runs_listing.py [--runs 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def history(steps: int, scale: float) -> tuple[str, dict]:
    """A history file of `steps` lines (step, loss, acc) and the summary run.json keeps of it."""
    losses = [scale / (1 + step) for step in range(steps)]
    text = "".join(json.dumps({"step": s, "loss": loss, "acc": 1 - loss / 2}) + "\n" for s, loss in enumerate(losses))
    summary = {"file": "history.jsonl", "steps": steps, "x": "step", "keys": {
        key: {"n": steps, "first": values[0], "last": values[-1], "min": min(values), "max": max(values)}
        for key, values in (("loss", losses), ("acc", [1 - v / 2 for v in losses]))}}
    return text, summary


def make_stash(root: Path, count: int, history_steps: int = 0) -> None:
    """`count` run dirs; with `history_steps`, each with a history file of that many steps and its summary, and
    the fingerprint parts a run records today."""
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "meta.yaml").write_text("tools:\n  demo:\n    path: tools/demo\n    entrypoint: demo.py\n")
    experiments = ["pca", "random_projection", "figure1/pca_noisy", "figure2/umap", "ablation/a", "ablation/b"]
    for i in range(count):
        experiment = experiments[i % len(experiments)]
        sweep = i % 4 == 0
        run_id = f"2025-01-{1 + i % 28:02d}_{i // 3600 % 24:02d}-{i // 60 % 60:02d}-{i % 60:02d}_{i:06x}"
        if sweep:
            run_dir = Path("multirun") / f"sweep{i // 40:04d}" / f"{i % 40}_demo_{experiment.replace('/', '-')}"
        else:
            run_dir = Path("outputs") / "demo" / experiment / run_id
        folder = root / run_dir
        (folder / ".hydra").mkdir(parents=True)
        for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
            (folder / ".hydra" / name).write_text("x: 1\n")
        (folder / "stdout.log").write_text("done\n")
        (folder / "stderr.log").write_text("")
        (folder / "metrics.json").write_text("{}")
        record = {
            "schema": 1, "id": run_id, "status": ["succeeded", "failed", "succeeded", "timeout"][i % 4],
            "exit_code": 0, "tool": "demo", "experiment": experiment,
            "experiment_file": f"configs/demo/experiment/{experiment}.yaml", "experiment_sha256": "ab" * 32,
            "overrides": [f"seed={i % 10}", "n_components=2"], "tool_commit": f"{i:040x}",
            "tool_pinned_commit": f"{i:040x}", "tool_kind": "submodule", "tool_dirty": i % 7 == 0,
            "tool_diff": "tool.diff" if i % 7 == 0 else None, "tool_untracked": [], "stash_commit": "cd" * 20,
            "stash_dirty": False,
            "env": {"kind": "current", "python": "3.11.7", "executable": "/usr/bin/python3", "lock_file": None,
                    "lock_sha256": None, "variables": {"PYTHONUNBUFFERED": "1"}},
            "command": ["/usr/bin/python3", "demo.py", f"--config-dir={root}/configs/demo",
                        f"--config-name=experiment/{experiment}", f"seed={i % 10}", f"hydra.run.dir={root / run_dir}"],
            "cwd": "tools/demo", "run_dir": run_dir.as_posix(), "host": "node01",
            "started_at": f"2025-01-{1 + i % 28:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
            "ended_at": f"2025-01-{1 + i % 28:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.900Z",
            "duration_s": 12.5 + i % 100, "logs": {"stdout": "stdout.log", "stderr": "stderr.log"},
            "result": {"explained_variance": 0.5 + (i % 50) / 100, "reconstruction_error": 1.0 / (1 + i % 9),
                       "roll_correlation": 0.9},
            "sweep": {"id": f"sweep{i // 40:04d}", "num": i % 40} if sweep else None,
        }
        if history_steps:
            text, record["history"] = history(history_steps, 1 + i % 9)
            (folder / "history.jsonl").write_text(text)
            record["fingerprint_parts"] = {
                "tool_commit": record["tool_commit"], "tool_changes": None, "configs": "tree " + "ef" * 20,
                "experiment_files": {record["experiment_file"]: "ab" * 32}, "experiment": experiment,
                "overrides": record["overrides"], "registration": {"entrypoint": ["demo.py"], "overrides": [],
                                                                    "env": "current", "search_packages": [],
                                                                    "workdir": "tool"},
                "python": "3.11.7", "lock_sha256": None}
        (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")


def timed(argv: list[str], root: Path, repeat: int) -> tuple[list[float], subprocess.CompletedProcess]:
    times, out = [], None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run(argv, cwd=root, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        if out.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{out.stderr}")
    return times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runs-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        make_stash(root, args.runs)
        print(f"generated {args.runs} run dirs in {time.perf_counter() - start:.1f}s ({root})")

        base = [sys.executable, "-m", "experimentstash"]
        startup, _ = timed([sys.executable, "-c", "pass"], root, args.repeat)
        json_times, out = timed([*base, "runs", "--json"], root, args.repeat)
        records = json.loads(out.stdout)
        assert len(records) == args.runs, f"expected {args.runs} records, got {len(records)}"
        filtered, out = timed([*base, "runs", "--json", "--tool", "demo", "--status", "failed", "--last", "20"],
                              root, args.repeat)
        assert len(json.loads(out.stdout)) == 20
        table, _ = timed([*base, "runs"], root, max(1, args.repeat // 2))

        sys.path.insert(0, str(REPO))
        from experimentstash.runs import find_runs

        reads = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            loaded = find_runs(root, read=True)
            reads.append(time.perf_counter() - start)
        assert len(loaded.runs) == args.runs and not loaded.bad

    med = statistics.median
    print(f"python startup alone (median of {args.repeat}):          {med(startup):.3f} s")
    print(f"experimentstash runs --json, {args.runs} records:         {med(json_times):.3f} s "
          f"(min {min(json_times):.3f}, max {max(json_times):.3f})")
    print(f"experimentstash runs --json with filters and --last 20: {med(filtered):.3f} s")
    print(f"experimentstash runs (table of every run):             {med(table):.3f} s")
    print(f"looking up and reading every record, in process:        {med(reads):.3f} s "
          f"({med(reads) / args.runs * 1e6:.0f} us per record)")
    ratio = med(json_times) / TARGET_S
    print(f"target: runs --json under {TARGET_S:.1f} s -> {ratio:.2f} of the budget "
          f"({'met' if med(json_times) < TARGET_S else 'MISSED'})")


if __name__ == "__main__":
    main()

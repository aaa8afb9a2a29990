"""The index of the records at a million runs: building it, warm queries, changes behind its back, its size.

Generates N realistic run dirs (run.json as a launcher writes it, signed; stdout.log, stderr.log): a fifth single
runs under outputs/<tool>/<experiment>/<id>, the rest sweeps of 4 to 1,000 jobs under multirun/<sweep>/<job>.
Then, in one invocation:
  - building the index from scratch (per record);
  - `experimentstash runs --last 20` (through the index), warm, end to end in the generated stash, without
    and with a tool/experiment/status filter, and `--status lost`;
  - reuse's lookup: the succeeded runs of 1,000 fingerprints, and of 1,000 (tool, experiment, overrides);
  - the first job of a 1,000-job sweep with `stash.reuse=true` (a launch of the noop tool in the generated stash):
    the time from the launch to the first job's start (its run.json's started_at);
  - seeing 1,000 records changed behind its back (rewritten by records.write_run, as a launcher or `status` does;
    in one sweep, and spread over 1,000 folders), 1,000 added, 1,000 removed (`rm -rf`);
  - the index's size on disk per run;
  - a `runs --json`-style read of 100,000 records (their run.json read, validated and printed);
  - reading every record without the index (records.read_run over the same folders), for comparison, on up to
    100,000 of them.
Needs about 13 KB of disk and 4 inodes per run (checked before generating). `--dir` keeps the generated stash
for another invocation; without it, it is removed at the end.

    python benchmarks/runs_index.py                    # 1,000,000 runs
    python benchmarks/runs_index.py --runs 200000      # and extrapolate
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PLAIN_NOOP_TOOL, PYTHON, REPO, env, launcher_argv, make_stash  # noqa: E402

sys.path.insert(0, str(REPO))

BYTES_PER_RUN = 13 * 1024  # run dir, run.json (a 4 KiB block), stdout.log, stderr.log (empty)
INODES_PER_RUN = 4
TOOLS = {"fx": ["a", "b", "fig1/x", "fig1/y", "ablation/lr", "ablation/depth"],
         "manylatents": ["pca", "umap", "figure1/pca_noisy", "figure2/umap", "phate", "tsne"],
         "demo": ["noop", "sleep", "crash", "large/x", "large/y", "large/z"]}
SWEEP_SIZES = (4, 16, 64, 256, 1000)
STATUSES = ["succeeded"] * 85 + ["failed"] * 8 + ["timeout"] * 2 + ["interrupted"] * 2 + ["cancelled"] + ["running"] * 2


def layout(count: int):
    """(index, run dir relative to the stash, tool, experiment, sweep id or None, job num) for each run: a fifth
    single runs, the rest sweeps of SWEEP_SIZES jobs in turn."""
    i = sweep_no = 0
    while i < count:
        size = SWEEP_SIZES[sweep_no % len(SWEEP_SIZES)]
        tool = list(TOOLS)[sweep_no % len(TOOLS)]
        sweep_id = f"2025-{1 + sweep_no // 2000 % 12:02d}-{1 + sweep_no // 80 % 28:02d}_{sweep_no // 4 % 24:02d}" \
                   f"-{sweep_no % 60:02d}-00_{sweep_no:06x}"
        for num in range(size):
            if i >= count:
                return
            if i % 5 == 0:  # a single run between the sweep's jobs
                experiment = TOOLS[tool][i // 5 % len(TOOLS[tool])]
                yield i, f"outputs/{tool}/{experiment}/{run_id(i)}", tool, experiment, None, None
                i += 1
                if i >= count:
                    return
            experiment = TOOLS[tool][num % len(TOOLS[tool])]
            yield i, f"multirun/{sweep_id}/{num}_{tool}_{experiment.replace('/', '-')}", tool, experiment, sweep_id, num
            i += 1
        sweep_no += 1


def run_id(i: int) -> str:
    return f"2025-{1 + i // 100000 % 12:02d}-{1 + i // 3600 % 28:02d}_{i // 60 % 24:02d}-{i % 60:02d}-00_{i:06x}"


def started(i: int) -> str:
    """Start times that grow with i (one a second from 2024-01-01)."""
    t = 1704067200 + i
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{i % 1000:03d}Z"


def fingerprint(i: int) -> str:
    """A sha256 in hex, as experimentstash records them (its first digits as spread as a real digest's)."""
    return hashlib.sha256(str(i).encode()).hexdigest()


def record(root: Path, i: int, rel: str, tool: str, experiment: str, sweep_id, num) -> dict:
    status = STATUSES[i * 7919 % len(STATUSES)]
    seed = i % 10
    overrides = [f"seed={seed}", f"lr={[0.1, 0.01, 0.001][i % 3]}"] + (["model.depth=4"] if i % 4 == 0 else [])
    commit = f"{i // 5000:040x}"
    return {
        "schema": 2, "id": f"{sweep_id}_{num}" if sweep_id else rel.rsplit("/", 1)[1], "status": status,
        "exit_code": None if status == "running" else 0 if status == "succeeded" else 1,
        "tool": tool, "experiment": experiment, "experiment_file": f"configs/{tool}/experiment/{experiment}.yaml",
        "experiment_sha256": f"{hash(experiment) & (1 << 64) - 1:064x}", "overrides": overrides,
        "tool_commit": commit, "tool_pinned_commit": commit, "tool_kind": "submodule", "tool_dirty": i % 97 == 0,
        "tool_diff": "tool.diff" if i % 97 == 0 else None, "tool_untracked": [], "stash_commit": f"{i // 3000:040x}",
        "stash_dirty": False,
        "env": {"kind": "current", "python": "3.11.7", "executable": "/opt/conda/envs/lab/bin/python",
                "lock_file": None, "lock_sha256": None, "variables": {"PYTHONUNBUFFERED": "1"}},
        "command": ["/opt/conda/envs/lab/bin/python", f"{root}/tools/{tool}/main.py", f"--config-dir={root}/configs/{tool}",
                    f"--config-name=experiment/{experiment}", *overrides, f"hydra.run.dir={root}/{rel}"],
        "cwd": f"tools/{tool}", "run_dir": rel, "host": f"node{i % 16:02d}",
        "started_at": started(i), "ended_at": None if status == "running" else started(i + 40),
        "duration_s": None if status == "running" else 40.0 + i % 100,
        "logs": {"stdout": "stdout.log", "stderr": "stderr.log"},
        "result": None if status != "succeeded" else
        {"explained_variance": 0.5 + i % 50 / 100, "reconstruction_error": 1.0 / (1 + i % 9), "epochs": 10 + i % 5},
        "sweep": {"id": sweep_id, "num": num} if sweep_id else None,
        "owner": {"pid": 100000 + i % 50000, "host": f"node{i % 16:02d}", "started": 1704067200.0 + i},
        "fingerprint": fingerprint(i if i % 10 else i - 1),  # every 10th repeats one
        "fingerprint_parts": {"tool_commit": commit, "tool_changes": None, "configs": f"tree {i // 5000:040x}",
                              "experiment_files": {f"configs/{tool}/experiment/{experiment}.yaml": "ab" * 32},
                              "experiment": experiment, "overrides": overrides,
                              "registration": {"entrypoint": ["main.py"], "overrides": [], "env": "current",
                                               "search_packages": [], "workdir": "tool"},
                              "python": "3.11.7", "lock_sha256": None},
        "tool_touched": [], "signature": f"{i * 40503:064x}",
    }


def write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def make_runs(root: Path, count: int) -> None:
    """The run dirs, in a stash whose one registered tool (noop) the reuse launch runs."""
    made = set()
    for i, rel, tool, experiment, sweep_id, num in layout(count):
        folder = root / rel
        parent = str(folder.parent)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        os.mkdir(folder)
        text = json.dumps(record(root, i, rel, tool, experiment, sweep_id, num), indent=2) + "\n"
        write_file(f"{folder}/run.json", text.encode())
        write_file(f"{folder}/stdout.log", b"epoch 1\nepoch 2\ndone\n")
        write_file(f"{folder}/stderr.log", b"")
        if i % 100000 == 0 and i:
            print(f"  ... {i} run dirs", flush=True)


# reuse's part of a launch: open the index, then each job's lookups (by fingerprint; by tool, experiment, overrides)
REUSE = """
import json, sys, time
from pathlib import Path
start = time.perf_counter()
from experimentstash.index import Index
root, jobs = Path(sys.argv[1]), json.load(open(sys.argv[2]))
index = Index(root)
opened = time.perf_counter()
found = sum((next(index.by_fingerprint(fp), None) is not None) + (next(index.earlier(*job), None) is not None)
            for fp, job in jobs)
print(json.dumps([opened - start, time.perf_counter() - opened, found]))
"""


def child(code: str, *args: str, capture: bool = False, cwd: Path | None = None) -> tuple[float, float, str, str]:
    """(wall seconds, CPU seconds, stdout if `capture`, stderr) of `python -c code args` with this checkout's code
    (`code` None: `python -m experimentstash args`)."""
    before = os.times()
    start = time.perf_counter()
    argv = [PYTHON, "-m", "experimentstash"] if code is None else [PYTHON, "-c", code]
    proc = subprocess.run([*argv, *args], env=env(), stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, cwd=cwd)
    wall = time.perf_counter() - start
    after = os.times()
    if proc.returncode != 0:
        sys.exit(f"failed:\n{proc.stderr}")
    cpu = after.children_user + after.children_system - before.children_user - before.children_system
    return wall, cpu, proc.stdout, proc.stderr


def runs(root: Path, repeat: int, *flags: str) -> tuple[float, float, str]:
    """Median wall and CPU time of `experimentstash runs FLAGS` in the stash over `repeat` runs, and the rows it
    listed."""
    done = [child(None, "runs", *flags, capture=True, cwd=root) for _ in range(repeat)]
    last = done[-1][2].strip().splitlines()[-1]
    return (statistics.median(r[0] for r in done), statistics.median(r[1] for r in done),
            last.split(" of ")[0] if " of " in last else "0")


def check_room(root: Path, count: int) -> None:
    st = os.statvfs(root.parent if not root.exists() else root)
    free, inodes = st.f_bavail * st.f_frsize, st.f_favail
    need, need_inodes = count * BYTES_PER_RUN * 1.2, count * INODES_PER_RUN * 1.2
    if free < need or inodes < need_inodes:
        sys.exit(f"{count} run dirs need about {need / 2 ** 30:.0f} GiB and {need_inodes / 1e6:.1f} M inodes; "
                 f"{free / 2 ** 30:.0f} GiB and {inodes / 1e6:.1f} M are free. Give --runs 200000 (and extrapolate).")


def rewrite(root: Path, folders: list[Path]) -> None:
    """What a launcher or `status` does to a record: read, change, records.write_run."""
    from experimentstash.records import Status, read_run, write_run

    for folder in folders:
        record = read_run(folder)
        record.status = Status.FAILED if record.status == Status.SUCCEEDED else Status.SUCCEEDED
        write_run(root, folder, record, signed=False)


def sweeps(root: Path) -> list[Path]:
    return sorted(p for p in (root / "multirun").iterdir() if p.is_dir())


def settle(root: Path) -> None:
    """Every change so far older than the index trusts times to be, and seen by a read."""
    from experimentstash.index import RACY_NS

    time.sleep(RACY_NS / 1e9 + 0.1)
    runs(root, 1, "--last", "20")


def first_job(root: Path, n: int) -> None:
    """A sweep of 1,000 noop jobs with stash.reuse=true in the stash: from the launch to its first job's start."""
    before = set((root / "multirun").iterdir())
    launched = time.time()
    proc = subprocess.run(launcher_argv("-m", "tool=noop", "experiment=noop", "seed=range(1000)", "stash.reuse=true"),
                          cwd=root, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"the reuse sweep failed:\n{proc.stderr[-3000:]}")
    (sweep,) = set((root / "multirun").iterdir()) - before
    starts = [json.loads(p.read_text())["started_at"] for p in sweep.glob("*/run.json")]
    first = min(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in starts)
    print(f"a 1000-job sweep with stash.reuse=true at {n} runs: its first job started {first - launched:.3f} s after "
          f"the launch ({len(starts)} jobs ran)   target <= 1 s")
    shutil.rmtree(sweep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, help="generate the stash here (kept), or use the one generated there")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each warm query (the median is shown)")
    args = parser.parse_args()
    from experimentstash.index import Index, index_path
    from experimentstash.records import read_run

    parent = args.dir or Path(tempfile.mkdtemp(prefix="es-bench-index-"))
    root = parent / "stash"
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    try:
        if not (root / "configs" / "meta.yaml").exists():
            check_room(parent, args.runs)
            start = time.perf_counter()
            parent.mkdir(parents=True, exist_ok=True)
            make_stash(parent, {"noop": {"files": {"main.py": PLAIN_NOOP_TOOL}, "entrypoint": "main.py"}})
            make_runs(root, args.runs)
            print(f"generated {args.runs} run dirs in {time.perf_counter() - start:.0f} s ({root})")
        shutil.rmtree(root / ".cache", ignore_errors=True)
        n = args.runs

        wall, cpu, _, _ = child("import sys; from pathlib import Path; from experimentstash.index import Index; "
                                "Index(Path(sys.argv[1]))", str(root))
        index = Index(root)
        count = index.count()
        assert count == n and not index.bad, (count, len(index.bad))
        pages = index.db.execute("PRAGMA page_count").fetchone()[0] * index.db.execute("PRAGMA page_size").fetchone()[0]
        on_disk = sum(os.path.getsize(p) for p in index_path(root).parent.glob(index_path(root).name + "*"))
        print(f"build from scratch: {wall:.1f} s = {wall / n * 1e6:.0f} us per record (CPU {cpu / n * 1e6:.0f} us)"
              f"   target <= 100 us")
        print(f"size: {pages / n:.0f} bytes per run (page_count x page_size; {on_disk / n:.0f} with the WAL file)"
              f"   target <= 1024")

        print(f"warm queries, end to end in a new interpreter (median of {args.repeat}):")
        startup = [child("pass") for _ in range(args.repeat)]
        print(f"  python -c pass                                     {statistics.median(r[0] for r in startup):6.3f} s"
              f" (CPU {statistics.median(r[1] for r in startup):.3f} s)")
        for flags in ["--last 20", "--tool fx --last 20", "--tool fx --experiment fig1/* --last 20",
                      "--status failed --last 20", "--tool demo --status timeout --last 20",
                      "--status lost --last 20", "--fingerprint 1234 --last 20"]:
            seconds, cpu, listed = runs(root, args.repeat, *flags.split())
            print(f"  runs {flags:45} {seconds:6.3f} s (CPU {cpu:.3f} s, {listed} rows)   target <= 0.3 s")

        rows = index.db.execute(  # in start order, as `runs` shows them
            "SELECT f.path || '/' || r.name, r.fingerprint, r.tool, r.experiment, r.overrides FROM runs r "
            "JOIN folders f ON f.id = r.parent ORDER BY ifnull(r.started_at, ''), ifnull(r.label, r.run_id)").fetchall()
        folders = [root / row[0] for row in rows]
        jobs = [(fp, [tool, experiment, json.loads(overrides)]) for _, fp, tool, experiment, overrides in
                rows[::max(1, n // 1000)][:1000]]
        jobs_file = root / ".cache" / "bench-jobs.json"
        jobs_file.write_text(json.dumps(jobs))
        wall, _, out, _ = child(REUSE, str(root), str(jobs_file), capture=True)
        opened, looked, hits = json.loads(out)
        print(f"reuse's lookups for a sweep of 1000 jobs: open {opened:.3f} s (imports included), "
              f"2000 lookups {looked:.3f} s ({hits} found); interpreter and all {wall:.3f} s   "
              f"(the first job's start needs these, within 1 s; measured here without the launcher)")

        first_job(root, n)

        warm, warm_cpu, _ = runs(root, args.repeat, "--last", "20")
        big = [s for s in sweeps(root) if len(os.listdir(s)) >= 1000]
        changes = [
            ("1000 records rewritten (write_run) in one sweep", lambda: rewrite(root, sorted(big[0].iterdir())[:1000])),
            ("1000 records rewritten (write_run), 1000 folders", lambda: rewrite(root, [
                sorted(p for p in s.iterdir() if p.is_dir())[0] for s in sweeps(root)[:1000]])),
            ("1000 run dirs added (a new sweep)", lambda: shutil.copytree(big[1], root / "multirun" / "added")),
            ("1000 run dirs removed (rm -rf a sweep)", lambda: shutil.rmtree(big[2])),
        ]
        print(f"changes behind its back, then runs --last 20 (warm: {warm:.3f} s, CPU {warm_cpu:.3f} s):")
        for what, change in changes:
            settle(root)  # the change before is not looked at again (as too recent to trust) in this one's figure
            change()
            seconds, cpu, _ = runs(root, 1, "--last", "20")
            print(f"  {what:50} {seconds:6.3f} s, {seconds - warm:6.3f} s more than warm (CPU {cpu - warm_cpu:.3f} s "
                  "more)   target <= 1 s")

        subset = min(100_000, n)
        folders = [f for f in folders if (f / "run.json").exists()]
        wall, cpu, out, _ = child(None, "runs", "--json", "--last", str(subset), capture=True, cwd=root)
        assert len(json.loads(out)) == subset
        print(f"runs --json --last {subset} (read, validated, printed): {wall:.2f} s "
              f"(CPU {cpu:.2f} s)   target <= 5 s")
        start = time.perf_counter()
        for folder in folders[-subset:]:
            read_run(folder)
        reading = time.perf_counter() - start
        print(f"for comparison, records.read_run of the same {subset} records in one process: {reading:.2f} s "
              f"({reading / subset * 1e6:.0f} us per record; every record without the index: x {n // subset})")
    finally:
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if not args.dir:
            shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Slurm submission: a sweep of N no-op jobs with `hydra.launcher.wait=false` against the running Slurm, against
plain `sbatch` submitting the same number of arrays in the same invocation.

Measured:
  - launcher: `python -m experimentstash -m hydra/launcher=stash_slurm tool=noop experiment=noop 'seed=range(N)'
    hydra.launcher.wait=false` (wall time, and the part before the first array reached sbatch: planning and
    pinning every job); the arrays it made (ceil(N / MaxArraySize)), from sweep.json;
  - baseline: `sbatch --array=0-K --wrap=true` once per array, the same number of arrays and tasks: what Slurm
    itself costs for those submissions.
Every job is submitted held (`--hold`), so that nothing runs and the machine (and anyone else's tests on the same
Slurm) is left alone; then all of them are cancelled (`scancel --name=...`) and the temporary stash is removed.

MaxArraySize is read from `scontrol show config`. The test Slurm of .ci/slurm-up has a tiny one (4), so N jobs
make N/4 arrays: the figure is then the cost per array (one sbatch each), not what a cluster with Slurm's default
(1001) would see, where 10,000 jobs are 10 arrays.

    python benchmarks/slurm_submit.py              # N=10000
    python benchmarks/slurm_submit.py -n 2000      # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PLAIN_NOOP_TOOL, env, launcher_argv, make_stash, temp_dir  # noqa: E402


def max_array_size() -> int:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(found.group(1)) if found else 1001


def cancel(name: str) -> float:
    """scancel every job with this name; returns the seconds until squeue lists none of them."""
    start = time.perf_counter()
    subprocess.run(["scancel", f"--name={name}"], check=True)
    while subprocess.run(["squeue", "-h", f"--name={name}", "-o", "%i"], capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)
    return time.perf_counter() - start


def launcher(root: Path, jobs: int, log: Path) -> dict:
    argv = launcher_argv("-m", "hydra/launcher=stash_slurm", "tool=noop", "experiment=noop", f"seed=range({jobs})",
                         "hydra.launcher.wait=false", "+hydra.launcher.additional_parameters.hold=true")
    with open(log, "wb") as out:
        start = time.time()
        proc = subprocess.run(argv, cwd=root, env=env(), stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT)
        wall = time.time() - start
    folders = list((root / "multirun").glob("*/sweep.json"))
    data = json.loads(folders[0].read_text()) if folders else None
    if proc.returncode != 0:
        if data:
            cancel(f"stash-{data['id']}")
        raise SystemExit(f"the launcher failed (exit code {proc.returncode}):\n{log.read_text()[-3000:]}")
    folder, name = folders[0].parent, f"stash-{data['id']}"
    first = min(p.stat().st_mtime for p in (folder / ".submitit").rglob("*") if p.is_file())
    return {"wall": wall, "planning": first - start, "arrays": len(data["backend_state"]["arrays"]),
            "submitted": sum(1 for j in data["jobs"] if j.get("slurm_job_id")), "name": name}


def plain_sbatch(arrays: int, jobs: int, size: int, work: Path) -> float:
    """The same arrays through plain sbatch, one call each, held."""
    name = f"stash-bench-{work.name}"
    start = time.perf_counter()
    for k in range(arrays):
        tasks = min(size, jobs - k * size)
        subprocess.run(["sbatch", "--hold", f"--job-name={name}", f"--array=0-{tasks - 1}", f"--output={work}/%A_%a.out",
                        "--wrap=true"], check=True, capture_output=True)
    wall = time.perf_counter() - start
    cancel(name)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--jobs", type=int, default=10000, help="jobs in the sweep (default 10000)")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        raise SystemExit("no Slurm here: start one with .ci/slurm-up")
    size = max_array_size()
    with temp_dir("slurm-submit-") as tmp:
        tmp = Path(tmp)
        root = make_stash(tmp, {"noop": {"files": {"noop.py": PLAIN_NOOP_TOOL}, "entrypoint": "noop.py"}})
        print(f"MaxArraySize {size}: {args.jobs} jobs -> {math.ceil(args.jobs / size)} arrays expected", flush=True)
        got = launcher(root, args.jobs, tmp / "launcher.log")
        cancelled = cancel(got["name"])
        baseline = plain_sbatch(got["arrays"], args.jobs, size, tmp)
    submitting = got["wall"] - got["planning"]
    print(f"launcher, wait=false: {got['wall']:.1f} s for {got['submitted']} jobs in {got['arrays']} arrays "
          f"({1000 * got['wall'] / args.jobs:.2f} ms per job)")
    print(f"  before the first array reached sbatch (planning, pins): {got['planning']:.1f} s")
    print(f"  submitting: {submitting:.1f} s ({1000 * submitting / got['arrays']:.0f} ms per array)")
    print(f"plain sbatch, the same {got['arrays']} arrays: {baseline:.1f} s ({1000 * baseline / got['arrays']:.0f} ms "
          f"per array)")
    print(f"ratio submitting / plain sbatch: {submitting / baseline:.2f}")
    print(f"scancel of the sweep's arrays, until squeue lists none: {cancelled:.1f} s")
    if size < 100:
        print(f"note: MaxArraySize {size} is tiny (the test Slurm's): one sbatch per {size} jobs, so these figures "
              "are the cost per array; with Slurm's default (1001) the same sweep is "
              f"{math.ceil(args.jobs / 1001)} arrays")


if __name__ == "__main__":
    main()

"""Slurm submission: a sweep of N no-op jobs with `hydra.launcher.wait=false` against the running Slurm, against
plain `sbatch` submitting the same number of arrays in the same invocation; with `--pipeline`, a detached pipeline of
N two-stage chains against the same 2N jobs submitted as flat arrays.

Measured:
  - launcher: `python -m experimentstash -m hydra/launcher=stash_slurm tool=noop experiment=noop 'seed=range(N)'
    hydra.launcher.wait=false` (wall time, and the part before the first array reached sbatch: planning and
    pinning every job); the arrays it made (ceil(N / MaxArraySize)), from sweep.json;
  - baseline: `sbatch --array=0-K --wrap=true` once per array, the same number of arrays and tasks: what Slurm
    itself costs for those submissions.
  - with `--pipeline` (N chains, submitted first): `python -m experimentstash -m hydra/launcher=stash_slurm
    pipeline=two 'seed=range(N)' hydra.launcher.wait=false`, where stage `second` needs `first` and is given its run
    dir (both the no-op tool), against the launcher's flat sweep of the same 2N jobs (`seed=range(2N)`, measured as
    above, with its plain sbatch baseline). Target: the pipeline's wall time <= 2x the flat sweep's. Each stage is
    ceil(N / MaxArraySize) arrays, the second's depending task by task on the first's (one `aftercorr` per array,
    not one sbatch per task): as many sbatch calls as the flat sweep.
Every job is submitted held (`--hold`), so that nothing runs and the machine (and anyone else's tests on the same
Slurm) is left alone; then all of them are cancelled (`scancel --name=...`) and the temporary stash is removed.
The load average is printed at the start and at the end.

MaxArraySize is read from `scontrol show config`. The test Slurm of .ci/slurm-up has a tiny one (4), so N jobs
make N/4 arrays: the figure is then the cost per array (one sbatch each), not what a cluster with Slurm's default
(1001) would see, where 10,000 jobs are 10 arrays, and 1,000 chains one array per stage.

    python benchmarks/slurm_submit.py                        # N=10000
    python benchmarks/slurm_submit.py -n 2000                # quicker
    python benchmarks/slurm_submit.py --pipeline -n 1000     # 1,000 -> 1,000 chains against 2,000 flat jobs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PLAIN_NOOP_TOOL, TWO_STAGE_PIPELINE, env, git, launcher_argv, make_stash, temp_dir  # noqa: E402
from stashkit import write  # noqa: E402


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


def launcher(root: Path, words: list[str], jobs: int, log: Path) -> dict:
    """One detached sweep, held; wall time, the part before the first sbatch, arrays. Its folder (so its Slurm job
    name, stash-<folder>) is named after the log and the temp folder: no other sweep's jobs are cancelled."""
    folder = root / "multirun" / f"{log.stem}-{root.parent.name}"
    argv = launcher_argv("-m", "hydra/launcher=stash_slurm", *words, "hydra.launcher.wait=false",
                         "+hydra.launcher.additional_parameters.hold=true", f"hydra.sweep.dir={folder}")
    with open(log, "wb") as out:
        start = time.time()
        proc = subprocess.run(argv, cwd=root, env=env(), stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT)
        wall = time.time() - start
    data = json.loads((folder / "sweep.json").read_text()) if (folder / "sweep.json").is_file() else None
    if proc.returncode != 0:
        if data:
            cancel(f"stash-{data['id']}")
        raise SystemExit(f"the launcher failed (exit code {proc.returncode}):\n{log.read_text()[-3000:]}")
    first = min(p.stat().st_mtime for p in (folder / ".submitit").rglob("*") if p.is_file())
    return {"wall": wall, "planning": first - start, "arrays": len(data["backend_state"]["arrays"]), "jobs": jobs,
            "final": "finisher" in data["backend_state"], "name": f"stash-{data['id']}",
            "submitted": sum(1 for j in data["jobs"] if j.get("slurm_job_id"))}


def flat(root: Path, jobs: int, log: Path) -> dict:
    return launcher(root, ["tool=noop", "experiment=noop", f"seed=range({jobs})"], jobs, log)


def show(what: str, got: dict) -> float:
    """Print one launcher run's figures; returns its submitting time (after planning)."""
    submitting = got["wall"] - got["planning"]
    print(f"{what}, wait=false: {got['wall']:.1f} s for {got['submitted']} jobs in {got['arrays']} arrays "
          f"({1000 * got['wall'] / got['jobs']:.2f} ms per job)")
    print(f"  before the first array reached sbatch (planning, pins): {got['planning']:.1f} s")
    print(f"  submitting: {submitting:.1f} s ({1000 * submitting / got['arrays']:.0f} ms per array); sbatch calls: "
          f"{got['arrays']} arrays + {int(got['final'])} final job (+ 1 `sbatch --test-only` before)")
    return submitting


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


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--jobs", type=int, default=None,
                        help="jobs in the sweep (default 10000); with --pipeline, chains (default 1000)")
    parser.add_argument("--pipeline", action="store_true",
                        help="a pipeline of N two-stage chains against the same 2N jobs as a flat sweep")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        raise SystemExit("no Slurm here: start one with .ci/slurm-up")
    chains = (args.jobs or 1000) if args.pipeline else None
    jobs = 2 * chains if chains else args.jobs or 10000
    size = max_array_size()
    print(f"load average {load_average()} at the start", flush=True)
    with temp_dir("slurm-submit-") as tmp:
        tmp = Path(tmp)
        root = make_stash(tmp, {"noop": {"files": {"noop.py": PLAIN_NOOP_TOOL}, "entrypoint": "noop.py"}})
        write(root / "configs" / "pipelines" / "two.yaml", TWO_STAGE_PIPELINE)
        git(root, "add", "-A")
        git(root, "commit", "-qm", "a two-stage pipeline")
        print(f"MaxArraySize {size}: {jobs} jobs -> {math.ceil(jobs / size)} arrays expected", flush=True)
        if chains:  # first: a later run finds warmer caches
            piped = launcher(root, ["pipeline=two", f"seed=range({chains})"], jobs, tmp / "pipeline.log")
            cancel(piped["name"])
        got = flat(root, jobs, tmp / "flat.log")
        cancelled = cancel(got["name"])
        baseline = plain_sbatch(got["arrays"], jobs, size, tmp)
    submitting = show("launcher", got)
    print(f"plain sbatch, the same {got['arrays']} arrays: {baseline:.1f} s ({1000 * baseline / got['arrays']:.0f} ms "
          f"per array)")
    print(f"ratio submitting / plain sbatch: {submitting / baseline:.2f}")
    print(f"scancel of the sweep's arrays, until squeue lists none: {cancelled:.1f} s")
    if chains:
        show(f"pipeline of {chains} two-stage chains", piped)
        ratio = piped["wall"] / got["wall"]
        print(f"ratio pipeline / flat sweep of the same {jobs} jobs (wall): {ratio:.2f} "
              f"(target <= 2: {'met' if ratio <= 2 else 'NOT met'})")
    if size < 100:
        print(f"note: MaxArraySize {size} is tiny (the test Slurm's): one sbatch per {size} jobs, so these figures "
              "are the cost per array; with Slurm's default (1001) the same sweep is "
              f"{math.ceil(jobs / 1001)} arrays"
              + (f", the pipeline {math.ceil(chains / 1001)} per stage" if chains else ""))
    print(f"load average {load_average()} at the end")


if __name__ == "__main__":
    main()

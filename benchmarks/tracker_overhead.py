"""Tracker overhead: a sweep of N no-op jobs with `tracker: none`, `wandb` and `mlflow`, in the same invocation.

The tool is a plain script that exits at once and logs nothing itself (`env: current`), so the differences are the
launcher's own tracker work: for W&B the variables of each job; for MLflow the parent run it creates before the
jobs start, each job's run made just before its tool starts (a real `mlflow server`, sqlite backend store, on
127.0.0.1) and each run's end (metrics, status) while the jobs go on. Also: one single run with each tracker, and
the launcher's import of mlflow.

    python benchmarks/tracker_overhead.py            # N=200, max_parallel=2
    python benchmarks/tracker_overhead.py -n 50      # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stashkit import PLAIN_NOOP_TOOL, PYTHON, launcher_argv, make_stash, run, temp_dir, write  # noqa: E402


def start_mlflow(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [PYTHON, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    for _ in range(360):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return proc, uri
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the MLflow server did not start within 3 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="jobs in the sweep (default 200)")
    parser.add_argument("--parallel", type=int, default=2, help="max_parallel (default 2)")
    args = parser.parse_args()
    n = args.n

    with temp_dir("es-bench-trackers-") as tmp:
        tmp = Path(tmp)
        server, uri = start_mlflow(tmp)
        try:
            root = make_stash(tmp, {"noop": {"files": {"noop.py": PLAIN_NOOP_TOOL}, "entrypoint": "noop.py"}})
            write(root / "configs" / "meta.local.yaml",
                  f"mlflow: {{tracking_uri: '{uri}', experiment: bench}}\nwandb: {{project: bench}}\n")
            sweep = ["-m", "tool=noop", "experiment=noop", f"seed=range({n})",
                     f"hydra.launcher.max_parallel={args.parallel}"]
            run(launcher_argv("tool=noop", "experiment=noop", "stash.tracker=mlflow"), cwd=root)  # warm-up
            walls, singles, first = {}, {}, {}
            for kind in ("none", "wandb", "mlflow"):
                started = time.time()
                walls[kind] = run(launcher_argv(*sweep, f"stash.tracker={kind}", f"hydra.sweep.dir=multirun/{kind}"),
                                  cwd=root, log=tmp / f"{kind}.log")
                first[kind] = min(datetime.fromisoformat(json.loads(p.read_text())["started_at"].replace("Z", "+00:00"))
                                  .timestamp() for p in (root / "multirun" / kind).rglob("run.json")) - started
                singles[kind] = min(run(launcher_argv("tool=noop", "experiment=noop", f"stash.tracker={kind}"),
                                        cwd=root) for _ in range(3))
            importing = min(run([PYTHON, "-c", "from mlflow.tracking import MlflowClient"], cwd=root)
                            for _ in range(3))
            bare = min(run([PYTHON, "-c", "pass"], cwd=root) for _ in range(3))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    print(f"sweep of {n} no-op jobs, max_parallel={args.parallel} (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs); MLflow server on 127.0.0.1")
    for kind in ("none", "wandb", "mlflow"):
        extra = walls[kind] - walls["none"]
        print(f"  tracker {kind:<6} sweep wall {walls[kind]:7.2f} s  ratio {walls[kind] / walls['none']:5.2f}x  "
              f"over none: {extra:6.2f} s = {extra / n * 1000:6.1f} ms/job; first job started after "
              f"{first[kind]:5.2f} s ({first[kind] - first['none']:+.2f} s)")
    for kind in ("none", "wandb", "mlflow"):
        print(f"  tracker {kind:<6} single run (best of 3) {singles[kind]:6.2f} s  "
              f"over none: {singles[kind] - singles['none']:+.2f} s")
    print(f"  importing MlflowClient alone (best of 3): {importing - bare:.2f} s over `python -c pass`")


if __name__ == "__main__":
    main()

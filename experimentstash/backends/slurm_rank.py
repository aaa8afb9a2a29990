"""One Slurm task of a multi-task job, started by srun on its node (run as a script: the standard library only, so it
starts whatever the interpreter's path holds).

    python slurm_rank.py RUN_DIR TASKS_PER_NODE -- COMMAND...

The command runs with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE and NODE_RANK from Slurm's task numbers
(MASTER_ADDR and MASTER_PORT come from the job): with stash.distributed=srun the command is the tool, one rank per
task; with torchrun it is torchrun, one per node, which gives its own ranks their numbers. Its output goes to
rank<k>.stdout.log and rank<k>.stderr.log in the run dir (k: the task), how it ended to rank<k>.json, and a task
that fails says so on stderr (the job's stderr.log).
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

TAIL_LINES = 10  # lines of a failed rank's stderr shown in the job's stderr.log


def main(argv: list[str]) -> int:
    run_dir, per_node = Path(argv[0]), argv[1]
    tool = argv[argv.index("--") + 1:]
    k = int(os.environ["SLURM_PROCID"])
    env = {**os.environ, "RANK": str(k), "LOCAL_RANK": os.environ.get("SLURM_LOCALID", "0"),
           "WORLD_SIZE": os.environ.get("SLURM_NTASKS", "1"), "LOCAL_WORLD_SIZE": per_node,
           "NODE_RANK": os.environ.get("SLURM_NODEID", "0")}
    logs = {"stdout": f"rank{k}.stdout.log", "stderr": f"rank{k}.stderr.log"}
    with open(run_dir / logs["stdout"], "wb") as out, open(run_dir / logs["stderr"], "wb") as err:
        proc = subprocess.Popen(tool, stdout=out, stderr=err, env=env)
        for signum in (signal.SIGTERM, signal.SIGINT):  # the tool hears what srun tells this rank
            signal.signal(signum, lambda s, _frame: proc.send_signal(s))
        code = proc.wait()
    node = socket.gethostname()
    done = run_dir / f"rank{k}.json"
    done.with_suffix(".tmp").write_text(json.dumps({"rank": k, "node": node, "exit_code": code, **logs}))
    done.with_suffix(".tmp").replace(done)
    if code != 0:
        lines = (run_dir / logs["stderr"]).read_text(errors="replace").splitlines()[-TAIL_LINES:]
        print(f"rank {k} on {node} exited with code {code}; last lines of {logs['stderr']}:", file=sys.stderr)
        print("\n".join("  " + line for line in lines), file=sys.stderr, flush=True)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

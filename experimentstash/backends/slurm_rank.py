"""One rank of a multi-task Slurm job, started by srun on its node (run as a script: the standard library only, so it
starts whatever the interpreter's path holds).

    python slurm_rank.py srun|torchrun RUN_DIR NODES TASKS_PER_NODE -- TOOL_ARGV...

srun: every Slurm task is one rank: the tool runs with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE and NODE_RANK
from Slurm's task numbers (MASTER_ADDR and MASTER_PORT come from the job). torchrun: one task per node runs
`python -m torch.distributed.run` with the node's part, and torchrun starts the node's ranks. The tool's output goes
to rank<k>.stdout.log and rank<k>.stderr.log in the run dir (k: the rank, or the node with torchrun); how it ended
goes to rank<k>.json, and a rank that fails says so on stderr (the job's stderr.log).
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
    mode, run_dir, nodes, per_node = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    tool = argv[argv.index("--") + 1:]
    node_rank = int(os.environ.get("SLURM_NODEID", "0"))
    env = dict(os.environ)
    if mode == "torchrun":
        k = node_rank
        tool = [tool[0], "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={per_node}",
                f"--node-rank={node_rank}", f"--master-addr={env['MASTER_ADDR']}",
                f"--master-port={env['MASTER_PORT']}", *tool[1:]]
    else:
        k = int(os.environ["SLURM_PROCID"])
        env.update(RANK=str(k), LOCAL_RANK=os.environ.get("SLURM_LOCALID", "0"),
                   WORLD_SIZE=os.environ.get("SLURM_NTASKS", str(nodes * per_node)),
                   LOCAL_WORLD_SIZE=str(per_node), NODE_RANK=str(node_rank))
    logs = {"stdout": f"rank{k}.stdout.log", "stderr": f"rank{k}.stderr.log"}
    with open(run_dir / logs["stdout"], "wb") as out, open(run_dir / logs["stderr"], "wb") as err:
        proc = subprocess.Popen(tool, stdout=out, stderr=err, env=env)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):  # the tool hears what srun tells this rank
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

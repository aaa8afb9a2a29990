"""The thin Hydra app: its task function runs ONE job (a single run, or a job of Hydra's basic launcher)."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import StashError
from .execute import Runner, exit_code_for, run_in_foreground
from .invocation import current, fail, say
from .job import new_run_id, plan_job, split_job
from .pins import apply_policy, inspect_tool, stash_state
from .record import sha256
from .registry import Stash, find_root

RUN_ID = new_run_id()  # names the sweep dir of this process (the launcher's multirun)
OmegaConf.register_new_resolver("stash_root", lambda: str(current.root), replace=True)
OmegaConf.register_new_resolver("stash_run_id", lambda: RUN_ID, replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="stash")
def hydra_app(cfg: DictConfig) -> int:
    try:
        return run_single(cfg)
    except StashError as err:
        fail(err)


def run_single(cfg: DictConfig) -> int:
    """Run one job in the foreground; returns its exit code (also kept for the process's own exit)."""
    # another launcher (basic, joblib) may run this in a worker process: the root and the tool overrides it
    # was given through Hydra are found again there
    stash = Stash.load(current.root or find_root())
    tool, experiment, options, given = split_job(HydraConfig.get().overrides.task, cfg)
    run_id = new_run_id()
    run_dir = stash.root / "outputs" / str(tool) / str(experiment) / run_id
    spec = plan_job(stash, tool, experiment, [*given, *current.tool_overrides], run_dir, run_id,
                    timeout=options["timeout"])
    pin = inspect_tool(stash.root, spec.tool)
    warning = apply_policy(spec.tool, pin, options["pin"])
    if warning:
        say(f"warning: {warning}")
    runner = Runner(stash.root, grace=float(options["grace"]))
    outcome, signum = run_in_foreground(
        runner, lambda: runner.run(spec, pin, stash_state(stash.root), sha256(spec.experiment_file), stream=True)
    )
    status = outcome.get("status", "interrupted" if signum else "failed")
    rel = spec.run_dir.relative_to(stash.root)
    say(f"{status} in {outcome.get('duration_s', 0):.1f}s: {rel}")
    if status != "succeeded":
        say(f"  logs: {rel}/stdout.log, {rel}/stderr.log")
    code = exit_code_for(status, outcome.get("exit_code"), signum)
    current.worse(code)
    return code

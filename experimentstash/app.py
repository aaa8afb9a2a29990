"""The thin Hydra app: its task function runs ONE job (a single run, or a job of Hydra's basic launcher)."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import StashError
from .execute import Runner, exit_code_for, run_in_foreground
from .invocation import current, fail, is_launcher_override, say
from .job import new_run_id, plan_job
from .pins import apply_policy, inspect_tool, stash_state
from .record import sha256
from .registry import Stash, find_root

RUN_ID = new_run_id()  # names the sweep dir of this process (the launcher's multirun)
OmegaConf.register_new_resolver("stash_root", lambda: str(current.root), replace=True)
OmegaConf.register_new_resolver("stash_run_id", lambda: RUN_ID, replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="stash")
def hydra_app(cfg: DictConfig) -> None:
    try:
        run_single(cfg)
    except StashError as err:
        fail(err)


def run_single(cfg: DictConfig) -> None:
    # another launcher (basic, joblib) may run this in a worker process: the root and the tool overrides it
    # was given through Hydra are found again there
    stash = Stash.load(current.root or find_root())
    given = [w for w in HydraConfig.get().overrides.task if not is_launcher_override(w)]
    run_id = new_run_id()
    run_dir = stash.root / "outputs" / str(cfg.tool) / str(cfg.experiment) / run_id
    spec = plan_job(stash, cfg.tool, cfg.experiment, [*given, *current.tool_overrides], run_dir, run_id,
                    timeout=cfg.stash.timeout)
    pin = inspect_tool(stash.root, spec.tool)
    warning = apply_policy(spec.tool, pin, cfg.stash.pin)
    if warning:
        say(f"warning: {warning}")
    runner = Runner(stash.root, grace=float(cfg.stash.grace))
    outcome, signum = run_in_foreground(
        runner, lambda: runner.run(spec, pin, stash_state(stash.root), sha256(spec.experiment_file), stream=True)
    )
    status = outcome.get("status", "interrupted")
    rel = spec.run_dir.relative_to(stash.root)
    say(f"{status} in {outcome.get('duration_s', 0):.1f}s: {rel}")
    if status != "succeeded":
        say(f"  logs: {rel}/stdout.log, {rel}/stderr.log")
    current.worse(exit_code_for(status, outcome.get("exit_code"), signum))

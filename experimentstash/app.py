"""The thin Hydra app: its task function runs ONE job (a single run, or a job of Hydra's basic launcher)."""

from __future__ import annotations

import hashlib

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import StashError
from .execute import Runner, exit_code_for, run_in_foreground
from .invocation import current, fail, say
from .job import new_run_id, plan_job, split_job
from .pins import NO_GIT_WARNING, apply_policy, inspect
from .records import Status
from .registry import Stash, find_root
from .summary import shown_path

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
                    timeout=options["timeout"], tracker=options["tracker"])
    state, pins = inspect(stash.root, [spec.tool])
    if state.commit is None and state.dirty is None:
        say(f"warning: {NO_GIT_WARNING.format(root=stash.root)}")
    pin = pins[spec.tool.name]
    warning = apply_policy(spec.tool, pin, options["pin"])
    if warning:
        say(f"warning: {warning}")
    tracking = None
    if spec.tracker != "none":  # W&B or MLflow (trackers.py, imported only then)
        from .trackers import Tracking

        tracking = Tracking(stash.root, {0: spec}, pins, state)
        spec = tracking.specs[0]
    runner = Runner(stash.root, grace=float(options["grace"]))
    sha = hashlib.sha256(spec.experiment_file.read_bytes()).hexdigest()
    record = None
    try:
        record, signum = run_in_foreground(runner, lambda: runner.run(spec, pin, state, sha, stream=True))
    finally:
        if tracking:
            tracking.ended(0, record.status if record else Status.CANCELLED, record.result if record else None)
            tracking.close()
    status = record.status if record else Status.INTERRUPTED
    rel = shown_path(stash.root, spec.run_dir)
    say(f"{status} in {(record.duration_s if record else 0) or 0:.1f}s: {rel}")
    if not status.ok:
        say(f"  logs: {rel}/stdout.log, {rel}/stderr.log")
    code = exit_code_for(status, record.exit_code if record else None, signum)
    current.worse(code)
    return code

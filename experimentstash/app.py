"""The thin Hydra app: its task function runs ONE job (a single run, or a job of Hydra's basic launcher)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import StashError
from .execute import Runner, exit_code_for, run_in_foreground
from .invocation import current, fail, say, shown_path
from .fingerprint import configs_digest, of_job, succeeded_runs
from .job import new_run_id, plan_job, reuses, split_job
from .pins import NO_GIT_WARNING, CheckoutWatch, apply_policy, inspect
from .records import Status
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
    finally:
        _drop_empty_job_dir()


def _drop_empty_job_dir() -> None:
    """Another launcher (basic, joblib) makes a folder per job under the sweep dir; the run has its own run dir
    under outputs/, so an empty one is removed (and the sweep dir with the last)."""
    runtime = HydraConfig.get()
    if runtime.mode != RunMode.MULTIRUN:
        return
    folder = Path(runtime.runtime.output_dir)
    for path in (folder, folder.parent):
        try:
            path.rmdir()  # only when empty
        except OSError:
            return


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
    state, pins = inspect(stash.root, [spec.tool])
    if state.commit is None and state.dirty is None:
        say(f"warning: {NO_GIT_WARNING.format(root=stash.root)}")
    pin = pins[spec.tool.name]
    warning = apply_policy(spec.tool, pin, options["pin"])
    if warning:
        say(f"warning: {warning}")
    spec = replace(spec, fingerprint=of_job(spec, pin, state, configs_digest(stash.root, spec.tool.name, state)))
    if reuses(spec, options) and (earlier := succeeded_runs(stash.root).get(spec.fingerprint.digest)):
        say(f"reused: run {earlier.label} succeeded with the same fingerprint ({spec.fingerprint.digest[:12]}): "
            f"{shown_path(stash.root, earlier.folder)}")
        if earlier.record.result is not None:
            print(json.dumps(earlier.record.result))
        return 0
    runner = Runner(stash.root, grace=float(options["grace"]))
    sha = hashlib.sha256(spec.experiment_file.read_bytes()).hexdigest()
    watch = CheckoutWatch(stash.root, spec.tool, pin, lambda text: say(f"warning: {text}"))
    record, signum = run_in_foreground(runner, lambda: runner.run(spec, pin, state, sha, stream=True, watch=watch))
    status = record.status if record else Status.INTERRUPTED
    rel = shown_path(stash.root, spec.run_dir)
    say(f"{status} in {(record.duration_s if record else 0) or 0:.1f}s: {rel}")
    if not status.ok:
        say(f"  logs: {rel}/stdout.log, {rel}/stderr.log")
    code = exit_code_for(status, record.exit_code if record else None, signum)
    current.worse(code)
    return code

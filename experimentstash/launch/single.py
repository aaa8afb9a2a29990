"""One run in the foreground: plan, pins, fingerprint (and reuse), run, record. No Hydra on this path."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .. import StashError, backends, find_root
from ..output import say, shown_path
from ..records import Status, to_json
from ..registry import Stash
from ..reuse import Chooser, earlier_runs
from .facts import gather
from .invocation import current
from .pipeline import check_no_tool, run_pipeline
from .plan import base_config, new_run_id, pipeline_of, plan_job, reuses, split_job
from .run import exit_code_for, run_job
from .supervise import Runner, run_in_foreground


def run_direct(words: list[str]) -> int:
    """A single run without Hydra's app around it: only tool, experiment and stash.* on the command line (checked
    already), so the launcher's own config needs no composing. Saves Hydra's start-up on the path users take most."""
    return run_single(words, base_config())


def run_single(words, cfg, run_dir: Path | None = None) -> int:
    """Run one job in the foreground; returns its exit code (also kept for the process's own exit). `run_dir`:
    the one hydra.run.dir gave, else a new one under outputs/."""
    # another launcher (basic, joblib) may run this in a worker process: the root and the tool overrides it
    # was given through Hydra are found again there
    stash = Stash.load(current.root or find_root())
    tool, experiment, options, given = split_job(words, cfg)
    # the default backend's options (hydra.launcher.*, this machine's defaults) apply as to a job of a sweep
    launcher = current.launcher_options or backends.resolve_options(
        backends.DEFAULT, {}, set(), stash.machine.get(backends.DEFAULT, {}))
    backend = backends.create(backends.DEFAULT, launcher)
    pipeline = pipeline_of(words, cfg)
    if pipeline is not None:
        check_no_tool(tool, experiment, pipeline)
        if run_dir is not None:
            raise StashError(f"pipeline={pipeline}: each stage has a run dir of its own; hydra.run.dir places one run.")
        backend.preflight()
        timeout = options["timeout"] if options["timeout"] is not None else backend.job_timeout()
        code = run_pipeline(stash, pipeline, options, [*given, *current.tool_overrides], float(options["grace"]),
                            timeout, backend.foreground_env())
        current.worse(code)
        return code
    backend.preflight()
    run_id = new_run_id()
    if run_dir is None:
        run_dir = stash.root / "outputs" / str(tool) / str(experiment) / run_id
    else:
        _outside_tools(stash, run_dir)
    timeout = options["timeout"] if options["timeout"] is not None else backend.job_timeout()
    spec = plan_job(stash, tool, experiment, [*given, *current.tool_overrides], run_dir, run_id,
                    timeout=timeout, tracker=options["tracker"])
    spec = replace(spec, env={**spec.env, **backend.foreground_env()})
    facts, (spec,) = gather(stash.root, [(spec, options)], lambda text: say(f"warning: {text}"))
    pin = facts.pins[spec.tool.name]
    if reuses(spec, options) and spec.fingerprint:
        chooser = Chooser(stash.root, earlier_runs(stash.root))
        earlier = chooser.choose(spec)
        if line := chooser.line():
            say(line)
        if earlier:
            say(f"reused: run {earlier.label} succeeded with the same fingerprint ({spec.fingerprint.digest[:12]}): "
                f"{shown_path(stash.root, earlier.folder)}")
            if earlier.record.result is not None:
                print(to_json(earlier.record.result))
            return 0
    tracking = None
    if spec.tracker != "none":  # W&B or MLflow (trackers.py, imported only then)
        from .trackers import Tracking

        tracking = Tracking(stash.root, {0: spec}, facts.pins, facts.stash)
        spec = tracking.specs[0]
    runner = Runner(grace=float(options["grace"]))
    sha, watch = facts.sha[spec.experiment_file], facts.watches[spec.tool.name]
    record = stopped = None
    try:
        record, signum = run_in_foreground(runner, lambda: run_job(
            runner, stash.root, spec, pin, facts.stash, sha, stream=True, watch=watch, prepare=tracking.prepare(0) if tracking else None))
    finally:
        if tracking:
            tracking.ended(0, record.status if record else Status.CANCELLED, record)
            stopped = tracking.close()  # the signal that ended the wait for the tracker, if one did
    status = record.status if record else Status.INTERRUPTED
    rel = shown_path(stash.root, spec.run_dir)
    say(f"{status} in {(record.duration_s if record else 0) or 0:.1f}s: {rel}")
    if not status.ok:
        say(f"  logs: {rel}/stdout.log, {rel}/stderr.log")
    code = 128 + stopped if stopped else exit_code_for(status, record.exit_code if record else None, signum)
    current.worse(code)
    return code


def _outside_tools(stash: Stash, run_dir: Path) -> None:
    """hydra.run.dir as a run dir: outside the tools' checkouts."""
    if any(run_dir.is_relative_to(tool.path) for tool in stash.tools.values()):
        raise StashError(f"hydra.run.dir={shown_path(stash.root, run_dir)} is inside a tool's checkout, which the next "
                         "run's pin would take for a change of the tool: give a folder outside tools/.")

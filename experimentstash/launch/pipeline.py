"""Running a pipeline (pipelines.py): its stages planned together before any runs (every run dir is known in
advance, so the references between stages are filled in then), and one chain run in the foreground, stage after
stage; a stage whose upstream did not succeed is cancelled."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .. import StashError
from ..output import say, shown_path
from ..pipelines import REFERENCE, Pipeline, Stage, load
from ..records import Status
from ..registry import Stash
from .facts import gather
from .plan import hydra_value, new_run_id, plan_job
from .run import exit_code_for, run_job
from .supervise import Runner, run_in_foreground


def fill(stage: Stage, words, run_dirs: dict[str, list[Path]]) -> list[str]:
    """A stage's overrides with the references filled in: a run dir as its path, every run dir of a stage as a
    Hydra list."""
    def one(word: str) -> str:
        key, eq, value = word.partition("=")
        whole = REFERENCE.fullmatch(value)
        if whole and whole.group(1).endswith(".run_dirs"):
            folders = run_dirs[whole.group(1).rpartition(".")[0]]
            return f"{key}{eq}[{','.join(hydra_value(str(f)) for f in folders)}]"
        return REFERENCE.sub(lambda m: str(run_dirs[m.group(1).rpartition(".")[0]][0]), word)

    return [one(word) for word in words]


def stage_words(pipeline: Pipeline, stage: Stage, routed: dict[str, list[str]], run_dirs) -> list[str]:
    """What a stage's tool is given: the stage's own overrides from the file, then the user's for it."""
    return fill(stage, [*stage.overrides, *routed[stage.name]], run_dirs)


def check_no_tool(tool, experiment, name: str) -> None:
    if tool is not None or experiment is not None:
        given = "tool=" if tool is not None else "experiment="
        raise StashError(f"pipeline={name} names the tool and experiment of each of its stages: give no {given}.")


def run_pipeline(stash: Stash, name: str, options: dict, words: list[str], grace: float,
                 timeout: float | None, env: dict[str, str]) -> int:
    """One chain of a pipeline in the foreground (a gather stage gathers this one chain); the exit code of the
    first stage that did not succeed, else 0."""
    pipeline = load(stash, name)
    routed = pipeline.route(words)
    run_id = new_run_id()
    base = stash.root / "outputs" / "pipelines" / name / run_id
    run_dirs = {stage.name: [base / stage.name] for stage in pipeline.stages}
    specs = []
    for stage in pipeline.stages:
        try:
            spec = plan_job(stash, stage.tool, stage.experiment, stage_words(pipeline, stage, routed, run_dirs),
                            run_dirs[stage.name][0], f"{run_id}_{stage.name}", timeout=timeout, tracker="none")
        except StashError as err:
            raise StashError(f"{pipeline.file}: stage '{stage.name}': {err} Nothing was started.") from None
        specs.append(replace(spec, env={**spec.env, **env}))
    facts, specs = gather(stash.root, [(spec, options) for spec in specs], lambda text: say(f"warning: {text}"))
    runner = Runner(grace=grace)
    ids: dict[str, str] = {}
    ended: dict[str, Status] = {}
    code = 0
    for stage, spec in zip(pipeline.stages, specs):
        failed = [need for need in stage.needs if ended.get(need) != Status.SUCCEEDED]
        if failed:
            ended[stage.name] = Status.CANCELLED
            say(f"{stage.name}: cancelled, upstream stage {failed[0]} did not succeed")
            continue
        upstream = pipeline.upstream(stage.name)
        extra = {"pipeline": name, "stage": stage.name,
                 "upstream": [ids[s.name] for s in pipeline.stages if s.name in upstream]}
        say(f"{stage.name}: {stage.tool} {stage.experiment}")
        record, signum = run_in_foreground(runner, lambda: run_job(
            runner, stash.root, spec, facts.pins[spec.tool.name], facts.stash, facts.sha[spec.experiment_file],
            stream=True, watch=facts.watches[spec.tool.name], extra=extra))
        status = record.status if record else Status.INTERRUPTED
        ended[stage.name] = status
        if record:
            ids[stage.name] = record.id
        rel = shown_path(stash.root, spec.run_dir)
        say(f"{stage.name}: {status} in {(record.duration_s if record else 0) or 0:.1f}s: {rel}")
        if not status.ok:
            say(f"  logs: {rel}/stdout.log, {rel}/stderr.log")
            code = code or exit_code_for(status, record.exit_code if record else None, signum)
        if signum is not None:
            break
    return code


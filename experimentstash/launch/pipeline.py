"""Running a pipeline (pipelines.py): its stages planned together before any runs (every run dir is known in
advance, so the references between stages are filled in then), and one chain run in the foreground, stage after
stage; a stage whose upstream did not succeed is cancelled."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .. import StashError
from ..output import say, shown_path
from ..overrides import override_key
from ..pipelines import REFERENCE, Pipeline, Stage, load
from ..records import Status, job_dir_name
from ..registry import Stash
from .facts import gather
from .plan import hydra_value, new_run_id, pipeline_of, plan_job, split_job
from .run import exit_code_for, run_job
from .supervise import Runner, run_in_foreground


def fill(words, run_dirs: dict[str, list[Path]]) -> list[str]:
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


def stage_words(stage: Stage, routed: dict[str, list[str]], run_dirs) -> list[str]:
    """What a stage's tool is given: the stage's own overrides from the file, then the user's for it."""
    return fill([*stage.overrides, *routed[stage.name]], run_dirs)


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
        upstream = pipeline.upstream(stage.name)
        link = {"pipeline": name, "stage": stage.name,
                "upstream": [f"{run_id}_{s.name}" for s in pipeline.stages if s.name in upstream]}
        try:
            spec = plan_job(stash, stage.tool, stage.experiment, stage_words(stage, routed, run_dirs),
                            run_dirs[stage.name][0], f"{run_id}_{stage.name}", timeout=timeout, tracker="none")
        except StashError as err:
            raise StashError(f"{pipeline.file}: stage '{stage.name}': {err} Nothing was started.") from None
        specs.append(replace(spec, env={**spec.env, **env}, stage=link))
    facts, specs = gather(stash.root, [(spec, options) for spec in specs], lambda text: say(f"warning: {text}"))
    runner = Runner(grace=grace)
    ended: dict[str, Status] = {}
    code = 0
    for stage, spec in zip(pipeline.stages, specs):
        failed = [need for need in stage.needs if ended.get(need) != Status.SUCCEEDED]
        if failed:
            ended[stage.name] = Status.CANCELLED
            say(f"{stage.name}: cancelled, upstream stage {failed[0]} did not succeed")
            continue
        say(f"{stage.name}: {stage.tool} {stage.experiment}")
        record, signum = run_in_foreground(runner, lambda: run_job(
            runner, stash.root, spec, facts.pins[spec.tool.name], facts.stash, facts.sha[spec.experiment_file],
            stream=True, watch=facts.watches[spec.tool.name]))
        status = record.status if record else Status.INTERRUPTED
        ended[stage.name] = status
        rel = shown_path(stash.root, spec.run_dir)
        say(f"{stage.name}: {status} in {(record.duration_s if record else 0) or 0:.1f}s: {rel}")
        if not status.ok:
            say(f"  logs: {rel}/stdout.log, {rel}/stderr.log")
            code = code or exit_code_for(status, record.exit_code if record else None, signum)
        if signum is not None:
            break
    return code


# a stage job's place in its pipeline, in sweep.json; chain_overrides: the chain's tool overrides as typed
LINK_KEYS = ("pipeline", "chain", "stage", "needs", "chain_overrides")


def expand_chains(stash: Stash, base, sweep_dir: Path, numbered) -> list[tuple[int, list[str], dict | None]]:
    """A sweep's jobs: each (number, override list) that names a pipeline is a chain, one job per stage, numbered
    chain after chain, then each pipeline's gather stages once. A stage job's override list names its tool and
    experiment with the references filled in (what `rerun` replays); its link says its pipeline, chain, stage and
    the jobs it needs. Other jobs pass as they are."""
    numbered = list(numbered)
    names = [pipeline_of(words, base) for _, words in numbered]
    if not any(names):
        return [(num, list(words), None) for num, words in numbered]
    if not all(names):
        raise StashError("A sweep runs pipelines (pipeline=) or tools' experiments (tool=, experiment=), not both: "
                         "start them as two sweeps.")
    loaded: dict[str, Pipeline] = {}
    chains = []  # (pipeline, chain number, stage words routed, stash words, stage -> job number, tool words)
    num = numbered[0][0]
    for chain, ((_, words), name) in enumerate(zip(numbered, names)):
        tool, experiment, _, tool_words = split_job(words, base)
        check_no_tool(tool, experiment, name)
        pipeline = loaded.get(name) or loaded.setdefault(name, load(stash, name))
        nums = {}
        for stage in pipeline.chain:
            nums[stage.name], num = num, num + 1
        chains.append((pipeline, chain, pipeline.route(tool_words),
                       [w for w in words if override_key(w).startswith("stash.")], nums, tool_words))
    gathered = {}  # pipeline name -> gather stage -> job number
    for name, pipeline in loaded.items():
        for stage in pipeline.gathers:
            gathered.setdefault(name, {})[stage.name], num = num, num + 1

    def folder(n: int, stage: Stage) -> Path:
        return sweep_dir / job_dir_name(n, stage.tool, stage.experiment)

    jobs = []
    for pipeline, chain, routed, stash_words, nums, tool_words in chains:
        dirs = {s.name: [folder(nums[s.name], s)] for s in pipeline.chain}
        for stage in pipeline.chain:
            link = {"pipeline": pipeline.name, "chain": chain, "stage": stage.name,
                    "needs": [nums[n] for n in stage.needs], "chain_overrides": list(tool_words)}
            jobs.append((nums[stage.name], _stage_job(pipeline, stage, stash_words, routed, dirs), link))
    for name, by_stage in gathered.items():
        pipeline = loaded[name]
        mine = [c for c in chains if c[0] is pipeline]
        nums = {**{s: [c[4][s] for c in mine] for s in mine[0][4]}, **{s: [n] for s, n in by_stage.items()}}
        dirs = {s: [folder(n, pipeline.stage(s)) for n in ns] for s, ns in nums.items()}
        # a gather stage takes what every chain was given alike, not what tells the chains apart
        routed = {s.name: [w for w in mine[0][2][s.name] if all(w in c[2][s.name] for c in mine)]
                  for s in pipeline.gathers}
        stash_words = [w for w in mine[0][3] if all(w in c[3] for c in mine)]
        for stage in pipeline.gathers:
            link = {"pipeline": name, "chain": None, "stage": stage.name,
                    "needs": [n for need in stage.needs for n in nums[need]],
                    "chain_overrides": [w for w in mine[0][5] if all(w in c[5] for c in mine)]}
            jobs.append((by_stage[stage.name], _stage_job(pipeline, stage, stash_words, routed, dirs), link))
    return sorted(jobs, key=lambda job: job[0])


def _stage_job(pipeline: Pipeline, stage: Stage, stash_words, routed, dirs) -> list[str]:
    return [f"tool={hydra_value(stage.tool)}", f"experiment={hydra_value(stage.experiment)}", *stash_words,
            *stage_words(stage, routed, dirs)]


def upstream_of(links: dict[int, dict], num: int) -> list[int]:
    """Every job a stage job runs after, directly or not, in order."""
    seen, todo = set(), list(links[num]["needs"])
    while todo:
        need = todo.pop()
        if need not in seen and need in links:
            seen.add(need)
            todo.extend(links[need]["needs"])
    return sorted(seen)


def recorded_link(job, where: Path) -> dict:
    """A stage job's link as sweep.json has it (a rerun's), checked: a StashError naming the file when it is off."""
    link = {key: job.extra.get(key) for key in LINK_KEYS}
    needs, overrides = link["needs"], link["chain_overrides"]
    ok = (isinstance(link["pipeline"], str) and isinstance(link["stage"], str)
          and (link["chain"] is None or type(link["chain"]) is int)
          and isinstance(needs, list) and all(type(n) is int and 0 <= n < job.num for n in needs)
          and isinstance(overrides, list) and all(isinstance(w, str) for w in overrides))
    if not ok:
        raise StashError(f"{where}: job {job.num}: its pipeline, chain, stage, needs or chain_overrides are damaged "
                         "(needs: numbers of earlier jobs). Start the pipeline's sweep again.")
    return link

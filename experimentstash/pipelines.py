"""Pipelines: `configs/pipelines/<name>.yaml` names stages, each a tool and an experiment of the stash run after the
stages it `needs`. One pass through the stages is a chain; a `gather` stage runs once, after the stages it needs
ended in every chain.

A stage's overrides may name an upstream stage's run dir, `${stages.<name>.run_dir}`, and a gather stage every run
dir of one, `${stages.<name>.run_dirs}` (the whole value: the tool gets a Hydra list). The file is checked whole
before anything runs: one error names the file and the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import StashError
from .records import is_name
from .registry import Stash, closest, read_yaml

PIPELINES = "configs/pipelines"
STAGE_KEYS = ("tool", "experiment", "overrides", "needs", "gather")
# the words of the launcher's own command line: a stage so named would take them for stage overrides
RESERVED = ("tool", "experiment", "pipeline", "stash", "hydra")
REFERENCE = re.compile(r"\$\{stages\.([^}]*)\}")


@dataclass(frozen=True)
class Stage:
    name: str
    tool: str
    experiment: str
    overrides: tuple[str, ...]  # as written, references unfilled
    needs: tuple[str, ...]
    gather: bool


@dataclass(frozen=True)
class Pipeline:
    name: str
    file: str  # relative to the stash root, as messages name it
    stages: tuple[Stage, ...]  # upstream before downstream: the order they run in

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def chain(self) -> tuple[Stage, ...]:
        """The stages that run once per chain."""
        return tuple(s for s in self.stages if not s.gather)

    @property
    def gathers(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if s.gather)

    def upstream(self, name: str) -> set[str]:
        """Every stage a stage runs after, directly or not."""
        seen, todo = set(), list(self.stage(name).needs)
        while todo:
            need = todo.pop()
            if need not in seen:
                seen.add(need)
                todo.extend(self.stage(need).needs)
        return seen

    def route(self, words: list[str]) -> dict[str, list[str]]:
        """The user's tool overrides for each stage: one whose first key is a stage's name goes to that stage, with
        the name taken off (`train.lr=0.1` -> `lr=0.1`), any other to every stage."""
        names = {s.name for s in self.stages}
        routed = {s.name: [] for s in self.stages}
        for word in words:
            prefix = word[:len(word) - len(word.lstrip("~+"))]
            first, dot, rest = word[len(prefix):].partition(".")
            if dot and first in names:
                routed[first].append(prefix + rest)
            else:
                for stage in routed.values():
                    stage.append(word)
        return routed


def pipeline_names(root: Path) -> list[str]:
    base = root / PIPELINES
    return sorted(p.relative_to(base).with_suffix("").as_posix() for p in base.rglob("*.yaml"))


def load(stash: Stash, name: str) -> Pipeline:
    """The pipeline `name`, checked whole: its file, every stage's tool, experiment, needs and references."""
    if not isinstance(name, str) or not is_name(name):
        raise StashError(f"pipeline={name}: give the name of a file in {PIPELINES}/ (without .yaml).")
    file = f"{PIPELINES}/{name}.yaml"
    path = stash.root / file
    if not path.is_file():
        names = pipeline_names(stash.root)
        listed = ", ".join(names) if names else "none yet"
        raise StashError(f"Unknown pipeline '{name}'{closest(name, names)}: no {file} (pipelines: {listed}).")
    raw = read_yaml(path, stash.root)
    if not isinstance(raw, dict) or set(raw) != {"stages"} or not isinstance(raw["stages"], dict) or not raw["stages"]:
        raise StashError(f"{file}: give one key, stages:, a mapping of stage names to their tool and experiment.")
    stages = {}
    for stage_name, body in raw["stages"].items():
        stages[str(stage_name)] = _stage(stash, file, stage_name, body)
    order = _order(file, stages)
    pipeline = Pipeline(name, file, tuple(stages[n] for n in order))
    for stage in pipeline.stages:
        _check_references(pipeline, stage)
    return pipeline


def _stage(stash: Stash, file: str, name, body) -> Stage:
    if not isinstance(name, str) or not is_name(name) or "." in name or name in RESERVED:
        raise StashError(f"{file}: stage '{name}': a stage name is letters, digits, '_' and '-', and none of "
                         f"{', '.join(RESERVED)}. Rename it.")
    where = f"{file}: stage '{name}'"
    if not isinstance(body, dict):
        raise StashError(f"{where}: give a mapping with tool:, experiment: and optional overrides:, needs:, gather:.")
    unknown = [str(k) for k in body if k not in STAGE_KEYS]
    if unknown:
        raise StashError(f"{where}: unknown key '{unknown[0]}'; a stage takes {', '.join(STAGE_KEYS)}.")
    overrides, needs, gather = body.get("overrides") or [], body.get("needs") or [], body.get("gather", False)
    for key, value in (("overrides", overrides), ("needs", needs)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise StashError(f"{where}: {key}: give a list of strings.")
    if not isinstance(gather, bool):
        raise StashError(f"{where}: gather: give true or false.")
    tool, experiment = body.get("tool"), body.get("experiment")
    for key, value in (("tool", tool), ("experiment", experiment)):
        if not isinstance(value, str) or not value:
            raise StashError(f"{where}: {key}: give the name of one {key}.")
    try:
        stash.experiment_file(stash.tool(tool).name, experiment)
    except StashError as err:
        raise StashError(f"{where}: {err}") from None
    return Stage(name, tool, experiment, tuple(overrides), tuple(needs), gather)


def _order(file: str, stages: dict[str, Stage]) -> list[str]:
    """The stages, each after those it needs (in the file's order where that is free); a cycle is refused."""
    for stage in stages.values():
        for need in stage.needs:
            if need not in stages:
                raise StashError(f"{file}: stage '{stage.name}' needs '{need}', which is no stage of this pipeline"
                                 f"{closest(need, stages)}.")
            if stages[need].gather and not stage.gather:
                raise StashError(f"{file}: stage '{stage.name}' needs the gather stage '{need}', which runs once for "
                                 "every chain: make it a gather stage too (gather: true).")
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = visiting[visiting.index(name):] + [name]
            raise StashError(f"{file}: the stages need each other in a cycle ({' -> '.join(cycle)}): remove one of "
                             "these needs.")
        visiting.append(name)
        for need in stages[name].needs:
            visit(need)
        visiting.pop()
        order.append(name)

    for name in stages:
        visit(name)
    return order


def _check_references(pipeline: Pipeline, stage: Stage) -> None:
    upstream = pipeline.upstream(stage.name)
    for word in stage.overrides:
        for match in REFERENCE.finditer(word):
            ref = match.group(0)
            name, _, field = match.group(1).rpartition(".")
            where = f"{pipeline.file}: stage '{stage.name}': '{word}'"
            if field not in ("run_dir", "run_dirs"):
                raise StashError(f"{where}: {ref} cannot be resolved; a stage may name ${{stages.<stage>.run_dir}} or, "
                                 "in a gather stage, ${stages.<stage>.run_dirs}.")
            if name not in upstream:
                raise StashError(f"{where}: {ref} cannot be resolved: '{name}' is not a stage that "
                                 f"'{stage.name}' needs (directly or not). Add it to needs:.")
            several = stage.gather and not pipeline.stage(name).gather
            if field == "run_dirs" and not several:
                raise StashError(f"{where}: {ref} cannot be resolved: run_dirs is the list of a chain stage's run "
                                 f"dirs, for a gather stage; here use ${{stages.{name}.run_dir}}.")
            if field == "run_dir" and several:
                raise StashError(f"{where}: {ref} cannot be resolved: '{name}' runs once per chain; a gather stage "
                                 f"takes every run dir of it as ${{stages.{name}.run_dirs}}.")
            if field == "run_dirs" and match.group(0) != word.partition("=")[2]:
                raise StashError(f"{where}: {ref} is a list and must be the whole value (key={ref}).")

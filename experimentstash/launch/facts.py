"""What a launch looks up once, before anything runs: the stash's state and each tool's pin (with its pin policy
applied), each experiment file's sha256, each job's fingerprint, and a watch on each tool's checkout. A single
run and a sweep gather them alike; a sweep's later launches (an optimizing sweeper's batches) reuse them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..fingerprint import configs_digest, experiment_files, named_by_overrides, of_job
from ..pins import NO_GIT_WARNING, CheckoutWatch, StashState, ToolPin, apply_policy, inspect
from .plan import JobSpec, file_sha256


@dataclass
class Facts:
    stash: StashState
    pins: dict[str, ToolPin] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)  # each tool's configs/<tool>/ digest (fingerprints)
    composed: dict[Path, dict] = field(default_factory=dict)  # experiment files each experiment file names
    groups: dict[tuple, list] = field(default_factory=dict)  # folders of experiment files an override key names
    sha: dict[Path, str] = field(default_factory=dict)
    watches: dict[str, CheckoutWatch] = field(default_factory=dict)  # files the runs write into each checkout


def gather(root: Path, jobs: list[tuple[JobSpec, dict]], warn, known: Facts | None = None):
    """(Facts, the jobs' specs with their fingerprints). `jobs` pairs each spec with its stash.* options; `warn`
    shows a warning; `known` holds what an earlier launch of the same sweep looked up. StashError when a pin
    policy refuses a job."""
    tools = {spec.tool.name: spec.tool for spec, _ in jobs}
    new = [tool for name, tool in tools.items() if not known or name not in known.pins]
    facts = known
    if new or facts is None:
        state, pins = inspect(root, new)
        if facts is None:
            facts = Facts(state)
            if state.commit is None and state.dirty is None:
                warn(NO_GIT_WARNING.format(root=root))
        facts.stash.trees.update(state.trees)  # the tools new to this launch, for an earlier launch's facts
        facts.stash.entries.update(state.entries)
        for tool in new:
            facts.pins[tool.name] = pins[tool.name]
            facts.configs[tool.name] = configs_digest(root, tool.name, state)
            facts.watches[tool.name] = CheckoutWatch(root, tool, pins[tool.name], warn)
    warned, specs = set(), []
    for spec, options in jobs:
        name = spec.tool.name
        warning = apply_policy(spec.tool, facts.pins[name], options["pin"])  # per job: its own policy
        if warning and name not in warned and name in {t.name for t in new}:
            warned.add(name)  # once per tool
            warn(warning)
        if spec.experiment_file not in facts.sha:
            facts.sha[spec.experiment_file] = file_sha256(spec.experiment_file)
        files = {}
        chosen = named_by_overrides(root, name, spec.experiment_file, spec.overrides, facts.groups)
        for start in (spec.experiment_file, *chosen):
            files.update(experiment_files(root, name, start, facts.composed))
        fingerprint = of_job(spec, facts.pins[name], facts.stash, facts.configs[name], dict(sorted(files.items())))
        specs.append(replace(spec, fingerprint=fingerprint))
    return facts, specs

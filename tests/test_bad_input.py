"""Every mistake a user can make: one clear message naming the value or file, exit code 2, nothing written."""

import os

import pytest

from conftest import META


def refused(stash, *args, env=None):
    out = stash.run(*args, env=env)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and out.stderr.count("error:") == 1
    assert not (stash.root / "outputs").exists() and not (stash.root / "multirun").exists()
    return out.stderr


def test_unknown_tool_lists_the_registered_ones(stash):
    err = refused(stash, "tool=fz", "experiment=a")
    assert "Unknown tool 'fz'" in err and "available: fx" in err and "did you mean 'fx'" in err
    assert "?." not in err and ".." not in err


def test_unknown_experiment_lists_them_with_the_closest(stash):
    err = refused(stash, "tool=fx", "experiment=crsh")
    assert "Unknown experiment 'crsh'" in err and "did you mean 'crash'" in err and "fig1/x" in err


@pytest.mark.parametrize("args,needle", [(["experiment=a"], "No tool given"), (["tool=fx"], "No experiment given")])
def test_missing_tool_or_experiment(stash, args, needle):
    assert needle in refused(stash, *args)


@pytest.mark.parametrize("exp", ["../../meta", "/etc/passwd", "fig1/../../fx/a"])
def test_experiment_ids_that_escape_are_refused(stash, exp):
    assert "without '..'" in refused(stash, "tool=fx", f"experiment={exp}")


def test_experiment_symlink_out_of_the_folder(stash, tmp_path):
    (tmp_path / "elsewhere.yaml").write_text("value: 1\n")
    os.symlink(tmp_path / "elsewhere.yaml", stash.root / "configs/fx/experiment/out.yaml")
    assert "outside" in refused(stash, "tool=fx", "experiment=out")


def test_malformed_meta_yaml_names_file_and_line(stash):
    stash.write("configs/meta.yaml", "tools:\n  fx:\n    path: [tools/fx\n    entrypoint: tool.py\n")
    err = refused(stash, "tool=fx", "experiment=a")
    assert "configs/meta.yaml line" in err


def test_malformed_experiment_yaml_names_file_and_line(stash):
    stash.write("configs/fx/experiment/bad.yaml", "value: 1\n  nested: : x\n")
    err = refused(stash, "tool=fx", "experiment=bad")
    assert "configs/fx/experiment/bad.yaml line 2" in err


@pytest.mark.parametrize("meta,needle", [
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    overrides: value=1\n",
     "tools.fx.overrides: expected a list"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    colour: red\n", "tools.fx.colour: unknown key"),
    ("tools:\n  fx:\n    entrypoint: tool.py\n", "tools.fx.path is missing"),
    ("tools:\n  fx:\n    path: tools/fx\n", "tools.fx.entrypoint is missing"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: nope.py\n", "tools/fx/nope.py does not exist"),
    ("tools:\n  fx:\n    path: ../outside\n    entrypoint: tool.py\n", "outside the stash"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    env: {python: /no/such/python}\n",
     "/no/such/python"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    env: conda\n", "tools.fx.env"),
    ("tool:\n  fx: {}\n", "unknown key 'tool'"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: \"tool.py '\"\n", "is neither"),
    ("tools:\n  ../../escape:\n    path: tools/fx\n    entrypoint: tool.py\n", "tool name '../../escape'"),
    ("tools:\n  .hidden:\n    path: tools/fx\n    entrypoint: tool.py\n", "tool name '.hidden'"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: /usr/bin/env\n", "outside the tool's folder"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: ../../x.py\n", "outside the tool's folder"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    result: ../../secret.json\n",
     "inside the run dir"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    result: /etc/passwd\n", "inside the run dir"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    history: ../*.jsonl\n",
     "tools.fx.history: '../*.jsonl' must be a file name (or a glob) inside the run dir"),
    ("tools:\n  fx:\n    path: .\n    entrypoint: tools/fx/tool.py\n", "outside the stash"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    check_ignore: wandb/**\n",
     "tools.fx.check_ignore: expected a list of globs of run dir paths"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    check_ignore: [../**]\n",
     "tools.fx.check_ignore: '../**' must be a glob of paths inside the run dir"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    check_ignore: [/tmp/x]\n",
     "tools.fx.check_ignore: '/tmp/x' must be a glob of paths inside the run dir"),
    ("tools:\n  fx:\n    path: tools/fx\n    entrypoint: tool.py\n    check_ignore: [[a]]\n",
     "tools.fx.check_ignore: ['a'] must be a glob of paths inside the run dir"),
])
def test_bad_meta_yaml(stash, meta, needle):
    stash.write("configs/meta.yaml", meta)
    assert needle in refused(stash, "tool=fx", "experiment=a")


def test_bad_meta_local_yaml_is_named(stash):
    stash.write("configs/meta.local.yaml", "tools:\n  fx:\n    env: {python: ./venv/bin/python}\n")
    assert "venv/bin/python" in refused(stash, "tool=fx", "experiment=a")


def test_bad_pin_policy_timeout_and_grace(stash):
    assert "stash.pin=maybe" in refused(stash, "tool=fx", "experiment=a", "stash.pin=maybe")
    assert "timeout=-1" in refused(stash, "tool=fx", "experiment=a", "stash.timeout=-1")
    assert "stash.timeout=abc" in refused(stash, "tool=fx", "experiment=a", "stash.timeout=abc")
    assert "stash.grace=abc" in refused(stash, "-m", "tool=fx", "experiment=a,b", "stash.grace=abc")


def test_binary_files_are_named(stash):
    (stash.root / "configs/meta.local.yaml").write_bytes(b"\xff\xfe\x00tools")
    assert "meta.local.yaml" in refused(stash, "tool=fx", "experiment=a")
    (stash.root / "configs/meta.local.yaml").unlink()
    (stash.root / "configs/fx/experiment/bin.yaml").write_bytes(b"value: \xff\xfe\n")
    assert "bin.yaml" in refused(stash, "tool=fx", "experiment=bin")


@pytest.mark.parametrize("args,needle", [
    (["tool=fx", "experiment=."], "experiment id '.'"),
    (["tool=fx", "experiment=a", "stash.timeout=inf"], "stash.timeout=inf"),
    (["tool=fx", "experiment=a", "stash.grace=nan"], "stash.grace=nan"),
    (["tool=fx", "experiment=a", "stash.pn=strict"], "stash.pn"),
    (["-m", "tool=fx", "experiment=a", "stash.pn=strict"], "stash.pn"),
    (["-m", "tool=fx", "experiment=a", "hydra.launcher.max_parallel=abc"], "max_parallel='abc'"),
    (["-m", "tool=fx", "experiment=a", "hydra.launcher.max_parallel=1.5"], "max_parallel=1.5"),
    (["tool=fx", "experiment=a", "hydra.launcher.max_parallel=0"], "max_parallel=0"),
    (["-m", "tool=fx", "experiment=a", "hydra.launcher.paralel=2"], "hydra.launcher.paralel"),
    (["tool=fx", "experiment=a", "hydra.launcher.gpus_per_job=1"], "gpus_per_job=1 but only 0 device(s)"),
    (["-m", "tool=fx", "experiment=a", "hydra.launcher.gpus_per_job=1"], "gpus_per_job=1 but only 0 device(s)"),
    (["tool=fx", "experiment=a", "stash.reuse=1"], "stash.reuse=1: give one of true, false"),
])
def test_bad_values_before_anything_runs(stash, args, needle):
    assert needle.lower() in refused(stash, *args).lower()


def test_a_stash_without_git_warns_once_and_runs(stash):
    import shutil

    shutil.rmtree(stash.root / ".git")
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("not a git repository") == 1 and "nothing can be pinned" in out.stderr


def test_outside_a_stash(stash, tmp_path):
    out = stash.run("tool=fx", "experiment=a", cwd=tmp_path)
    assert out.returncode == 2 and "No configs/meta.yaml found" in out.stderr


@pytest.mark.parametrize("args,needle", [
    (["tool=fx", "experiment=a", "seed=range(3)"], "add -m"),
    (["tool=fx", "experiment=a,b"], "add -m"),
    (["tool=fx", "experiment=glob(*)"], "add -m"),
    (["tool=fx", "experiment=a", "--cfg", "job"], "experimentstash check"),
    (["tool=fx", "experiment=a", "--config-dir=/tmp"], "experimentstash check"),
    (["-m", "tool=fx", "experiment=a", "-cn", "other"], "experimentstash check"),
])
def test_sweep_syntax_without_m_and_hydra_flags_meant_for_the_tool(stash, args, needle):
    assert needle in refused(stash, *args)


@pytest.mark.parametrize("args,needle", [
    (["lst"], "Unknown command 'lst' (did you mean list?)"),
    (["raport", "multirun/x"], "Unknown command 'raport' (did you mean report?)"),
    (["run", "tool=fx", "experiment=a"], "a run is experimentstash tool=fx experiment=a"),
    (["fx", "a"], "Unknown command 'fx'"),
    (["tool=fx", "experiment=a", "oops"], "'oops' is neither an option nor key=value"),
    (["tool=fx", "experiment", "a"], "'experiment' is neither an option nor key=value"),
    (["-m", "tool=fx", "experiment=a,b", "seed", "3"], "'seed' is neither an option nor key=value"),
])
def test_stray_words_are_refused_before_anything_runs(stash, args, needle):
    assert needle in refused(stash, *args)


@pytest.mark.parametrize("args,needle", [
    (["hydra.job.chdir=true"], "would change only the launcher's own Hydra"),
    (["hydra.verbose=true"], "would change only the launcher's own Hydra"),
    (["hydra.job.env_set.SECRET=1"], "would change only the launcher's own Hydra"),
    (["hydra.output_subdir=.hydra"], "would change only the launcher's own Hydra"),
    (["hydra/job_logging=default"], "would change only the launcher's own Hydra"),
    (["hydra.mode=MULTIRUN"], "would change only the launcher's own Hydra"),
    (["~hydra.run.dir"], "cannot be deleted"),
    (["hydra.sweep.dir=multirun/mine"], "places a sweep (-m)"),
    (["-m", "hydra.run.dir=outputs/mine"], "places a single run"),
    (["-m", "hydra.sweep.subdir=x"], "a job's run dir is always <num>_<tool>_<experiment>"),
    (["-m", "hydra.sweeper.n_trials=3"], "the stash sweeper (the default) takes no options"),
    (["hydra/launcher=stash_slurm"], "add -m (--multirun) to run this one job there"),
])
def test_hydra_keys_the_launcher_does_not_act_on_are_refused(stash, args, needle):
    err = refused(stash, *args, "tool=fx", "experiment=a")
    assert needle in err
    if "own Hydra" in needle:
        assert "hydra.run.dir (a single run's run dir), hydra.sweep.dir (-m)" in err


@pytest.mark.parametrize("expression,needle", [
    ("experiment=sort(glob(*))", "glob() cannot go inside sort(), choice(), shuffle() or tag()"),
    ("experiment=choice(glob(*))", "glob() cannot go inside"),
    ("experiment=shuffle(a,glob(fig1/*))", "glob() cannot go inside"),
    ("experiment=tag(t,glob(*))", "glob() cannot go inside"),
    ("seed=sort(glob(*))", "glob() cannot go inside"),
    ("seed=glob(*)", "glob() matches the names of tools (tool=) and experiments (experiment=)"),
    ("seed=1,glob(*)", "glob() matches the names of tools"),
    ("experiment=a,glob(zz*)", "'experiment=a,glob(zz*)': glob(zz*) matches none of the experiments of tool 'fx'"),
    ("experiment=glob(zz*)", "glob(zz*) matches none"),
    ("experiment=interval(0,1)", "interval() needs an optimizing sweeper"),
    ("seed=tag(log,interval(0,1))", "interval() needs an optimizing sweeper"),
    ("experiment=[a,b],c", "'experiment=[a,b]': give one experiment"),
])
def test_sweep_expressions_the_launcher_cannot_run_are_one_message(stash, expression, needle):
    args = ["-m", "tool=fx", expression] + ([] if expression.startswith("experiment=") else ["experiment=a"])
    assert needle in refused(stash, *args)


def test_a_single_run_that_is_given_a_list_as_its_experiment(stash):
    assert "'experiment=[a,b]': give one experiment" in refused(stash, "tool=fx", "experiment=[a,b]")


@pytest.mark.parametrize("name", ["tab\there", "back\\slash", "price${x}", "-dash"])
def test_experiment_files_hydra_cannot_name_are_refused_at_the_registry(stash, name):
    stash.write(f"configs/fx/experiment/{name}.yaml", "value: 1\n")
    err = refused(stash, "-m", "tool=fx", "experiment=glob(*)")
    assert repr(f"configs/fx/experiment/{name}.yaml") in err and "Rename the file" in err


def alias_bomb(levels: int = 6) -> str:
    """A YAML list of a few hundred bytes whose aliases expand to 10 ** levels items."""
    items = ["&l0 [x, x, x, x, x, x, x, x, x, x]"]
    items += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("name,text", [
    ("configs/meta.yaml", META + f"local:\n  gpus: {alias_bomb()}\n"),  # a launcher option of this machine
    ("configs/meta.yaml", META + f"    description: {alias_bomb()}\n"),  # a tool key of the wrong type
    ("configs/meta.local.yaml", f"local:\n  gpus: {alias_bomb()}\n"),
    ("configs/meta.local.yaml", f"tracker: {alias_bomb()}\n"),
], ids=["meta-launcher-option", "meta-tool-key", "local-launcher-option", "local-tracker"])
def test_a_yaml_alias_bomb_is_refused_with_a_short_message(stash, name, text):
    stash.write(name, text)
    err = refused(stash, "tool=fx", "experiment=a")
    assert f"{name}: its aliases expand to more than 100000 items" in err and len(err) < 300


def test_config_files_are_read_with_limits(stash):
    stash.write("configs/meta.local.yaml", "# padding\n" * 200_000)  # 2 MB of comments
    assert "configs/meta.local.yaml: is larger than 1 MiB" in refused(stash, "tool=fx", "experiment=a")
    stash.write("configs/meta.local.yaml", "tools: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested deeper than 100 levels" in refused(stash, "tool=fx", "experiment=a")
    stash.write("configs/meta.local.yaml", "local:\n  gpus: [&x 0, " + ", ".join(["*x"] * 101) + "]\n")
    assert "more than 100 YAML aliases" in refused(stash, "tool=fx", "experiment=a")
    stash.write("configs/meta.local.yaml", "local:\n  gpus: [" + "9" * 5000 + "]\n")
    assert "meta.local.yaml: a number is too long to read" in refused(stash, "tool=fx", "experiment=a")

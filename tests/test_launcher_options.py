"""Launcher options given to `rerun` (checked as a launch's, recorded per attempt, kept for the next rerun) and
profiles (named sets of launcher options in meta.yaml), on the local backend. On Slurm: test_slurm_limits.py."""

import json

from conftest import experiment
from experimentstash.testing import run_json, sweep_dir, sweep_json

MEDIUM = experiment("sleep: 4\n")


def test_rerun_with_a_longer_timeout_succeeds_and_each_attempt_records_its_options(stash):
    stash.write("configs/fx/experiment/medium.yaml", MEDIUM)
    out = stash.run("-m", "tool=fx", "experiment=medium", "hydra.launcher.timeout=1", "stash.grace=1")
    assert out.returncode == 1
    folder = sweep_dir(stash)
    first = run_json(stash, sweep_json(stash)["jobs"][0])
    assert first["status"] == "timeout"
    assert first["launcher"]["backend"] == "local" and first["launcher"]["options"]["timeout"] == 1
    assert first["launcher"]["given"] == ["timeout"] and first["launcher"]["profile"] is None

    out = stash.run("rerun", str(folder), "hydra.launcher.timeout=60")
    assert out.returncode == 0, out.stdout + out.stderr
    data = sweep_json(stash)
    assert [j["status"] for j in data["jobs"]] == ["succeeded"]
    (entry,) = data["reruns"]
    assert entry["jobs"] == [0] and entry["overrides"] == ["hydra.launcher.timeout=60"]
    assert entry["launcher"]["timeout"] == 60 and data["launcher"]["timeout"] == 1  # the launch's stay recorded
    second = run_json(stash, data["jobs"][0])
    assert second["status"] == "succeeded" and second["launcher"]["options"]["timeout"] == 60
    earlier = json.loads((folder / "0_fx_medium.attempt1" / "run.json").read_text())
    assert earlier["launcher"]["options"]["timeout"] == 1  # the attempt moved aside keeps what produced it


def test_a_later_rerun_without_options_uses_the_last_ones(stash):
    stash.write("configs/fx/experiment/medium.yaml", MEDIUM)
    stash.run("-m", "tool=fx", "experiment=medium", "hydra.launcher.timeout=1", "stash.grace=1")
    folder = sweep_dir(stash)
    out = stash.run("rerun", str(folder), "hydra.launcher.timeout=2")
    assert out.returncode == 1  # still too short
    out = stash.run("rerun", str(folder))
    assert out.returncode == 1
    data = sweep_json(stash)
    assert [e["launcher"]["timeout"] for e in data["reruns"]] == [2, 2]
    assert run_json(stash, data["jobs"][0])["launcher"]["options"]["timeout"] == 2


def test_stash_timeout_given_to_rerun_replaces_the_jobs_own(stash):
    stash.write("configs/fx/experiment/medium.yaml", MEDIUM)
    out = stash.run("-m", "tool=fx", "experiment=medium", "stash.timeout=1", "stash.grace=1")
    assert out.returncode == 1
    out = stash.run("rerun", str(sweep_dir(stash)), "stash.timeout=60")
    assert out.returncode == 0, out.stdout + out.stderr
    (job,) = sweep_json(stash)["jobs"]
    assert job["status"] == "succeeded"
    assert [w for w in job["launch_overrides"] if w.startswith("stash.timeout")] == ["stash.timeout=60"]
    assert sweep_json(stash)["reruns"][0]["overrides"] == ["stash.timeout=60"]


def test_rerun_options_are_checked_as_a_launch_checks_them(stash):
    stash.run("-m", "tool=fx", "experiment=crash")
    folder = str(sweep_dir(stash))
    before = (sweep_dir(stash) / "sweep.json").read_text()
    for words, said in [
        (["hydra.launcher.timeout_min=5"], "Unknown launcher option 'hydra.launcher.timeout_min' of "
                                           "hydra/launcher=stash (known: max_parallel,"),
        (["hydra.launcher.max_parallel=many"], "hydra.launcher.max_parallel='many': expected a whole number"),
        (["hydra.launcher.max_parallel=0"], "hydra.launcher.max_parallel=0: give a whole number of at least 1."),
        (["stash.timeout=-3"], "stash.timeout=-3: give a finite number of seconds"),
        (["seed=3"], "'seed=3': rerun takes hydra.launcher.<option>=VALUE, stash.timeout=SECONDS and "
                     "stash.profile=NAME"),
        (["hydra.launcher.max_parallel=1,2"], "'hydra.launcher.max_parallel=1,2': give one value"),
        (["stash.profile=gpu"], "Unknown profile stash.profile='gpu' (known: none yet"),
    ]:
        out = stash.run("rerun", folder, *words)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert said in out.stderr, out.stderr
    assert (sweep_dir(stash) / "sweep.json").read_text() == before  # nothing half-written


PROFILES = """
profiles:
  short: {backend: local, timeout: 1, max_parallel: 1}
  wide: {max_parallel: 3}
  cluster: {backend: slurm, partition: debug}
"""


def test_a_profile_gives_its_options_under_the_command_line_and_over_the_machine_defaults(stash):
    stash.write("configs/meta.local.yaml", "local:\n  timeout: 100\n  max_parallel: 2\n" + PROFILES)
    stash.write("configs/fx/experiment/medium.yaml", MEDIUM)
    out = stash.run("-m", "tool=fx", "experiment=medium", "stash.profile=short", "hydra.launcher.max_parallel=2",
                    "stash.grace=1")
    assert out.returncode == 1  # the profile's 1 s, not the machine's 100 s
    data = sweep_json(stash)
    assert data["profile"] == "short"
    assert data["launcher"]["timeout"] == 1 and data["launcher"]["max_parallel"] == 2  # command line over profile
    assert [j["status"] for j in data["jobs"]] == ["timeout"]
    launcher = run_json(stash, data["jobs"][0])["launcher"]
    assert launcher["profile"] == "short" and launcher["options"]["timeout"] == 1

    out = stash.run("rerun", str(sweep_dir(stash)), "stash.profile=wide")
    assert out.returncode == 1  # the profile without a timeout keeps the last attempt's
    (entry,) = sweep_json(stash)["reruns"]
    assert entry["profile"] == "wide" and entry["launcher"]["max_parallel"] == 3 and entry["launcher"]["timeout"] == 1


def test_an_unknown_profile_lists_the_known_ones(stash):
    stash.write("configs/meta.yaml", stash.root.joinpath("configs/meta.yaml").read_text() + PROFILES)
    out = stash.run("-m", "tool=fx", "experiment=a", "stash.profile=a100")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Unknown profile stash.profile='a100' (known: cluster, short, wide)." in out.stderr
    assert not (stash.root / "multirun").exists()


def test_a_profile_of_another_backend_than_the_one_chosen_is_refused(stash):
    stash.write("configs/meta.yaml", stash.root.joinpath("configs/meta.yaml").read_text() + PROFILES)
    out = stash.run("-m", "hydra/launcher=stash", "tool=fx", "experiment=a", "stash.profile=cluster")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "stash.profile=cluster is a profile of the slurm backend, but these jobs run on the local backend" in \
        out.stderr


def test_a_profile_with_an_option_its_backend_does_not_have_is_refused(stash):
    stash.write("configs/meta.local.yaml", "profiles:\n  odd: {backend: local, partition: gpu}\n")
    out = stash.run("-m", "tool=fx", "experiment=a", "stash.profile=odd")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Unknown option 'partition' in profile 'odd' in configs/meta.yaml or meta.local.yaml" in out.stderr


def test_profiles_that_are_not_a_mapping_are_refused_naming_the_file(stash):
    stash.write("configs/meta.local.yaml", "profiles: [a100]\n")
    out = stash.run("-m", "tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'profiles' must map profile names to launcher options" in out.stderr


def test_a_profile_as_hydra_launcher_points_to_stash_profile(stash):
    stash.write("configs/meta.local.yaml", PROFILES)
    out = stash.run("-m", "hydra/launcher=short", "tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "hydra/launcher=short: 'short' is a profile (configs/meta.yaml or meta.local.yaml): choose it with " \
           "stash.profile=short." in out.stderr


def test_an_unknown_hydra_launcher_points_to_profiles(stash):
    out = stash.run("-m", "hydra/launcher=a100", "tool=fx", "experiment=a")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "hydra/launcher=a100: no such launcher (launchers: basic," in out.stderr
    assert "A named set of launcher options is a profile: `profiles:` in configs/meta.yaml or meta.local.yaml, " \
           "chosen with stash.profile=NAME (profiles: none yet)." in out.stderr


def test_a_damaged_rerun_entry_is_refused_naming_the_field(stash):
    stash.run("-m", "tool=fx", "experiment=crash")
    path = sweep_dir(stash) / "sweep.json"
    data = json.loads(path.read_text())
    data["reruns"] = [{"at": "2026-01-01T00:00:00Z", "jobs": [0], "launcher": "--upload-pack=x"}]
    path.write_text(json.dumps(data))
    for command in ("status", "rerun"):
        out = stash.run(command, str(sweep_dir(stash)))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "field 'reruns[0].launcher': expected a mapping" in out.stderr, out.stderr

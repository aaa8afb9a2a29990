"""Sweeps through the launcher plugin: real parallel subprocesses of a real Hydra tool."""

import json
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from conftest import experiment, git, pid_alive


def sweep_dir(stash) -> Path:
    (folder,) = (stash.root / "multirun").iterdir()
    return folder


def sweep_json(stash) -> dict:
    return json.loads((sweep_dir(stash) / "sweep.json").read_text())


def seen(stash, job) -> dict:
    return json.loads((stash.root / job["run_dir"] / "seen.json").read_text())


def when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_plugin_is_listed_by_hydra(stash):
    out = stash.run("--info", "plugins")
    assert out.returncode == 0
    assert "StashLauncher" in out.stdout and "StashSweeper" in out.stdout


def test_experiments_run_in_parallel(stash):
    out = stash.run("-m", "tool=fx", "experiment=a,b,c", "sleep=1", "hydra.launcher.max_parallel=3")
    assert out.returncode == 0, out.stderr
    assert "Rerun:" not in out.stdout  # every job succeeded
    records = stash.runs("multirun")
    assert len(records) == 3
    # overlap from the recorded times: every job started before any ended
    assert max(when(r["started_at"]) for r in records) < min(when(r["ended_at"]) for r in records)
    assert (sweep_dir(stash) / "0_fx_a" / "run.json").is_file()


def test_fail_fast_stops_the_rest(stash):
    start = time.monotonic()
    out = stash.run("-m", "tool=fx", "experiment=crash,slow,slow,a", "hydra.launcher.fail_fast=true",
                    "hydra.launcher.max_parallel=3", "stash.grace=1")
    assert time.monotonic() - start < 25
    assert out.returncode == 1
    statuses = [j["status"] for j in sweep_json(stash)["jobs"]]
    assert statuses[0] == "failed" and statuses[1:3] == ["interrupted", "interrupted"]
    assert statuses[3] in ("cancelled", "interrupted")
    if statuses[3] == "cancelled":  # never started: no run dir, and the table says so
        assert not (sweep_dir(stash) / "3_fx_a").exists()
        (row,) = [line for line in out.stdout.splitlines() if "│ 3 " in line]
        assert row.rstrip(" │").endswith("-")


def test_rerun_uses_the_options_the_sweep_recorded(stash):
    """The command line's options win over this machine's defaults, at launch and again at rerun."""
    stash.write("configs/meta.local.yaml", "local:\n  timeout: 100\n")
    stash.write("configs/fx/experiment/medium.yaml", "# @package _global_\ndefaults:\n  - /config\n  - _self_\n"
                "sleep: 6\n")
    out = stash.run("-m", "tool=fx", "experiment=medium", "hydra.launcher.timeout=2", "stash.grace=1")
    assert out.returncode == 1
    data = sweep_json(stash)
    assert data["launcher"]["timeout"] == 2 and data["given"] == ["timeout"]
    assert [j["status"] for j in data["jobs"]] == ["timeout"]
    rerun = stash.run("rerun", str(sweep_dir(stash)))
    assert rerun.returncode == 1  # timed out again after 2 s: not the 100 s of meta.local.yaml
    assert [j["status"] for j in sweep_json(stash)["jobs"]] == ["timeout"]


def test_a_sweep_that_did_not_fully_succeed_ends_with_the_command_that_retries_it(stash):
    out = stash.run("-m", "tool=fx", "experiment=a,crash")
    assert out.returncode == 1
    rerun = f"Rerun:   experimentstash rerun multirun/{sweep_json(stash)['id']}"
    lines = out.stdout.splitlines()
    assert lines[-3:] == [lines[-3], lines[-2], rerun] and lines[-3].startswith("Compare: ")
    status = stash.run("status", str(sweep_dir(stash)))
    assert status.stdout.splitlines()[-1] == rerun


def test_jobs_that_never_started_show_no_duration_and_no_run_dir(stash):
    out = stash.run("-m", "tool=fx", "experiment=crash,a,b", "hydra.launcher.fail_fast=true",
                    "hydra.launcher.max_parallel=1")
    assert out.returncode == 1
    assert [j["status"] for j in sweep_json(stash)["jobs"]] == ["failed", "cancelled", "cancelled"]
    progress = [line for line in out.stderr.splitlines() if line.startswith("[")]
    assert progress[0].startswith("[1/3] failed job 0 fx crash (") and progress[0].endswith("/0_fx_crash")
    assert sorted(progress[1:]) == ["[2/3] cancelled job 1 fx a -", "[3/3] cancelled job 2 fx b -"]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.stdout.splitlines()
            if line.startswith("│") and "cancelled" in line]
    assert [row[4:] for row in rows] == [["cancelled", "", "-"]] * 2  # status, duration, run dir


def test_timeout_per_job(stash):
    out = stash.run("-m", "tool=fx", "experiment=slow,a", "hydra.launcher.timeout=4", "stash.grace=1")
    assert out.returncode == 1
    assert [j["status"] for j in sweep_json(stash)["jobs"]] == ["timeout", "succeeded"]


def test_each_job_gets_its_own_gpus(stash):
    out = stash.run("-m", "tool=fx", "experiment=a", "seed=range(4)", "sleep=1",
                    "hydra.launcher.gpus=[0,1,2,3]", "hydra.launcher.gpus_per_job=2", "hydra.launcher.max_parallel=4")
    assert out.returncode == 0, out.stderr
    jobs = sweep_json(stash)["jobs"]
    spans = [(seen(stash, j)["cuda"], seen(stash, j)["started"], seen(stash, j)["ended"]) for j in jobs]
    assert all(len(cuda.split(",")) == 2 for cuda, _, _ in spans)
    assert {cuda for cuda, _, _ in spans} == {"0,1", "2,3"}
    for i, (cuda, start, end) in enumerate(spans):  # jobs running at the same time never share a device
        for other, o_start, o_end in spans[i + 1:]:
            if start < o_end and o_start < end:
                assert not set(cuda.split(",")) & set(other.split(","))
    records = stash.runs("multirun")
    assert all(r["env"]["variables"]["CUDA_VISIBLE_DEVICES"] in ("0,1", "2,3") for r in records)


def test_glob_over_experiments_and_subfolders(stash):
    out = stash.run("-m", "tool=fx", "experiment=glob(fig1/*)")
    assert out.returncode == 0, out.stderr
    assert [j["experiment"] for j in sweep_json(stash)["jobs"]] == ["fig1/x", "fig1/y"]
    assert (sweep_dir(stash) / "0_fx_fig1-x").is_dir()


def test_glob_with_exclude_and_tool_key_range(stash):
    out = stash.run("-m", "tool=fx", "experiment=glob(*,exclude=[crash,slow,fig1/*])", "seed=range(2)")
    assert out.returncode == 0, out.stderr
    jobs = sweep_json(stash)["jobs"]
    assert [(j["experiment"], j["overrides"]) for j in jobs] == [
        (e, [f"seed={s}"]) for e in ("a", "b", "c") for s in (0, 1)]


def test_a_list_of_ids_and_globs_runs_each_experiment_once(stash):
    out = stash.run("-m", "tool=fx", "experiment=c,glob(fig1/*),a,glob(?)")
    assert out.returncode == 0, out.stderr
    assert [j["experiment"] for j in sweep_json(stash)["jobs"]] == ["c", "fig1/x", "fig1/y", "a", "b"]


def test_ids_that_hydra_reads_specially_reach_every_record_as_they_are(stash):
    """glob() gives every id to Hydra's grammar quoted; the records, the tool and a rerun get it back exactly."""
    names = ["a,b", "it's", 'say "x"', "with space", "1", "null", "café", "x]y"]
    for value, name in enumerate(names, start=20):
        crash = "true" if name == "it's" else "false"
        stash.write(f"configs/fx/experiment/odd/{name}.yaml", experiment(f"value: {value}\ncrash: {crash}\n"))
    out = stash.run("-m", "tool=fx", "experiment=glob(odd/*)")
    assert out.returncode == 1, out.stderr  # odd/it's crashes
    ids = sorted(f"odd/{name}" for name in names)
    jobs = sweep_json(stash)["jobs"]
    assert [j["experiment"] for j in jobs] == ids
    for job in jobs:
        record = json.loads((stash.root / job["run_dir"] / "run.json").read_text())
        assert record["experiment"] == job["experiment"]
        assert job["status"] == ("failed" if job["experiment"] == "odd/it's" else "succeeded")
        assert seen(stash, job)["cfg"]["value"] == 20 + names.index(job["experiment"][len("odd/"):])
    rerun = stash.run("rerun", str(sweep_dir(stash)))
    assert rerun.returncode == 1, rerun.stderr
    (job,) = [j for j in sweep_json(stash)["jobs"] if j["experiment"] == "odd/it's"]
    assert json.loads((stash.root / job["run_dir"] / "run.json").read_text())["experiment"] == "odd/it's"
    assert (stash.root / (job["run_dir"] + ".attempt1")).is_dir()


def test_tool_key_sweep_gives_one_run_per_value(stash):
    out = stash.run("-m", "tool=fx", "experiment=a", "value=1,2,3", "+tag=x")
    assert out.returncode == 0, out.stderr
    jobs = sweep_json(stash)["jobs"]
    assert [j["overrides"] for j in jobs] == [["value=1", "+tag=x"], ["value=2", "+tag=x"], ["value=3", "+tag=x"]]
    assert [seen(stash, j)["overrides"] for j in jobs] == [j["overrides"] for j in jobs]
    assert [seen(stash, j)["cfg"]["value"] for j in jobs] == [1, 2, 3]


def test_optuna_sweeper_gets_results_through_the_launcher(stash):
    out = stash.run("-m", "tool=fx", "experiment=a", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=6",
                    "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=1",
                    "value=range(1,5)", "sleep=0", "stash.objective=score")
    assert out.returncode == 0, out.stderr
    best = yaml.safe_load((sweep_dir(stash) / "optimization_results.yaml").read_text())
    records = stash.runs("multirun")
    assert len(records) == 6
    assert best["best_value"] == max(r["result"]["score"] for r in records)
    assert best["best_value"] == 2 * best["best_params"]["++value"]
    assert all(r["overrides"][0].startswith("++value=") and r["overrides"][1:] == ["sleep=0"] for r in records)
    assert out.stdout.count("┏") == 1  # the table once, at the end, not once per batch
    params = " ".join(f"{k}={v}" for k, v in best["best_params"].items())
    assert f"best value {best['best_value']} with {params}" in out.stdout + out.stderr


# SIGINT: test_backends.py, for every backend
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_ends_every_job_and_leaves_no_process(stash, sig, code):
    proc = stash.popen("-m", "tool=fx", "experiment=slow", "seed=range(3)", "spawn_child=true", "ignore_term=true",
                       "hydra.launcher.max_parallel=3", "stash.grace=1")
    deadline = time.monotonic() + 60
    while len(list((stash.root / "multirun").rglob("seen.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    saw = [json.loads(p.read_text()) for p in (stash.root / "multirun").rglob("seen.json")]
    assert len(saw) == 3
    proc.send_signal(sig)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == code
    assert [j["status"] for j in sweep_json(stash)["jobs"]] == ["interrupted"] * 3
    assert {r["status"] for r in stash.runs("multirun")} == {"interrupted"}
    assert "3 jobs: 3 interrupted" in stdout
    for tool_saw in saw:
        assert not pid_alive(tool_saw["pid"]) and not pid_alive(tool_saw["child_pid"])


# --- bad input ------------------------------------------------------------------------------------------------

def refused(stash, *args):
    out = stash.run(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    assert not (stash.root / "multirun").exists() or not any((stash.root / "multirun").rglob("run.json"))
    return out.stderr


def test_one_unknown_experiment_means_nothing_starts(stash):
    err = refused(stash, "-m", "tool=fx", "experiment=a,b,nope,c")
    assert "Job 2" in err and "Unknown experiment 'nope'" in err and "Nothing was started" in err


def test_unknown_tool_in_a_tool_sweep(stash):
    assert "Unknown tool 'fy'" in refused(stash, "-m", "tool=fx,fy", "experiment=a")


@pytest.mark.parametrize("option,needle", [
    ("hydra.launcher.max_parallel=0", "max_parallel=0"),
    ("hydra.launcher.timeout=-5", "timeout=-5"),
    ("hydra.launcher.gpus_per_job=3", "gpus_per_job=3"),
])
def test_bad_launcher_options(stash, option, needle):
    args = ["-m", "tool=fx", "experiment=a", option]
    if "gpus_per_job" in option:
        args.append("hydra.launcher.gpus=[0,1]")
    assert needle in refused(stash, *args)


def test_rerun_of_a_folder_that_is_not_a_sweep(stash):
    assert "not a sweep dir" in refused(stash, "rerun", str(stash.root / "configs"))


def test_another_launcher_runs_the_meta_app_with_tool_overrides(stash):
    out = stash.run("-m", "tool=fx", "experiment=a", "value=1,2", "+tag=x", "~seed", "hydra/launcher=basic")
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("warning: hydra/launcher=basic runs every job as a single run under outputs/: no "
                                 "sweep.json, no table at the end, no rerun, status or report of the sweep. The "
                                 "default launcher (hydra/launcher=stash) gives them all.\n")
    records = stash.runs()  # the basic launcher runs the task function: single runs under outputs/
    assert sorted(r["overrides"] for r in records) == [["++value=1", "++tag=x", "~seed"],
                                                       ["++value=2", "++tag=x", "~seed"]]
    assert sorted(r["result"]["score"] for r in records) == [2.0, 4.0]
    assert not (stash.root / "multirun").exists() or not any((stash.root / "multirun").iterdir())  # no empty job dirs


def test_relative_sweep_dir_is_relative_to_where_the_command_was_typed(stash):
    before = git(stash.tool, "status", "--porcelain", "--ignored")
    out = stash.run("-m", "tool=fx", "experiment=a", "hydra.sweep.dir=mine/first")
    assert out.returncode == 0, out.stderr
    assert json.loads((stash.root / "mine/first/0_fx_a/result.json").read_text())["score"] == 2.0
    assert git(stash.tool, "status", "--porcelain", "--ignored") == before


def test_tool_keys_that_begin_like_launcher_keys_reach_the_tool(stash):
    out = stash.run("-m", "tool=fx", "experiment=a", "+hydration=1", "+stashed=2", "+tooling=3")
    assert out.returncode == 0, out.stderr
    (job,) = sweep_json(stash)["jobs"]
    assert seen(stash, job)["overrides"] == ["+hydration=1", "+stashed=2", "+tooling=3"]


def test_what_a_finished_job_left_running_is_ended(stash):
    out = stash.run("-m", "tool=fx", "experiment=a,b", "spawn_child=true", "stash.grace=1")
    assert out.returncode == 0, out.stderr
    for job in sweep_json(stash)["jobs"]:
        assert not pid_alive(seen(stash, job)["child_pid"])
        assert job["duration_s"] < 8  # the child holding the job's output did not hold up its end


def test_a_failed_job_under_another_launcher_fails_the_sweep(stash):
    out = stash.run("-m", "tool=fx", "experiment=a,crash", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert out.returncode != 0
    assert out.stderr.count("warning: hydra/launcher=joblib runs every job as a single run under outputs/") == 1
    assert sorted(r["status"] for r in stash.runs()) == ["failed", "succeeded"]


def test_files_written_into_the_checkout_during_a_sweep_are_named_once(stash):
    out = stash.run("-m", "tool=fx", "experiment=a,b", "litter=true", "hydra.launcher.max_parallel=1")
    assert out.returncode == 0, out.stderr
    assert (out.stdout + out.stderr).count("wrote into the tool's checkout tools/fx: litter.txt") == 1
    touched = [r["tool_touched"] for r in stash.runs("multirun")]
    assert sorted(touched) == [[], ["litter.txt"]]


def test_status_of_a_sweep_with_thousands_of_failed_jobs_is_bounded(stash):
    """The table lists at most 100 jobs and the logs of the first 10 failures, then counts the rest."""
    jobs = 20_000
    folder = stash.root / "multirun" / "big"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({
        "schema": 2, "id": "big", "created_at": "2025-01-01T00:00:00.000Z", "backend": "local",
        "command_line": ["-m", "tool=fx", "experiment=crash", f"seed=range({jobs})"], "launcher": {}, "given": [],
        "backend_state": {}, "reruns": [],
        "jobs": [{"num": i, "tool": "fx", "experiment": "crash", "overrides": [f"seed={i}"],
                  "run_dir": f"multirun/big/{i}_fx_crash", "status": "failed", "exit_code": 3, "duration_s": 0.5,
                  "launch_overrides": ["tool=fx", "experiment=crash", f"seed={i}"]} for i in range(jobs)]}))
    out = stash.run("status", "multirun/big", timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) < 200
    assert out.stdout.count("last lines of multirun/big/") == 10
    assert (f"... and {jobs - 10} more jobs failed or timed out: each one's log is "
            "multirun/big/<#>_<tool>_<experiment>/stderr.log.") in out.stdout
    assert f"{jobs} jobs: {jobs} failed (table lists the first 100 of the {jobs} that did not succeed)" in out.stdout
    rows = [line for line in out.stdout.splitlines() if "│ crash " in line]
    assert len(rows) == 100 and "│ 99 " in rows[-1]


ENTRY_KEYS = ["num", "tool", "experiment", "overrides", "run_dir", "status", "exit_code", "duration_s", "ended_at",
              "launch_overrides"]


def test_sweep_json_entries_keep_their_keys_and_order(stash):
    """Scripts read sweep.json: each job entry has the same keys in the same order, as launched and once `status`
    has read it back and found it true."""
    out = stash.run("-m", "tool=fx", "experiment=a,crash")
    assert out.returncode == 1, out.stderr
    assert [list(job) for job in sweep_json(stash)["jobs"]] == [ENTRY_KEYS, ENTRY_KEYS]
    text = (sweep_dir(stash) / "sweep.json").read_text()
    assert text.count("\n    {") == 2  # one line per job
    status = stash.run("status", str(sweep_dir(stash)))
    assert status.returncode == 0, status.stderr
    assert (sweep_dir(stash) / "sweep.json").read_text() == text

"""Runs in the user's experiment tracker: W&B in offline mode (no network), MLflow against a real tracking server
on 127.0.0.1; a tool's `workdir`. Skipped where wandb / mlflow are not installed, except in CI
(EXPERIMENTSTASH_REQUIRE_TRACKERS=1), where they must run."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from conftest import META, REPO, experiment, git
from test_slurm import SLURM, sweep_dir

REQUIRED = os.environ.get("EXPERIMENTSTASH_REQUIRE_TRACKERS") == "1"
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None and not REQUIRED,
                                 reason="wandb is not installed (pip install -e '.[test]')")
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None and not REQUIRED,
                                  reason="mlflow is not installed (pip install -e '.[test]')")

# a tool package (run as `-m tr.app`) that calls the trackers' SDKs the way research tools do
TRACKED_TOOL = '''
import json, os, sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    seen = {"cwd": os.getcwd()}
    if cfg.count_runs:  # the MLflow runs of jobs that exist when this one starts
        from mlflow.tracking import MlflowClient

        seen["runs_at_start"] = len(MlflowClient().search_runs([os.environ["MLFLOW_EXPERIMENT_ID"]],
                                                               "tags.`experimentstash.kind` = 'job'"))
    if cfg.use_wandb:
        import wandb

        run = wandb.init(config={"value": cfg.value}, dir=os.environ.get("WANDB_DIR", "logs"))  # as manylatents
        seen["wandb"] = {"group": run.group, "name": run.name, "tags": list(run.tags), "id": run.id,
                         "dir": run.dir, "job_type": run.job_type, "notes": run.notes, "project": run.project}
        if cfg.save:  # manylatents' save_outputs callback
            save_path = out / "embeddings.txt"
            save_path.write_text("0.1 0.2")
            wandb.save(os.path.relpath(save_path, os.getcwd()), base_path=os.getcwd())
        run.finish()
    if cfg.use_mlflow:
        import mlflow

        with mlflow.start_run() as run:
            mlflow.log_metric("from_tool", 1.5)
            seen["mlflow_run_id"] = run.info.run_id
    (out / "seen.json").write_text(json.dumps(seen))
    if cfg.crash:
        sys.exit(3)
    (out / "result.json").write_text(json.dumps({"score": cfg.value * 2, "eval": {"loss": [0.9, 0.5]}, "label": "x"}))


if __name__ == "__main__":
    main()
'''
TRACKED_CONFIG = "value: 1\ncrash: false\nuse_wandb: false\nuse_mlflow: false\nsave: false\ncount_runs: false\n"
TR = """\
  tr:
    path: tools/tr
    entrypoint: -m tr.app
    env: current
    result: result.json
"""


def add_tracked_tool(stash, tool_extra: str = "", top: str = "") -> Path:
    """Tool `tr` as a second submodule, registered with `tool_extra` lines; `top`: top-level meta.yaml keys."""
    repo = stash.root.parent / "tr-repo"
    (repo / "tr" / "conf").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "tr" / "__init__.py").write_text("")
    (repo / "tr" / "app.py").write_text(TRACKED_TOOL)
    (repo / "tr" / "conf" / "config.yaml").write_text(TRACKED_CONFIG)
    (repo / ".gitignore").write_text("__pycache__/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tracked tool")
    git(stash.root, "submodule", "add", "-q", str(repo), "tools/tr")
    stash.write("configs/meta.yaml", top + META + TR + tool_extra)
    for name, body in {"a": "value: 1\n", "b": "value: 2\n", "crash": "crash: true\n"}.items():
        stash.write(f"configs/tr/experiment/{name}.yaml", experiment(body))
    stash.commit("tool tr")
    return stash.root / "tools" / "tr"


def wandb_env(tmp_path: Path) -> dict:
    """Offline W&B whose own settings and caches stay in the test's folder; a key that must never be recorded."""
    folders = {k: str(tmp_path / "wandb-home" / k.lower()) for k in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR",
                                                                        "WANDB_DATA_DIR")}
    return {"WANDB_MODE": "offline", "WANDB_API_KEY": "secret-" + "k" * 33, "WANDB_SILENT": "true", **folders}


def job_dirs(stash) -> list[Path]:
    return sorted((p for p in sweep_dir(stash).iterdir() if p.is_dir() and "." not in p.name),  # not earlier attempts
                  key=lambda p: int(p.name.split("_")[0]))


def checkout_untouched(tool: Path) -> None:
    assert git(tool, "status", "--porcelain", "--ignored") == ""  # nothing new, not even ignored files
    assert not (tool / "wandb").exists() and not (tool / "logs").exists()


# --- W&B ------------------------------------------------------------------------------------------------------

@needs_wandb
def test_wandb_runs_of_a_sweep_are_grouped_named_and_tagged_and_their_files_stay_in_the_run_dirs(stash, tmp_path):
    tool = add_tracked_tool(stash, top="tracker: wandb\nwandb:\n  project: stash-tests\n")
    env = {**wandb_env(tmp_path), "WANDB_JOB_TYPE": "mine"}  # the user's own setting wins over the launcher's
    out = stash.run("-m", "tool=tr", "experiment=a,crash", "value=1,2", "use_wandb=true", env=env, timeout=300)
    assert out.returncode == 1, out.stderr  # the two crash jobs
    sweep = json.loads((sweep_dir(stash) / "sweep.json").read_text())
    commit = git(tool, "rev-parse", "HEAD")
    for run_dir, name in zip(job_dirs(stash), ["a value=1", "a value=2", "crash value=1", "crash value=2"]):
        seen = json.loads((run_dir / "seen.json").read_text())["wandb"]
        record = json.loads((run_dir / "run.json").read_text())
        assert seen["group"] == sweep["id"]
        assert seen["name"] == name
        assert seen["tags"] == [f"tr@{commit[:7]}", name.split()[0]]
        assert seen["id"] == record["id"] == f"{sweep['id']}_{run_dir.name.split('_')[0]}"
        assert seen["job_type"] == "mine"
        assert seen["notes"] == str(run_dir)
        assert seen["project"] == "stash-tests"
        assert Path(seen["dir"]).is_relative_to(run_dir / "wandb")  # W&B's files are in the run dir
        variables = record["env"]["variables"]
        assert variables["WANDB_RUN_GROUP"] == sweep["id"] and variables["WANDB_RESUME"] == "allow"
        assert variables["WANDB_DIR"] == str(run_dir)
        assert "WANDB_JOB_TYPE" not in variables and "WANDB_MODE" not in variables  # the user's, not recorded
        assert "secret-" not in (run_dir / "run.json").read_text()
    checkout_untouched(tool)

    # a rerun attempt is a W&B run of its own, in the same group
    out = stash.run("rerun", str(sweep_dir(stash)), env=env, timeout=300)
    assert out.returncode == 1, out.stderr
    for run_dir in job_dirs(stash)[2:]:
        seen = json.loads((run_dir / "seen.json").read_text())["wandb"]
        assert seen["id"] == f"{sweep['id']}_{run_dir.name.split('_')[0]}-attempt2"
        assert seen["group"] == sweep["id"]
        assert json.loads((run_dir.with_name(run_dir.name + ".attempt1") / "seen.json").read_text())["wandb"]["id"] \
            == f"{sweep['id']}_{run_dir.name.split('_')[0]}"


@needs_wandb
def test_wandb_single_run_is_its_own_group_and_a_dirty_tool_is_tagged(stash, tmp_path):
    tool = add_tracked_tool(stash, tool_extra="    tracker: wandb\n")
    (tool / "NOTES.txt").write_text("uncommitted\n")
    out = stash.run("tool=tr", "experiment=b", "value=5", "use_wandb=true", env=wandb_env(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    run_dir = stash.root / record["run_dir"]
    seen = json.loads((run_dir / "seen.json").read_text())["wandb"]
    assert seen["group"] == seen["id"] == record["id"] == run_dir.name
    assert seen["name"] == "b value=5 use_wandb=true"
    assert seen["tags"] == [f"tr@{record['tool_commit'][:7]}", "b", "dirty"]
    assert "WANDB_PROJECT" not in record["env"]["variables"]  # none configured: W&B's own default


@needs_wandb
def test_tracker_on_the_command_line_and_a_tool_whose_wandb_is_missing(stash, tmp_path):
    add_tracked_tool(stash)
    out = stash.run("tool=tr", "experiment=a", "use_wandb=true", "stash.tracker=wandb", env=wandb_env(tmp_path),
                    timeout=300)
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    assert record["env"]["variables"]["WANDB_RUN_ID"] == record["id"]

    # an interpreter without wandb: one message before anything runs
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    stash.write("configs/meta.local.yaml", f"tools:\n  tr:\n    env: {{python: {venv}/bin/python}}\n")
    out = stash.run("tool=tr", "experiment=a", "stash.tracker=wandb", env=wandb_env(tmp_path))
    assert out.returncode == 2
    assert "wandb is not installed in its environment" in out.stderr and "Traceback" not in out.stderr
    assert len(stash.runs()) == 1


@needs_wandb
def test_workdir_run_dir_lets_a_tool_save_its_outputs_with_wandb(stash, tmp_path):
    tool = add_tracked_tool(stash)
    args = ("tool=tr", "experiment=a", "use_wandb=true", "save=true", "stash.tracker=wandb")
    # from the tool's folder, the run dir is above W&B's base path: the tool fails
    out = stash.run(*args, env=wandb_env(tmp_path), timeout=300)
    assert out.returncode != 0
    assert "Glob may not walk above the base path" in out.stderr

    stash.write("configs/meta.local.yaml", "tools:\n  tr:\n    workdir: run_dir\n")
    out = stash.run(*args, env=wandb_env(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr
    record = stash.runs()[-1]
    run_dir = stash.root / record["run_dir"]
    assert json.loads((run_dir / "seen.json").read_text())["cwd"] == str(run_dir)
    assert record["cwd"] == record["run_dir"]
    assert record["env"]["variables"]["PYTHONPATH"].split(os.pathsep)[0] == str(tool)  # `-m tr.app` still imports
    saved = list((run_dir / "wandb").glob("offline-run-*/files/embeddings.txt"))
    assert len(saved) == 1 and saved[0].read_text() == "0.1 0.2"
    checkout_untouched(tool)


def test_workdir_run_dir_for_a_script_tool_and_no_tracker_imported_without_one(stash):
    stash.write("configs/meta.yaml", META + "    workdir: run_dir\n")
    stash.commit("fx starts in its run dir")
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "experimentstash", "tool=fx", "experiment=a"],
                         cwd=stash.root, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    run_dir = stash.root / record["run_dir"]
    assert json.loads((run_dir / "seen.json").read_text())["cwd"] == str(run_dir)
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "experimentstash.launch.single" in imported  # the import list is there, and holds no tracker
    assert not {name for name in imported if name.split(".")[0] in ("wandb", "mlflow")}
    assert "experimentstash.launch.trackers" not in imported
    assert not [k for k in record["env"]["variables"] if k.startswith(("WANDB_", "MLFLOW_"))]


@pytest.mark.parametrize("meta, said", [
    ("tracker: comet\n", "tracker: expected none, wandb, mlflow, got 'comet'"),
    ("wandb:\n  projekt: x\n", "wandb.projekt: unknown key (known: project, entity)"),
    ("mlflow: http://localhost\n", "mlflow: expected a mapping with tracking_uri and/or experiment"),
    ("mlflow:\n  experiment: 3\n", "mlflow.experiment: expected text, got 3"),
])
def test_bad_tracker_settings_are_one_message(stash, meta, said):
    stash.write("configs/meta.yaml", meta + META)
    out = stash.run("tool=fx", "experiment=a")
    assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr
    assert not (stash.root / "outputs").exists()


@pytest.mark.parametrize("extra, args, said", [
    ("    workdir: elsewhere\n", (), "tools.fx.workdir: expected 'tool' or 'run_dir', got 'elsewhere'"),
    ("    tracker: [wandb]\n", (), "tools.fx.tracker: expected 'none', 'wandb' or 'mlflow'"),
    ("    wandb: {entity: 3}\n", (), "tools.fx.wandb.entity: expected text, got 3"),
    ("", ("stash.tracker=comet",), "stash.tracker=comet: give one of none, wandb, mlflow"),
])
def test_bad_tool_tracker_settings_are_one_message(stash, extra, args, said):
    stash.write("configs/meta.yaml", META + extra)
    for multirun in ((), ("-m",)):
        out = stash.run(*multirun, "tool=fx", "experiment=a", *args)
        assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr
    assert not (stash.root / "outputs").exists() and not (stash.root / "multirun").exists()


# --- MLflow ---------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A real MLflow tracking server (sqlite backend store) on 127.0.0.1 with its state in `folder`, and its URI."""
    port = free_port()
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its workers end with its group
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    log.close()
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                return proc, uri
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_mlflow_server(proc)
            pytest.fail(f"the MLflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)


def stop_mlflow_server(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server for the whole test session."""
    proc, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield uri
    stop_mlflow_server(proc)


def mlflow_meta(uri: str, experiment_name: str) -> str:
    return f"tracker: mlflow\nmlflow:\n  tracking_uri: {uri}\n  experiment: {experiment_name}\n"


def mlflow_runs(uri: str, experiment_name: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment_name)
    assert found is not None, f"no experiment {experiment_name}"
    return client.search_runs([found.experiment_id], max_results=100)


def metric_history(uri: str, run_id: str, key: str) -> list[float]:
    from mlflow.tracking import MlflowClient

    return [m.value for m in sorted(MlflowClient(uri).get_metric_history(run_id, key), key=lambda m: m.step)]


@needs_mlflow
def test_mlflow_sweep_has_a_parent_run_and_a_child_run_per_job_with_results_and_statuses(stash, mlflow_server):
    name = f"sweep-{os.getpid()}-{time.monotonic_ns()}"
    stash.write("configs/meta.yaml", mlflow_meta(mlflow_server, name) + META)
    stash.commit("report to MLflow")
    out = stash.run("-m", "tool=fx", "experiment=a,b,crash", "seed=7", timeout=300)
    assert out.returncode == 1, out.stderr
    assert "View run" not in out.stdout + out.stderr  # MLflow's client prints nothing into the launcher's output
    runs = mlflow_runs(mlflow_server, name)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(runs) == 4 and len(children) == 3
    folder = sweep_dir(stash)
    assert parent.info.run_name == folder.name
    assert parent.data.tags["experimentstash.sweep_dir"] == str(folder)
    assert parent.info.status == "FAILED"  # one job failed
    expected = {"a": ("FINISHED", {"score": 2.0}), "b": ("FINISHED", {"score": 4.0}), "crash": ("FAILED", {})}
    for run_dir in job_dirs(stash):
        record = json.loads((run_dir / "run.json").read_text())
        child = children[record["env"]["variables"]["MLFLOW_RUN_ID"]]
        status, metrics = expected[record["experiment"]]
        assert child.info.status == status and child.data.metrics == metrics
        assert child.info.run_name == record["experiment"]  # seed=7 is the same in every job
        assert child.data.params == {"seed": "7"}
        tags = child.data.tags
        assert tags["mlflow.source.git.commit"] == record["tool_commit"] != record["stash_commit"]
        assert tags["experimentstash.run_dir"] == str(run_dir)
        assert tags["experimentstash.stash_commit"] == record["stash_commit"]
        assert tags["experimentstash.status"] == record["status"]
        assert record["env"]["variables"]["MLFLOW_TRACKING_URI"] == mlflow_server

    # a rerun's attempt is a new child of the same parent
    assert stash.run("rerun", str(folder), timeout=300).returncode == 1
    runs = mlflow_runs(mlflow_server, name)
    assert len(runs) == 5 and [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags] \
        == [parent.info.run_id]
    (again,) = [r for r in runs if r.info.run_id not in children and r.info.run_id != parent.info.run_id]
    assert again.data.tags["mlflow.parentRunId"] == parent.info.run_id and again.info.status == "FAILED"
    assert again.data.tags["experimentstash.experiment"] == "crash"


@needs_mlflow
def test_mlflow_runs_are_made_as_their_jobs_start_and_carry_the_jobs_own_times(stash, mlflow_server):
    name = f"times-{os.getpid()}-{time.monotonic_ns()}"
    add_tracked_tool(stash, top=mlflow_meta(mlflow_server, name))
    out = stash.run("-m", "tool=tr", "experiment=a,b,crash", "count_runs=true", "hydra.launcher.max_parallel=1",
                    timeout=300)
    assert out.returncode == 1, out.stderr
    # the first job started before the other jobs' runs were made: it saw its own alone
    assert json.loads((job_dirs(stash)[0] / "seen.json").read_text())["runs_at_start"] == 1
    children = {r.info.run_id: r for r in mlflow_runs(mlflow_server, name) if "mlflow.parentRunId" in r.data.tags}
    assert len(children) == 3
    for run_dir in job_dirs(stash):
        record = json.loads((run_dir / "run.json").read_text())
        child = children[record["env"]["variables"]["MLFLOW_RUN_ID"]]
        assert (child.info.start_time, child.info.end_time) == (millis(record["started_at"]), millis(record["ended_at"]))


@needs_mlflow
def test_a_tool_that_starts_its_own_mlflow_run_logs_into_the_run_the_launcher_made(stash, mlflow_server):
    name = f"single-{os.getpid()}-{time.monotonic_ns()}"
    add_tracked_tool(stash, top=mlflow_meta(mlflow_server, name))
    out = stash.run("tool=tr", "experiment=a", "use_mlflow=true", timeout=300)
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    seen = json.loads((stash.root / record["run_dir"] / "seen.json").read_text())
    (run,) = mlflow_runs(mlflow_server, name)
    assert seen["mlflow_run_id"] == run.info.run_id == record["env"]["variables"]["MLFLOW_RUN_ID"]
    assert run.info.status == "FINISHED" and "mlflow.parentRunId" not in run.data.tags
    assert run.info.run_name == "a use_mlflow=true"
    assert run.data.metrics == {"from_tool": 1.5, "score": 2.0, "eval.loss": 0.5}  # the tool's and the result's
    assert metric_history(mlflow_server, run.info.run_id, "eval.loss") == [0.9, 0.5]
    assert (run.info.start_time, run.info.end_time) == (millis(record["started_at"]), millis(record["ended_at"]))


@needs_mlflow
def test_an_mlflow_server_that_does_not_answer_stops_everything_before_it_starts(stash):
    port = free_port()  # nothing listens there
    stash.write("configs/meta.yaml", mlflow_meta(f"http://127.0.0.1:{port}", "nowhere") + META)
    for multirun in ((), ("-m",)):
        out = stash.run(*multirun, "tool=fx", "experiment=a,b" if multirun else "experiment=a", timeout=120)
        assert out.returncode == 2, out.stderr
        assert f"MLflow at http://127.0.0.1:{port} cannot be reached" in out.stderr
        assert "Nothing was started" in out.stderr and "Traceback" not in out.stderr
    assert not (stash.root / "outputs").exists() and not (stash.root / "multirun").exists()


@needs_mlflow
def test_credentials_in_the_tracking_uri_reach_the_tool_but_never_a_record_or_the_output(stash, mlflow_server):
    name = f"secret-{os.getpid()}-{time.monotonic_ns()}"
    add_tracked_tool(stash, top=mlflow_meta(mlflow_server, name))
    secret_uri = mlflow_server.replace("http://", "http://user:SECRET@")  # the server takes (and ignores) them
    stash.write("configs/meta.local.yaml", f"mlflow:\n  tracking_uri: {secret_uri}\n")
    out = stash.run("tool=tr", "experiment=a", "use_mlflow=true", timeout=300)
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    seen = json.loads((stash.root / record["run_dir"] / "seen.json").read_text())
    (run,) = mlflow_runs(mlflow_server, name)
    assert seen["mlflow_run_id"] == run.info.run_id  # the tool reached the server with the URI as given
    assert record["env"]["variables"]["MLFLOW_TRACKING_URI"] == mlflow_server.replace("http://", "http://user:***@")
    listed = stash.run("runs", "--json")
    # (the tool's own output, streamed to stdout as it writes it, is its business: MLflow prints its URL there)
    for text in (out.stderr, (stash.root / record["run_dir"] / "run.json").read_text(),
                 listed.stdout + listed.stderr, json.dumps(run.data.tags), json.dumps(run.data.params)):
        assert "SECRET" not in text


@needs_mlflow
def test_credentials_of_an_mlflow_server_that_does_not_answer_are_not_printed(stash):
    port = free_port()  # nothing listens there
    stash.write("configs/meta.yaml", mlflow_meta(f"https://user:SECRET@127.0.0.1:{port}", "nowhere") + META)
    out = stash.run("tool=fx", "experiment=a", timeout=120)
    assert out.returncode == 2 and f"MLflow at https://user:***@127.0.0.1:{port} cannot be reached" in out.stderr
    assert "SECRET" not in out.stderr + out.stdout


# --- on Slurm -------------------------------------------------------------------------------------------------

@pytest.mark.slurm
@needs_wandb
def test_wandb_variables_reach_the_slurm_tasks(stash, tmp_path):
    add_tracked_tool(stash, top="tracker: wandb\n")
    out = stash.run("-m", *SLURM, "tool=tr", "experiment=a,b", "use_wandb=true", env=wandb_env(tmp_path),
                    timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for run_dir in job_dirs(stash):
        seen = json.loads((run_dir / "seen.json").read_text())["wandb"]
        assert seen["group"] == run_dir.parent.name and seen["name"] == run_dir.name.split("_")[-1]
        assert Path(seen["dir"]).is_relative_to(run_dir)


@pytest.mark.slurm
@needs_mlflow
@pytest.mark.parametrize("wait", [False, True])
def test_mlflow_runs_of_a_slurm_sweep_are_made_by_the_tasks_and_ended_by_the_launch_or_its_final_job(
        stash, mlflow_server, wait):
    name = f"slurm-{os.getpid()}-{time.monotonic_ns()}"
    stash.write("configs/meta.yaml", mlflow_meta(mlflow_server, name) + META)
    stash.commit("report to MLflow")
    out = stash.run("-m", *SLURM, f"hydra.launcher.wait={str(wait).lower()}", "tool=fx", "experiment=a,crash",
                    timeout=300)
    assert out.returncode == (1 if wait else 0), out.stdout + out.stderr
    if not wait:
        (parent,) = [r for r in mlflow_runs(mlflow_server, name) if "mlflow.parentRunId" not in r.data.tags]
        assert parent.info.status == "RUNNING"  # made by the submitting process; the jobs' runs by the tasks
        # the sweep's final Slurm job ends them, with nobody typing `status`
        wait_until(lambda: json.loads((sweep_dir(stash) / "sweep.json").read_text())["backend_state"]["finisher"]
                   .get("ended_at"), "the sweep's final job", timeout=180)
        assert "MLflow" not in stash.run("status", str(sweep_dir(stash))).stdout  # ended once, by the final job
    runs = {r.data.tags.get("experimentstash.experiment", "sweep"): r for r in mlflow_runs(mlflow_server, name)}
    assert runs["a"].info.status == "FINISHED" and runs["a"].data.metrics == {"score": 2.0}
    assert runs["crash"].info.status == "FAILED"
    assert runs["sweep"].info.status == "FAILED"
    for run_dir in job_dirs(stash):
        record = json.loads((run_dir / "run.json").read_text())
        run = runs[record["experiment"]]
        assert run.info.run_id == record["env"]["variables"]["MLFLOW_RUN_ID"]
        assert (run.info.start_time, run.info.end_time) == (millis(record["started_at"]), millis(record["ended_at"]))


def watched(stash, *args) -> tuple[subprocess.Popen, list[str], threading.Thread]:
    """The launcher with stdout and stderr in one pipe, in the order it wrote them, read into a list as it comes
    (complete once the reading thread ends)."""
    proc = subprocess.Popen([sys.executable, "-m", "experimentstash", *args], cwd=stash.root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, lines, reader


def millis(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def wait_until(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def reporting_to_a_server_of_its_own(stash, tmp_path: Path, experiment_name: str) -> subprocess.Popen:
    """An MLflow server the test may stop, the stash reporting to it, and an experiment `later` that takes 2 s."""
    proc, uri = start_mlflow_server(tmp_path)
    stash.write("configs/meta.yaml", mlflow_meta(uri, experiment_name) + META)
    stash.write("configs/fx/experiment/later.yaml", experiment("sleep: 2\n"))
    stash.commit("report to MLflow")
    return proc


def ended(run_json: Path) -> bool:
    return run_json.is_file() and json.loads(run_json.read_text())["status"] != "running"


@needs_mlflow
def test_an_mlflow_server_gone_during_the_sweep_never_holds_up_the_table(stash, tmp_path):
    proc = reporting_to_a_server_of_its_own(stash, tmp_path, "gone")
    try:
        launcher, lines, reader = watched(stash, "-m", "tool=fx", "experiment=a,later,later",
                                          "hydra.launcher.max_parallel=1")
        wait_until(lambda: any(ended(p) for p in (stash.root / "multirun").rglob("0_fx_a/run.json")), "job 0 to end")
        stop_mlflow_server(proc, signal.SIGKILL)  # gone after the first job
        assert launcher.wait(timeout=240) == 0, "".join(lines)
    finally:
        stop_mlflow_server(proc)
    reader.join(timeout=30)
    said = "".join(lines)
    folder = sweep_dir(stash).relative_to(stash.root)
    # the table and its lines come first, then whatever is left to say about MLflow
    table = said.index("3 jobs: 3 succeeded")
    assert said.index(f"Compare: experimentstash compare {folder}") > table
    assert said.index(f"Report:  experimentstash report {folder}") > table
    assert said.index("MLflow did not take the end of every run") > table
    assert f"`experimentstash status {stash.root / folder}` records them later" in said
    assert "Traceback" not in said
    assert "MLflow stopped answering" in said  # during the sweep: the jobs after it go without MLflow
    assert [j["status"] for j in json.loads((stash.root / folder / "sweep.json").read_text())["jobs"]] \
        == ["succeeded"] * 3


@needs_mlflow
def test_ctrl_c_while_waiting_for_mlflow_ends_the_wait_and_status_settles_the_runs(stash, tmp_path):
    proc = reporting_to_a_server_of_its_own(stash, tmp_path, "waited")
    try:
        launcher, lines, reader = watched(stash, "-m", "tool=fx", "experiment=later")
        wait_until(lambda: list((stash.root / "multirun").rglob("seen.json")), "the job to start")  # its run is made
        stop_mlflow_server(proc, signal.SIGKILL)  # gone before the job's end reaches it
        wait_until(lambda: any("waiting for MLflow" in line for line in lines), "the wait for MLflow to be said")
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=60) == 130, "".join(lines)
        reader.join(timeout=30)
        said = "".join(lines)
        assert "Traceback" not in said and "KeyboardInterrupt" not in said
        assert said.index("1 jobs: 1 succeeded") < said.index("waiting for MLflow")  # the table came first
        folder = sweep_dir(stash)
        assert f"stopped waiting for MLflow: `experimentstash status {folder}` records them later" in said

        proc, again = start_mlflow_server(tmp_path)  # the same store, back on another port
        out = stash.run("status", str(folder), env={"MLFLOW_TRACKING_URI": again})
        assert out.returncode == 0 and "MLflow: recorded the end of 1 run(s) of this sweep." in out.stdout, out.stderr
        (run,) = [r for r in mlflow_runs(again, "waited") if "mlflow.parentRunId" in r.data.tags]
    finally:
        stop_mlflow_server(proc)
    record = json.loads(next(folder.rglob("run.json")).read_text())
    assert run.info.status == "FINISHED" and run.data.metrics == {"score": 2.0}
    assert (run.info.start_time, run.info.end_time) == (millis(record["started_at"]), millis(record["ended_at"]))

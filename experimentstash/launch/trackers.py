"""Experiment trackers: every run lands in the user's W&B or MLflow, grouped by sweep and tagged with the tool's pin,
without any change to the tool.

- W&B, through the variables its SDK reads (WANDB_RUN_GROUP, WANDB_NAME, WANDB_DIR, ...): the tool's own
  `wandb.init()` picks them up. A variable the user set already wins; WANDB_RUN_ID comes from our run id, so a
  requeued Slurm task continues its W&B run and a `rerun` attempt gets its own.
- MLflow, the way MLflow Projects does it: the launcher creates one parent run per sweep before anything starts,
  and each job's run just before its tool starts (on Slurm, the task on its node), with the job's own start time,
  and hands the tool MLFLOW_RUN_ID, so `mlflow.start_run()` in the tool attaches to its run. When a job ends the
  launcher logs the result file's numbers as metrics and sets the run's status and its end, the job's own.

Imported only when a job reports to a tracker; mlflow only for MLflow, and wandb never (the tool imports it).
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from .. import Interrupted, StashError
from ..output import say
from ..overrides import override_key, override_values, varying
from ..environ import environ
from ..records import Status, flatten, read_run_if_any, redact
from .supervise import raise_on_signals

TAG = "experimentstash."  # our own MLflow tags
MLFLOW_STATUS = {Status.SUCCEEDED: "FINISHED", Status.REUSED: "FINISHED", Status.FAILED: "FAILED",
                 Status.TIMEOUT: "FAILED", Status.LOST: "FAILED"}  # any other final status: KILLED
# MLflow's HTTP client retries for minutes by default: checks and `status` give up at once instead
QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
END_WAIT_S = 60  # how long a launch waits, at its end, for MLflow to take the jobs' ends
# how long a job (or the queue of ends) waits for one MLflow call: the client retries a server that is gone for
# minutes, and a job must not wait that long to start
CALL_WAIT_S = 10
RUN_ID = re.compile(r"[0-9a-f]{32}")


# --- names and tags -------------------------------------------------------------------------------------------

def varying_keys(override_lists) -> set[str]:
    """The tool override keys whose values differ between jobs (every key, for a single run)."""
    parsed = [override_values(list(words)) for words in override_lists]
    return set(varying(parsed)) if len(parsed) > 1 else {k for values in parsed for k in values}


def run_name(spec, varying: set[str]) -> str:
    """A readable name: the experiment and the overrides that tell this job from the others."""
    return " ".join([spec.experiment, *(w for w in spec.overrides if override_key(w) in varying)])


def pin_tag(spec, pin) -> str:
    return f"{spec.tool.name}@{pin.commit[:7]}" if pin.commit else spec.tool.name


def attempt(run_dir: Path) -> int:
    """Which attempt of its job a run is: 1, or k + 1 when `rerun` keeps k earlier ones (<run dir>.attempt<i>)."""
    earlier = [p for p in run_dir.parent.glob(f"{run_dir.name}.attempt*") if p.name[len(run_dir.name) + 8:].isdigit()]
    return len(earlier) + 1 + run_dir.exists()  # before `rerun` moves the run dir aside, it is an attempt too


def user_free(variables: dict) -> dict:
    """Only the variables the user has not set: theirs win, and only what the launcher sets is recorded."""
    return {k: v for k, v in variables.items() if v is not None and k not in os.environ}


def wandb_variables(spec, pin, group: str, name: str) -> dict:
    settings = spec.tool.tracker_settings.get("wandb", {})
    tags = [pin_tag(spec, pin), spec.experiment] + (["dirty"] if pin.dirty else [])
    number = attempt(spec.run_dir)
    return user_free({
        "WANDB_PROJECT": settings.get("project"), "WANDB_ENTITY": settings.get("entity"),
        "WANDB_RUN_GROUP": group, "WANDB_JOB_TYPE": spec.experiment, "WANDB_NAME": name,
        "WANDB_TAGS": ",".join(t.replace(",", "_")[:64] for t in tags),  # W&B takes tags of up to 64 characters
        "WANDB_NOTES": str(spec.run_dir), "WANDB_DIR": str(spec.run_dir),  # its files go to the run dir
        "WANDB_RUN_ID": spec.id if number == 1 else f"{spec.id}-attempt{number}", "WANDB_RESUME": "allow",
    })


def tool_params(overrides) -> dict[str, str]:
    """The tool overrides as MLflow params: `+a.b=1` -> a.b = 1, `~seed` -> seed = (deleted)."""
    params = {}
    for word in overrides:
        key = re.sub(r"[^\w./ -]", "_", override_key(word))[:250]
        params[key] = word.split("=", 1)[1][:6000] if "=" in word else "(deleted)"
    return params


def numbers(result) -> dict[str, list[float]]:
    """The numeric values of a result file as metrics: nested keys joined by '.', a list of numbers as steps."""
    out = {}
    for key, value in flatten(result).items():
        values = value if isinstance(value, list) else [value]
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            out[re.sub(r"[^\w./ -]", "_", key)[:250]] = [float(v) for v in values]
    return out


# --- checks ---------------------------------------------------------------------------------------------------

def check_installed(specs) -> None:
    """Before anything starts: MLflow where the launcher runs, W&B where each tool runs."""
    kinds = {s.tracker for s in specs}
    if "mlflow" in kinds and importlib.util.find_spec("mlflow") is None:
        raise StashError("tracker: mlflow is configured but the mlflow package is not installed where experimentstash "
                         "runs: pip install 'experimentstash[mlflow]' (or set tracker: none). Nothing was started.")
    tools = {s.tool.name: s for s in specs if s.tracker == "wandb"}
    for spec in tools.values():
        if not _importable(spec, "wandb"):
            raise StashError(
                f"tracker: wandb is configured for tool '{spec.tool.name}' but wandb is not installed in its "
                f"environment ({spec.interpreter.executable}): install it there (pip install wandb, or `uv add "
                "wandb` in the tool) or set tracker: none. Nothing was started.")


def _importable(spec, module: str) -> bool:
    if spec.interpreter.kind == "current":
        return importlib.util.find_spec(module) is not None
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        return subprocess.run([*spec.interpreter.prefix, "-c", code], cwd=spec.tool.path, stdin=subprocess.DEVNULL,
                              env={**os.environ, **spec.env}, capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def quick():
    """MLflow's HTTP calls fail at once instead of retrying; only where no tool is running (they read os.environ)."""
    return environ(QUICK)


def mlflow_target(tool, root: Path) -> tuple[str, str]:
    """(tracking URI, experiment name) of a tool: the user's MLFLOW_* variables, else meta.yaml's `mlflow:`; a
    relative path is relative to the stash root. The experiment defaults to the stash's folder name."""
    settings = tool.tracker_settings.get("mlflow", {})
    uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.get("tracking_uri")
    if not uri:
        raise StashError(f"tracker: mlflow needs a tracking URI for tool '{tool.name}': set mlflow: {{tracking_uri: "
                         "...}} in configs/meta.yaml (or configs/meta.local.yaml), or MLFLOW_TRACKING_URI.")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(root / uri[len("sqlite:///"):])
    elif ":" not in uri:
        uri = str(root / uri)
    return uri, os.environ.get("MLFLOW_EXPERIMENT_NAME") or settings.get("experiment") or root.name


def said(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return redact((lines[-1] if lines else type(err).__name__)[:300])


# --- MLflow ---------------------------------------------------------------------------------------------------

_quiet = threading.local()


class _Stdout:
    """sys.stdout that drops what a muted thread writes, and passes on what every other thread does (the table
    at the end of a sweep is written while MLflow may still be at work)."""

    def __init__(self, real):
        self._real = real

    def write(self, text: str) -> int:
        return len(text) if getattr(_quiet, "on", False) else self._real.write(text)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


@contextlib.contextmanager
def muted():
    """What this thread writes to stdout goes nowhere (MLflow's set_terminated prints the run's URL there)."""
    if not isinstance(sys.stdout, _Stdout):
        sys.stdout = _Stdout(sys.stdout)
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = False


def bounded(call, *args, late=None):
    """call(*args) on a thread of its own, waited for at most CALL_WAIT_S: TimeoutError when it takes longer.
    Should it still succeed after that, `late(value)` gets what it returned (a run nobody will use)."""
    lock, done, out = threading.Lock(), threading.Event(), []

    def run() -> None:
        try:
            value = call(*args)
        except Exception as err:
            value = err
        with lock:
            given_up = done.is_set()
            out.append(value)
            done.set()
        if given_up and late and not isinstance(value, Exception):
            late(value)

    threading.Thread(target=run, daemon=True).start()
    done.wait(CALL_WAIT_S)
    with lock:
        if not out:
            done.set()  # given up: what comes later goes to `late`
            raise TimeoutError(f"no answer within {CALL_WAIT_S}s")
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]


def millis(iso: str | None) -> int | None:
    """An ISO 8601 UTC time of a record as MLflow's milliseconds."""
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) if iso else None


class Mlflow:
    """One MLflow tracking server (or store) through MlflowClient."""

    def __init__(self, uri: str):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise StashError(f"tracker: mlflow is configured but mlflow cannot be imported ({said(err)}): "
                             "pip install 'experimentstash[mlflow]'. Nothing was started.") from None
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str) -> str:
        """The experiment's id, made when missing; the first call to the server, so it says when it is not there."""
        try:
            with quick():
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    return self.client.create_experiment(name)
        except Exception as err:
            raise StashError(f"MLflow at {redact(self.uri)} cannot be reached ({said(err)}): start it, or fix mlflow."
                             "tracking_uri in configs/meta.yaml or MLFLOW_TRACKING_URI. Nothing was started.") from None
        if found.lifecycle_stage != "active":
            raise StashError(f"MLflow experiment '{name}' at {redact(self.uri)} is deleted: restore it or set another "
                             "mlflow.experiment in configs/meta.yaml. Nothing was started.")
        return found.experiment_id

    def create(self, experiment_id: str, name: str, tags: dict, params: dict | None = None,
               start_time: int | None = None) -> str:
        from mlflow.entities import Param

        # what a tag or a param would show of a URL's credentials (an override as typed) stays out of the server
        tags = {"mlflow.user": getpass.getuser(), **{k: redact(str(v)) for k, v in tags.items() if v is not None}}
        run = self.client.create_run(experiment_id, start_time=start_time, tags=tags, run_name=redact(name))
        if params:
            self.client.log_batch(run.info.run_id, params=[Param(k, redact(v)) for k, v in params.items()])
        return run.info.run_id

    def end(self, run_id: str, status: Status, result=None, ended_at: str | None = None) -> None:
        """The job's end: the result file's numbers as metrics, our status as a tag, MLflow's status, and the end
        time its record says (now, when it says none)."""
        from mlflow.entities import Metric, RunTag

        end = millis(ended_at) or int(time.time() * 1000)
        items = [Metric(k, v, end, step) for k, values in numbers(result).items() for step, v in enumerate(values)]
        tags = [RunTag(TAG + "status", str(status))]
        for i in range(0, max(len(items), 1), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(run_id, metrics=items[i:i + 1000], tags=tags if i == 0 else [])
        with muted():
            self.client.set_terminated(run_id, MLFLOW_STATUS.get(status, "KILLED"), end_time=end)

    def find_sweep_run(self, experiment_id: str, sweep_id: str) -> str | None:
        """The parent run of a sweep made by an earlier launch (a `rerun` adds its attempts to it)."""
        runs = self.client.search_runs([experiment_id], max_results=1, filter_string=(
            f"tags.`{TAG}sweep` = '{sweep_id}' and tags.`{TAG}kind` = 'sweep'"))
        return runs[0].info.run_id if runs else None


@dataclass(frozen=True)
class ChildRun:
    """What one job's MLflow run is made of; made by start() just before the job's tool starts. Plain data: a
    Slurm task gets it and makes its run on its node."""

    uri: str
    experiment_id: str
    name: str
    tags: dict
    params: dict
    variables: dict  # what the tool gets besides MLFLOW_RUN_ID

    def start(self, server: Mlflow, started_at: str) -> dict:
        """Make the run, starting when the job did; the variables the tool gets (MLFLOW_RUN_ID, ...)."""
        made = bounded(server.create, self.experiment_id, self.name, self.tags, self.params, millis(started_at),
                       late=server.client.delete_run)
        return {**self.variables, "MLFLOW_RUN_ID": made}


def prepare_elsewhere(child: ChildRun):
    """A job's MLflow run made where the job runs (a Slurm task on its node), just before its tool starts: the
    task cannot wait for the launching process. A server that does not answer costs the job its run, not its
    start."""
    def start(record) -> dict:
        try:
            return child.start(Mlflow(child.uri), record.started_at)
        except Exception as err:
            print(f"experimentstash: no MLflow run for this job ({said(err)})", file=sys.stderr, flush=True)
            return {}
    return start


def recorded_run(record) -> str | None:
    """The MLflow run a job's run.json says its tool was given."""
    run_id = ((record.env or {}).get("variables") or {}).get("MLFLOW_RUN_ID") if record else None
    return run_id if isinstance(run_id, str) and RUN_ID.fullmatch(run_id) else None


def overall(statuses) -> Status:
    """A sweep's one status from its jobs': failed if any failed, interrupted if any was stopped."""
    words = [MLFLOW_STATUS.get(s, "KILLED") for s in statuses]
    return Status.FAILED if "FAILED" in words else Status.INTERRUPTED if "KILLED" in words else Status.SUCCEEDED


class Worker:
    """MLflow calls in order on a thread of their own: a job's end never waits for the server. Once MLflow stopped
    answering (`tracking.down`), the calls still queued are skipped: `experimentstash status` makes them later."""

    def __init__(self, tracking: "Tracking"):
        self.tracking = tracking
        self.queue: queue.Queue = queue.Queue()
        self.failed: list[str] = []
        threading.Thread(target=self._work, daemon=True).start()

    def put(self, call, *args) -> None:
        self.queue.put((call, args))

    def _work(self) -> None:
        while True:
            call, args = self.queue.get()
            try:
                if not self.tracking.down:
                    bounded(call, *args)
            except TimeoutError as err:
                self.tracking.gone(str(err))
            except Exception as err:
                self.failed.append(said(err))
            finally:
                self.queue.task_done()

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.queue.unfinished_tasks


class Tracking:
    """The trackers of one launch (a single run as job 0, or the jobs of a sweep): `specs` has every job with its
    W&B variables; MLflow's parent run is made here, before anything starts, each job's run by prepare() just
    before its tool starts, and ended as the jobs end."""

    def __init__(self, root: Path, specs: dict, pins: dict, state, sweep=None, all_overrides=None):
        self.sweep = sweep
        self.specs = dict(specs)
        self.children: dict[int, tuple[Mlflow, ChildRun]] = {}  # job number -> (server, what its run is made of)
        self.run_ids: dict[int, str] = {}  # job number -> its MLflow run, once made here
        self.parents: dict[tuple[str, str], tuple[Mlflow, str]] = {}  # (URI, experiment id) -> (server, sweep's run)
        self.made: list[tuple[Mlflow, str]] = []  # runs this launch created before anything started (discard())
        self.ended_as: dict[int, Status] = {}
        self.unfound: set[int] = set()  # ended before their record named their run (a Slurm task's): looked up at close
        self.worker: Worker | None = None
        self.down: str | None = None  # why MLflow stopped answering: the jobs after that go without it
        tracked = {num: spec for num, spec in specs.items() if spec.tracker != "none"}
        check_installed(tracked.values())
        group = sweep.id if sweep else next(iter(specs.values())).id
        varying = varying_keys(all_overrides if all_overrides is not None else [s.overrides for s in specs.values()])
        servers: dict[str, Mlflow] = {}
        experiments: dict[tuple[str, str], str] = {}
        try:
            for num, spec in tracked.items():
                pin, name = pins[spec.tool.name], run_name(spec, varying)
                if spec.tracker == "wandb":
                    self.specs[num] = replace(spec, env={**spec.env, **wandb_variables(spec, pin, group, name)})
                    continue
                uri, experiment = mlflow_target(spec.tool, root)
                server = servers.get(uri) or servers.setdefault(uri, Mlflow(uri))
                if (uri, experiment) not in experiments:
                    experiments[(uri, experiment)] = server.experiment_id(experiment)
                    if sweep:  # the parent first: its children name it
                        self._sweep_run(server, experiments[(uri, experiment)], state)
                self.children[num] = (server, self._child(server, experiments[(uri, experiment)], spec, pin, name,
                                                          state))
        except StashError:
            self.discard()
            raise
        except Exception as err:  # the server refused the sweep's run
            self.discard()
            raise StashError(f"MLflow did not take the runs of this launch ({said(err)}). Nothing was started.") \
                from None
        if self.children:
            self.worker = Worker(self)

    def _child(self, server: Mlflow, experiment_id: str, spec, pin, name: str, state) -> ChildRun:
        tags = {
            "mlflow.source.name": spec.tool.rel_path, "mlflow.source.git.commit": pin.commit,
            TAG + "kind": "job" if self.sweep else "run", TAG + "run_id": spec.id, TAG + "run_dir": spec.run_dir,
            TAG + "tool": spec.tool.name, TAG + "experiment": spec.experiment, TAG + "pin": pin_tag(spec, pin),
            TAG + "tool_dirty": str(bool(pin.dirty)).lower(), TAG + "stash_commit": state.commit,
        }
        if self.sweep:
            tags.update({"mlflow.parentRunId": self.parents[(server.uri, experiment_id)][1],
                         TAG + "sweep": self.sweep.id, TAG + "job": spec.sweep["num"]})
        variables = {**user_free({"MLFLOW_TRACKING_URI": server.uri}), "MLFLOW_EXPERIMENT_ID": experiment_id}
        return ChildRun(server.uri, experiment_id, name, tags, tool_params(spec.overrides), variables)

    def _sweep_run(self, server: Mlflow, experiment_id: str, state) -> None:
        if (server.uri, experiment_id) not in self.parents:
            found = server.find_sweep_run(experiment_id, self.sweep.id)
            if found:
                server.client.update_run(found, status="RUNNING")  # rerun: open again until this launch ends
            else:
                found = server.create(experiment_id, self.sweep.id, {
                    TAG + "kind": "sweep", TAG + "sweep": self.sweep.id, TAG + "sweep_dir": self.sweep.dir,
                    TAG + "stash_commit": state.commit, TAG + "command": " ".join(self.sweep.record.command_line)})
                self.made.append((server, found))
            self.parents[(server.uri, experiment_id)] = (server, found)

    def child(self, num: int) -> ChildRun | None:
        """What a job's MLflow run is made of, for a backend whose jobs make their runs elsewhere (Slurm)."""
        return self.children[num][1] if num in self.children else None

    def prepare(self, num: int):
        """The hook a job's Runner calls just before its tool starts (Runner.run's `prepare`): its MLflow run,
        made with the job's own start time. None for a job without one."""
        if num not in self.children:
            return None
        server, child = self.children[num]

        def start(record) -> dict:
            if self.down:
                return {}
            try:
                variables = child.start(server, record.started_at)
            except Exception as err:
                self.gone(said(err))
                return {}
            self.run_ids[num] = variables["MLFLOW_RUN_ID"]
            return variables
        return start

    def gone(self, why: str) -> None:
        """MLflow stopped answering: said once; the jobs from now on run without an MLflow run."""
        if not self.down:
            self.down = why
            say(f"warning: MLflow stopped answering ({why}): the jobs from now on run without an MLflow run.")

    def ended(self, num: int, status: Status, record=None) -> None:
        """A job ended (called from its thread): its MLflow run gets the result, the status and the record's end
        time, in the background. A run made on a Slurm node is found in the job's record."""
        if num not in self.children:
            return
        self.ended_as[num] = status
        run_id = self.run_ids.get(num) or recorded_run(record)
        if not run_id:
            self.unfound.add(num)
        else:
            self.unfound.discard(num)
            self.worker.put(self.children[num][0].end, run_id, status, record.result if record else None,
                            record.ended_at if record else None)

    def close(self, over: bool = True) -> int | None:
        """The launch ends. `over`: no job goes on without this process (false: Slurm with wait=false, whose runs
        `experimentstash status` ends later). Runs of jobs that never ended are KILLED, the sweep's run gets its
        status; the wait for MLflow to take it all is bounded, and Ctrl-C ends it. Returns the signal that ended
        the wait, or None."""
        if not self.worker or not over:
            return None
        for num in self.run_ids:
            if num not in self.ended_as:
                self.ended(num, Status.CANCELLED)
        for num in list(self.unfound):  # its record may name its run by now
            self.ended(num, self.ended_as[num], read_run_if_any(Path(self.specs[num].run_dir)))
        for (uri, experiment_id), (server, run_id) in self.parents.items():
            statuses = [self.ended_as.get(n, Status.CANCELLED) for n, (s, child) in self.children.items()
                        if (s.uri, child.experiment_id) == (uri, experiment_id)]
            self.worker.put(server.end, run_id, overall(statuses))
        later = (f"`experimentstash status {self.sweep.dir}` records them later" if self.sweep
                 else "the run stays RUNNING in MLflow")
        restore = raise_on_signals()
        try:
            taken = self.worker.drain(1.0)
            if not taken:
                say(f"waiting for MLflow to take the end of the runs (at most {END_WAIT_S}s; Ctrl-C stops waiting)")
                taken = self.worker.drain(END_WAIT_S)
        except Interrupted as stop:
            say(f"stopped waiting for MLflow: {later}.")
            return stop.signum
        finally:
            restore()
        why = self.worker.failed[0] if self.worker.failed else self.down or (
            None if taken else f"no answer within {END_WAIT_S}s")
        if why:
            say(f"warning: MLflow did not take the end of every run ({why}): {later}.")
        return None

    def discard(self) -> None:
        """Nothing of the launch started: the runs it made go (best effort)."""
        for server, run_id in reversed(self.made):
            try:
                with quick():
                    server.client.delete_run(run_id)
            except Exception:
                pass
        self.made.clear()


# --- runs that ended while no launcher watched -----------------------------------------------------------------

def settle(stash, sweep) -> list[str]:
    """For `experimentstash status`: end the MLflow runs of jobs that ended while no launcher watched them (Slurm
    with wait=false, a launcher that was killed or stopped waiting). Returns the lines to show."""
    todo = []
    for job in sweep.jobs.values():
        # a reused job's record is the earlier run's, whose own launcher ended its tracker run
        record = sweep.records.get(job.num) if job.status.final and not job.reused_from else None
        run_id = recorded_run(record)
        if run_id and job.tool in stash.tools:
            todo.append((stash.tools[job.tool], run_id, job.status, record))
    if not todo:
        return []
    if importlib.util.find_spec("mlflow") is None:
        return ["MLflow runs of this sweep are not updated: mlflow is not installed here "
                "(pip install 'experimentstash[mlflow]')."]
    servers: dict[str, Mlflow] = {}
    parents: dict[tuple[str, str], list] = {}  # (URI, parent run) -> [(status, ended_at) of each job]
    settled = 0
    try:
        with quick():
            for tool, run_id, status, record in todo:
                uri = mlflow_target(tool, stash.root)[0]
                server = servers.get(uri) or servers.setdefault(uri, Mlflow(uri))
                tags = server.client.get_run(run_id).data.tags
                if TAG + "status" not in tags:
                    server.end(run_id, status, record.result, record.ended_at)
                    settled += 1
                if RUN_ID.fullmatch(tags.get("mlflow.parentRunId", "")):
                    parents.setdefault((uri, tags["mlflow.parentRunId"]), []).append((status, record.ended_at))
            if all(job.status.final for job in sweep.jobs.values()):
                for (uri, parent), ends in parents.items():  # the sweep ended with its last job
                    if TAG + "status" not in servers[uri].client.get_run(parent).data.tags:
                        last = max(e or "" for _, e in ends) or None
                        servers[uri].end(parent, overall(s for s, _ in ends), None, last)
    except StashError as err:
        return [f"warning: MLflow runs of this sweep are not updated: {err}"]
    except Exception as err:
        return [f"warning: MLflow runs of this sweep are not updated ({said(err)})."]
    return [f"MLflow: recorded the end of {settled} run(s) of this sweep."] if settled else []

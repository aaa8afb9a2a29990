"""The index of the records (.cache/experimentstash/index-<host>.sqlite): whatever happened on disk behind its
back, each answer is the one that reading every record gives (load_runs and select below)."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import REPO, Stash

from experimentstash import index as index_module
from experimentstash.index import Found, Index, index_path, lost_when_gone
from experimentstash.views import selection
from experimentstash.views.selection import Filters
from experimentstash.records import RUN_FILE, RUN_FOLDERS, BadRecord, Status, read_run, write_json, write_run

FIELDS = ("id", "status", "exit_code", "tool", "experiment", "experiment_file", "experiment_sha256", "overrides",
          "tool_commit", "tool_pinned_commit", "tool_dirty", "stash_commit", "started_at", "ended_at", "duration_s",
          "result", "sweep", "fingerprint", "resources")


def load_runs(root: Path) -> tuple[list[Found], list[BadRecord]]:
    """Every record read (the answers the index must give): (valid records oldest first, the bad ones)."""
    found, bad = [], []
    for base in RUN_FOLDERS:
        stack = [root / base]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            if not any(e.name == RUN_FILE for e in entries):
                stack += [Path(e.path) for e in entries if e.name != ".hydra" and e.is_dir(follow_symlinks=False)]
                continue
            try:
                found.append(Found(lost_when_gone(read_run(folder)), folder))
            except BadRecord as err:
                bad.append(err)
    found.sort(key=lambda f: (f.record.started_at or "", f.label))
    return found, bad


def select(runs: list[Found], **query) -> tuple[list[Found], str | None]:
    """The runs that pass the filters, and the filter that left none of the runs recorded, as the views select
    them from records read one by one."""
    return selection.select(runs, Filters(**query))


def copy(swept, tmp_path: Path) -> Stash:
    """A copy of the swept stash (12 runs: 8 succeeded, 4 failed) that a test may change."""
    stash, _ = swept
    root = tmp_path / "stash"
    shutil.copytree(stash.root, root, symlinks=True, ignore=shutil.ignore_patterns(".cache"))
    return Stash(root, stash.tool_repo)


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "multirun").glob(f"*/*/{RUN_FILE}"))


def aged(root: Path) -> None:
    """Wait until every record is older than the index trusts times to be (index.RACY_NS), so that the index
    keeps what tells each file's state, and only its checks can see a change."""
    newest = max(os.stat(p).st_ctime_ns for p in root.rglob(RUN_FILE))
    deadline = time.monotonic() + 30
    while time.time_ns() < newest + index_module.RACY_NS + 50_000_000:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def shown(found) -> list:
    return [(f.label, str(f.folder), {k: getattr(f.record, k) for k in FIELDS}) for f in found]


def queries(runs) -> list[dict]:
    fingerprint = next(f.record.fingerprint for f in runs)
    return [{}, {"tool": "fx"}, {"tool": "other"}, {"experiment": "a"}, {"experiment": "[bc]*"},
            {"experiment": "zz*"}, {"status": "failed"}, {"status": "succeeded", "last": 3}, {"status": "lost"},
            {"status": "running"}, {"last": 5}, {"last": 0}, {"fingerprint": fingerprint[:6]},
            {"fingerprint": fingerprint}, {"fingerprint": "*"}, {"tool": "fx", "status": "failed", "last": 1},
            {"tool": "fx", "experiment": "b", "status": "cancelled"}, *shared(runs)]


def shared(runs) -> list[dict]:
    """Queries by the filters that runs, compare and report share: commit, sweep, start time, with --last."""
    middle = runs[len(runs) // 2].record
    started = datetime.fromisoformat(middle.started_at.replace("Z", "+00:00"))
    later = datetime.now(timezone.utc) + timedelta(days=1)
    sweep = next((f.record.sweep["id"] for f in runs if f.record.sweep), "nosuchsweep")
    return [{"commit": middle.tool_commit[:7]}, {"commit": "0000"}, {"commit": middle.tool_commit, "last": 2},
            {"sweep": sweep}, {"sweep": "nosuchsweep", "tool": "fx"},
            {"since": started, "given_since": middle.started_at}, {"since": started, "given_since": "x", "last": 1},
            {"since": later, "given_since": "1d", "status": "failed"}, {"tool": "fx", "since": later, "given_since": "y"}]


def assert_same(root: Path, index: Index | None = None) -> None:
    """Every question the index answers, answered as reading every record answers it."""
    index = index or Index(root)
    runs, bad = load_runs(root)
    for query in queries(runs):
        assert shown(index.select(Filters(**query))[0]) == shown(select(runs, **query)[0]), query
        assert index.select(Filters(**query))[1] == select(runs, **query)[1], query
    assert [f.record.to_dict() for f in index.select(read=True)[0]] == [f.record.to_dict() for f in runs]
    assert sorted((str(b.path), b.reason) for b in index.bad) == sorted((str(b.path), b.reason) for b in bad)
    assert index.count() == len(runs)
    assert index.tools() == sorted({f.record.tool for f in runs})
    succeeded = sorted((f for f in runs if f.record.status == "succeeded"), key=lambda f: f.record.ended_at,
                       reverse=True)
    for f in runs:
        assert index.by_id(f.label) == [x.folder for x in runs if x.label == f.label]
        assert list(index.by_fingerprint(f.record.fingerprint)) == [
            x.folder for x in succeeded if x.record.fingerprint == f.record.fingerprint]
        job = (f.record.tool, f.record.experiment, f.record.overrides)
        assert list(index.earlier(*job)) == [
            x.folder for x in succeeded if (x.record.tool, x.record.experiment, x.record.overrides) == job]


def changed(run_dir: Path, **fields) -> dict:
    data = json.loads((run_dir / RUN_FILE).read_text())
    return {**data, **fields}


def test_the_index_answers_as_reading_every_record(swept, tmp_path, capsys, monkeypatch):
    stash = copy(swept, tmp_path)
    root = stash.root
    first, second, third = run_dirs(root)[:3]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = read_run(first)
    write_json(first / RUN_FILE, changed(first, status="running", owner={
        "pid": dead.pid, "host": record.owner["host"], "started": record.owner["started"]}))
    shutil.copytree(second, second.with_name(second.name + ".attempt1"))  # an earlier attempt beside the run
    (third / RUN_FILE).write_text("{half")
    assert not index_path(root).exists()

    assert_same(root)  # built from nothing
    assert index_path(root).is_file()
    assert Index(root).select(Filters(status="lost"))[0][0].folder == first
    assert_same(root)  # as it is kept
    monkeypatch.setattr(index_module, "WINDOW", 2)  # filters with --last: beyond the newest runs too
    assert_same(root)
    assert "warning" not in capsys.readouterr().err


BULK = """
import json, sys, threading
import multiprocessing.pool
from pathlib import Path
from experimentstash import bulk
from experimentstash.index import Index
from experimentstash.views.listing import write_json

bulk.CHUNK, bulk.ALONE_BELOW = 2, 1  # what a stash of thousands of runs gets, with the runs of this one
pools, imap = [], multiprocessing.pool.Pool.imap
multiprocessing.pool.Pool.imap = lambda pool, *args: pools.append(1) or imap(pool, *args)
assert threading.active_count() == 1
index = Index(Path.cwd())
built = len(pools)
records = [(str(f.folder), f.record.to_dict()) for f in index.select(read=True)[0]]
read = len(pools) - built
out, dirs = open(sys.argv[1], "w"), index.run_dirs()[0]
Path(sys.argv[2]).write_text("{half")  # damaged between the look at the index and the reading
bad = write_json(dirs, out)
out.close()
print(json.dumps({"built": built, "read": read, "listed": len(pools) - built - read, "records": records,
                  "bad": sorted((str(b.path), b.reason) for b in index.bad + bad)}))
"""


def test_many_records_are_read_by_worker_processes_with_the_same_answers(swept, tmp_path):
    """Building the index, the records of a view (compare, report) and `runs --json` read thousands of records in
    worker processes: the same records, in the same order, and the same bad ones named, as reading each one here."""
    from experimentstash.views.listing import shown_record

    root = copy(swept, tmp_path).root
    first, second, third = run_dirs(root)[:3]
    shutil.copytree(second, second.with_name(second.name + ".attempt1"))
    (third / RUN_FILE).write_text("{half")
    write_json(first / RUN_FILE, changed(first, status="running", owner={"pid": 1, "host": "elsewhere",
                                                                       "started": 0.0}))
    runs = load_runs(root)[0]
    out = subprocess.run([sys.executable, "-c", BULK, str(tmp_path / "runs.json"), str(second / RUN_FILE)], cwd=root,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["built"], got["read"], got["listed"]) == (1, 1, 1)  # each read in bulk
    assert got["records"] == [[str(f.folder), json.loads(json.dumps(f.record.to_dict()))] for f in runs]
    assert json.loads((tmp_path / "runs.json").read_text()) == [shown_record(f.record) for f in runs
                                                                if f.folder != second]
    assert [tuple(b) for b in got["bad"]] == sorted((str(b.path), b.reason) for b in load_runs(root)[1])  # both


def test_a_deleted_index_is_built_again(swept, tmp_path, capsys):
    root = copy(swept, tmp_path).root
    assert_same(root)
    shutil.rmtree(root / ".cache")
    assert_same(root)
    index_path(root).unlink()
    assert_same(root)
    assert capsys.readouterr().err == ""


def test_records_changed_behind_its_back(swept, tmp_path, monkeypatch):
    root = copy(swept, tmp_path).root
    aged(root)
    Index(root)
    failed = [d for d in run_dirs(root) if read_run(d).status == "failed"]
    succeeded = [d for d in run_dirs(root) if read_run(d).status == "succeeded"]

    # an editor replaces one file, a script writes into another in place: seen when a query returns them
    monkeypatch.setattr(index_module, "CHECK_PER_READ", 0)
    write_json(failed[0] / RUN_FILE, changed(failed[0], status="cancelled"))
    text = (succeeded[0] / RUN_FILE).read_text()
    with open(succeeded[0] / RUN_FILE, "r+") as f:  # the same size, the same file: only its times change
        f.write(text.replace('"experiment": "a"', '"experiment": "c"').replace('"experiment": "b"', '"experiment": "c"'))
    every = Index(root).select()[0]
    assert {f.folder: f.record.status for f in every}[failed[0]] == "cancelled"
    assert {f.folder: f.record.experiment for f in every}[succeeded[0]] == "c"
    assert_same(root)

    # rewritten by experimentstash (a launcher, `status`): seen by every query, returned or not
    record = read_run(failed[1])
    record.status = Status.SUCCEEDED
    write_run(root, failed[1], record)
    assert failed[1] in [f.folder for f in Index(root).select(Filters(status="succeeded"))[0]]
    assert_same(root)

    # changed by hand and returned by no query yet: seen by the checks in turn
    aged(root)
    Index(root)  # keeps the times of what changed above, now old enough to trust
    write_json(failed[2] / RUN_FILE, changed(failed[2], tool="fy"))
    monkeypatch.setattr(index_module, "CHECK_PER_READ", 5)
    for _ in range(len(run_dirs(root)) // 5 + 1):
        Index(root)
    assert [f.folder for f in Index(root).select(Filters(tool="fy"))[0]] == [failed[2]]
    assert_same(root)


def test_removed_and_added_run_dirs(swept, tmp_path, monkeypatch):
    stash = copy(swept, tmp_path)
    root = stash.root
    aged(root)
    monkeypatch.setattr(index_module, "CHECK_PER_READ", 0)  # only the folders tell
    assert_same(root)
    gone, kept = run_dirs(root)[:2]
    shutil.rmtree(gone)
    shutil.copytree(kept, kept.parent / "copied")
    assert_same(root)
    out = stash.run("tool=fx", "experiment=fig1/x")  # a single run under outputs/
    assert out.returncode == 0, out.stderr
    (run,) = (root / "outputs").glob(f"fx/fig1/x/*/{RUN_FILE}")
    assert_same(root)
    assert [f.folder for f in Index(root).select(Filters(experiment="fig1/*"))[0]] == [run.parent]
    shutil.rmtree(root / "multirun")
    assert_same(root)


def test_readers_and_a_sweep_at_the_same_time(swept, tmp_path):
    """Two processes read (and so write the index) again and again while a sweep writes records."""
    stash = copy(swept, tmp_path)
    root = stash.root
    done = tmp_path / "done"
    reader = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from experimentstash.index import Index
        from experimentstash.views.selection import Filters
        deadline = time.monotonic() + 120
        while not Path({str(done)!r}).exists() and time.monotonic() < deadline:
            index = Index(Path({str(root)!r}))
            runs = index.select()[0]
            index.select(Filters(status="succeeded", last=2))
            for found in runs[-3:]:
                list(index.by_fingerprint(found.record.fingerprint))
        print("ended" if Path({str(done)!r}).exists() else "deadline")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    readers = [subprocess.Popen([sys.executable, "-c", reader], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(2)]
    sweep = stash.run("-m", "tool=fx", "experiment=a,b", "value=5,6,7", "sleep=0.2",
                      "hydra.launcher.max_parallel=3")
    done.touch()
    outputs = [r.communicate(timeout=150) for r in readers]
    assert sweep.returncode == 0, sweep.stderr
    assert [r.returncode for r in readers] == [0, 0]
    assert [out for out, _ in outputs] == ["ended\n", "ended\n"]
    assert [err for _, err in outputs] == ["", ""]  # never damaged, never locked out
    db = sqlite3.connect(index_path(root))
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    assert Index(root).count() == 18
    assert_same(root)


@pytest.mark.parametrize("damage", ["garbage", "invalid row", "folder outside"])
def test_a_damaged_index_is_moved_aside_and_built_again(swept, tmp_path, capsys, damage):
    root = copy(swept, tmp_path).root
    aged(root)  # the rows are kept as they are, not read again
    Index(root).db.close()
    path = index_path(root)
    if damage == "garbage":
        path.write_bytes(b"not a database, " * 1000)
    else:
        db = sqlite3.connect(path)
        if damage == "invalid row":
            db.execute("UPDATE runs SET tool = '--upload-pack=touch /tmp/x'")
        else:
            db.execute("UPDATE folders SET path = '../../elsewhere' WHERE path LIKE 'multirun/%'")
        db.commit()
        db.close()
    assert_same(root)
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: the index {path} was damaged")
    assert warning.endswith(f"moved aside to {path.name}.damaged and built again from the records")
    assert path.with_name(path.name + ".damaged").is_file()
    assert_same(root)
    assert capsys.readouterr().err == ""


def test_a_read_only_stash_reads_every_record(swept, tmp_path, capsys):
    root = copy(swept, tmp_path).root
    mounted = tmp_path / "read-only"
    mounted.mkdir()
    for has_index in (False, True):
        if has_index:
            Index(root).db.close()
        bind = subprocess.run(["mount", "--bind", str(root), str(mounted)], capture_output=True, text=True)
        if bind.returncode != 0:
            pytest.skip(f"a read-only bind mount is needed (mount --bind as root): {bind.stderr.strip()}")
        try:
            remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], capture_output=True, text=True)
            assert remount.returncode == 0, remount.stderr
            assert_same(mounted)
            (warning,) = capsys.readouterr().err.splitlines()
            assert warning.startswith(f"warning: the index {index_path(mounted)} cannot be used (")
            assert warning.endswith("): every record is read instead")
        finally:
            subprocess.run(["umount", str(mounted)], check=True)
        assert index_path(root).exists() == has_index


def test_an_invalid_record_never_enters(swept, tmp_path, capsys):
    root = copy(swept, tmp_path).root
    forged, broken = run_dirs(root)[:2]
    good = (forged / RUN_FILE).read_text()
    write_json(forged / RUN_FILE, changed(forged, tool="--upload-pack=touch /tmp/x"))
    (broken / RUN_FILE).write_text("[" * 200 + "]" * 200)
    index = Index(root)
    assert sorted(b.path.parent for b in index.bad) == [forged, broken]
    assert forged not in [f.folder for f in index.select()[0]]
    assert_same(root)

    (forged / RUN_FILE).write_text(good)  # put right: it enters
    valid = (run_dirs(root)[2] / RUN_FILE).read_text()
    (run_dirs(root)[2] / RUN_FILE).write_text(valid.replace('"tool": "fx"', '"tool": "f/x"'))  # and this leaves
    index = Index(root)
    assert forged in [f.folder for f in index.select()[0]]
    assert sorted(b.path.parent for b in index.bad) == [broken, run_dirs(root)[2]]
    assert_same(root)
    assert capsys.readouterr().err == ""


def test_the_commands_answer_from_the_index(swept, tmp_path):
    """runs and stash.reuse, through the index, after a record was rewritten (as `status` does), a run dir removed
    and the index deleted: the answers of reading every record; reuse stands on no run that is gone or failed."""
    from experimentstash.views.listing import shown_record

    stash = copy(swept, tmp_path)
    root = stash.root

    def same_as_records(*flags, **query):
        out = stash.run("runs", "--json", *flags)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        assert json.loads(out.stdout) == [shown_record(f.record) for f in select(load_runs(root)[0], **query)[0]]

    aged(root)
    same_as_records()  # builds the index
    a_runs = [d for d in run_dirs(root) if read_run(d).experiment == "a"]
    record = read_run(a_runs[0])
    record.status = Status.FAILED
    write_run(root, a_runs[0], record)
    shutil.rmtree(a_runs[1])
    same_as_records("--status", "failed", status="failed")
    same_as_records("--experiment", "a", "--last", "3", experiment="a", last=3)

    out = stash.run("-m", "tool=fx", "experiment=a", "value=1,2", "seed=0,1", "stash.reuse=true")
    assert out.returncode == 0, out.stderr
    (folder,) = [p for p in (root / "multirun").iterdir() if p != a_runs[0].parent]
    jobs = json.loads((folder / "sweep.json").read_text())["jobs"]
    reused = sorted(root / j["reused_from"] for j in jobs if j["status"] == "reused")
    assert reused == sorted(a_runs[2:])

    shutil.rmtree(root / ".cache")
    same_as_records()
    same_as_records("--status", "lost", status="lost")

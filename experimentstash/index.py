"""The index of the run records: a SQLite file under the stash's .cache/ that answers what is asked of the whole
history (the runs with a tool, an experiment, a status, a fingerprint, the latest N; a run by its id; the succeeded
runs reuse may stand on) without reading every run.json.

run.json stays the truth. The index can be deleted at any time: the next read builds it again. It stays true
without reading every record at every read:
- Each read looks at every folder that holds run dirs (one stat each, not one per run): a run dir added, removed or
  moved changes the time of the folder that holds it, whatever program on whatever machine did it.
- records.write_run gives the folder that holds a run dir a new time after replacing run.json (which alone changes
  only the run dir's): a record rewritten by experimentstash, on any machine, changes its folder too. The run.json
  of each run dir in a changed folder is looked at, and read again when it changed.
- A record changed by other means (an editor, a script, an older experimentstash) is seen when a query is about to
  return it (the rows a query returns are checked against their files, and the query asked again when one
  changed), and by the checks made in turn: each read looks at CHECK_PER_READ records, the least recently looked at.
- A time closer than RACY_NS to the clock is never trusted (two changes within one tick of the file system's clock
  leave one time): what carries one is looked at again at the next read.
Only readers write the index; launchers and Slurm tasks write run.json alone. One file per host: SQLite's WAL mode
shares memory between the processes that use a file, which a network file system cannot give between machines.
When the file cannot be used (locked longer than BUSY_S, a read-only file system, no shared memory) the records
are read instead, with one warning; a damaged file is moved aside and built again, with one warning.
The index is a cache, never an input: only records that passed validation enter, and each row is validated again
as a record (and its folder confined to outputs/ and multirun/) before it is returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import socket
import sqlite3
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Iterator, Sequence

from .bulk import in_chunks, without_gc
from .output import say, shown_path
from .owner import owner_alive
from .records import (RUN_FILE, RUN_FOLDERS, BadRecord, Invalid, RunRecord, Status, check_owner, parse_time,
                      plain_relative, read_run, to_json)

SCHEMA = 3  # of the index's tables: another one is dropped and built again
BUSY_S = 1.0  # how long a read waits for another process's write before it reads the records instead
COMMIT_S = 0.5  # a long build commits this often, so that others wait less than BUSY_S
RACY_NS = 2_000_000_000
CHECK_PER_READ = 5000  # about 20 ms of stat calls
STORED_BYTES = 512  # a result (or the extra fields shown) longer than this is read from run.json when returned
_MASK = (1 << 63) - 1

TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value);
CREATE TABLE folders (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, parent INTEGER, sig INTEGER NOT NULL);
CREATE TABLE envs (id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE);
CREATE TABLE bad (parent INTEGER NOT NULL, name TEXT NOT NULL, sig INTEGER NOT NULL, reason TEXT NOT NULL,
                  PRIMARY KEY (parent, name));
CREATE TABLE runs (
    id INTEGER PRIMARY KEY, parent INTEGER NOT NULL, name TEXT NOT NULL, sig INTEGER NOT NULL,
    run_id TEXT NOT NULL, label TEXT, schema INTEGER NOT NULL, status TEXT NOT NULL, exit_code INTEGER,
    tool TEXT NOT NULL, experiment TEXT NOT NULL, experiment_file TEXT, experiment_sha256 BLOB,
    overrides TEXT NOT NULL, job INTEGER NOT NULL, tool_commit BLOB, tool_pinned_commit BLOB, tool_dirty INTEGER,
    stash_commit BLOB, env INTEGER NOT NULL, sweep_id TEXT, sweep_num INTEGER, started_at TEXT, ended_at TEXT,
    duration_s, result TEXT, more TEXT, partial INTEGER NOT NULL, owner TEXT, fingerprint TEXT,
    ended TEXT NOT NULL,
    UNIQUE (parent, name));
"""
# made after the first build has written its rows (one sort each: twice as fast as growing them row by row)
INDEXES = """
CREATE INDEX IF NOT EXISTS runs_order ON runs (ifnull(started_at, ''));
CREATE INDEX IF NOT EXISTS runs_tool ON runs (tool, ifnull(started_at, ''));
CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment, ifnull(started_at, ''));
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, ifnull(started_at, ''));
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs (substr(fingerprint, 1, 12), ended);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep_id, sweep_num);
CREATE INDEX IF NOT EXISTS runs_id ON runs (run_id);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job, ended) WHERE status = 'succeeded';
"""
COLUMNS = ("run_id", "label", "schema", "status", "exit_code", "tool", "experiment", "experiment_file",
           "experiment_sha256", "overrides", "job", "tool_commit", "tool_pinned_commit", "tool_dirty", "stash_commit",
           "env", "sweep_id", "sweep_num", "started_at", "ended_at", "duration_s", "result", "more", "partial", "owner",
           "fingerprint", "ended")
SELECTED = "id, parent, name, sig, " + ", ".join(COLUMNS)
ENV = COLUMNS.index("env")
OWNER = 4 + COLUMNS.index("owner")  # in a row of SELECTED
PLACES = "id, parent, name, sig, started_at"  # what run_dirs() needs of a row (and --last of its start)
ENV_KEYS = ("kind", "python", "executable", "lock_file", "lock_sha256")  # what tells environments apart
SHOWN_EXTRA = ("reproduces",)  # fields of some records that views show
_OLDEST_FIRST = " ORDER BY ifnull(started_at, ''), ifnull(label, run_id)"  # by start, then label
_NEWEST_FIRST = " ORDER BY ifnull(started_at, '') DESC, ifnull(label, run_id) DESC"
PAGE = 16  # the rows a walk of earlier runs fetches at a time (it usually stops at the first)
WINDOW = 20_000  # the newest runs a filtered --last looks among first (about 30 ms)
_GLOB = re.compile(r"[*?[]")


@dataclass
class Found:
    """A run record with the folder it was found in (an earlier attempt's folder is named <run dir>.attempt<k>)."""

    record: RunRecord
    folder: Path

    @property
    def tool(self) -> str:
        return self.record.tool

    @property
    def experiment(self) -> str:
        return self.record.experiment

    @property
    def status(self) -> Status:
        return self.record.status

    @property
    def label(self) -> str:
        return label(self.record.id, self.folder.name)


def label(run_id: str, folder_name: str) -> str:
    """The run's id, with the attempt when its folder is an earlier attempt's."""
    _, dot, kind = folder_name.rpartition(".")
    return f"{run_id}.{kind}" if dot and kind.startswith(("attempt", "preempted")) else run_id


def lost_when_gone(record: RunRecord) -> RunRecord:
    """A record still `running` whose owner process is gone is shown as `lost`."""
    if record.status == Status.RUNNING and owner_alive(record.owner) is False:
        record.status = Status.LOST
    return record


@dataclass
class Seen:
    """What one look at a folder found: its signature taken before it was listed (None: gone), the names of its
    folders (None: it was not listed, and `sig` says nothing), and what the run dirs that were read in it hold
    (name -> (signature, row or why it is no record), or None when one holds no run.json)."""

    path: str
    sig: int | None = 0
    names: set[str] | None = None
    read: dict[str, tuple | None] = field(default_factory=dict)
    unread: dict[str, int] = field(default_factory=dict)  # run dirs to read: name -> signature of their run.json


def index_path(root: Path) -> Path:
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    return root / ".cache" / "experimentstash" / f"index-{host}.sqlite"


class Unusable(Exception):
    """A row of the index that is no valid record: the file was changed by something else than this module."""


FAILURES = (sqlite3.DatabaseError, Unusable, OSError)


class Index:
    """The records below outputs/ and multirun/ as they are now: opened (and brought up to date) once per command.

    Each query returns Found objects whose record holds the fields the index keeps (COLUMNS: what the views and
    reuse look at); `read=True` reads each returned run's run.json instead (the whole record). `bad` names the
    records that could not be used, for one warning (output.warn_skipped)."""

    def __init__(self, root: Path):
        self.root = root
        self.path = index_path(root)
        self.bad: list[BadRecord] = []
        self.db: sqlite3.Connection | None = None
        self.paths: dict[int, str] = {}  # folder id -> folder relative to the root
        self.envs: dict[int, str] = {}  # environment id -> its JSON
        self._use(self._file)

    # --- opening, and what is done when the file cannot be used ------------------------------------------------

    def _file(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        db = sqlite3.connect(self.path, timeout=BUSY_S, isolation_level=None)
        try:
            if new:  # as writable as the folder the user's umask made (SQLite's own default is 0644)
                os.chmod(self.path, os.stat(self.path.parent).st_mode & 0o666)
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise sqlite3.OperationalError("this file system does not take SQLite's WAL mode")
            db.execute("PRAGMA synchronous=NORMAL")
            return db
        except BaseException:
            db.close()
            raise

    def _use(self, connect) -> None:
        """Open the index with `connect` and bring it up to date; when that fails, the fallbacks (_recover)."""
        try:
            self._connect(connect)
        except FAILURES as err:
            self._recover(err)

    def _recover(self, why: BaseException) -> None:
        """A damaged file is moved aside and built again; any other failure reads every record (into memory)."""
        if isinstance(why, Unusable) or (isinstance(why, sqlite3.DatabaseError) and _damaged(why)):
            aside = self._move_aside()
            if aside:
                say(f"warning: the index {shown_path(self.root, self.path)} was damaged ({why}): moved aside to "
                    f"{aside.name} and built again from the records")
                try:
                    self._connect(self._file)
                    return
                except FAILURES as err:
                    why = err
        say(f"warning: the index {shown_path(self.root, self.path)} cannot be used ({_why(why)}): every record is "
            "read instead")
        self._connect(lambda: sqlite3.connect(":memory:", isolation_level=None))

    def _connect(self, connect) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        self.db, self.envs = connect(), {}
        self.db.execute("PRAGMA cache_size=-32000")
        self.db.create_function("started_since", 2, _started_since, deterministic=True)
        self._schema()
        self.refresh()

    def _move_aside(self) -> Path | None:
        if self.db is not None:
            self.db.close()
            self.db = None
        aside = self.path.with_name(self.path.name + ".damaged")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except OSError:
            return None
        return aside

    def _again(self, query):
        """Run `query` (a function of no arguments); when the file fails under it, recover and run it again."""
        try:
            return query()
        except FAILURES as err:
            self._recover(err)
        return query()

    def _schema(self) -> None:
        """The tables, made (or made again when they are another SCHEMA's) under the write lock."""
        db = self.db
        if self._schema_ok():
            return
        db.execute("BEGIN IMMEDIATE")
        if not self._schema_ok():  # another process may have made them meanwhile
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                db.execute(f'DROP TABLE "{name}"')
            for statement in TABLES.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO meta VALUES ('schema', ?), ('cursor', 0)", (SCHEMA,))
        db.execute("COMMIT")

    def _schema_ok(self) -> bool:
        tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return "meta" in tables and self.db.execute(
            "SELECT value FROM meta WHERE key = 'schema'").fetchone() == (SCHEMA,)

    # --- keeping it true ---------------------------------------------------------------------------------------
    # What is on disk is looked at without the write lock (listing folders, stat calls, reading records); what was
    # seen is then written under it, briefly. Each signature is written with what was seen after it was taken, so
    # that processes writing what they saw in any order leave the index behind the disk, never wrong about it:
    # what changed since carries another signature and is looked at again.

    def refresh(self) -> None:
        """Bring the index up to date with the run dirs on disk (see the module's docstring)."""
        db = self.db
        self._now = time.time_ns()
        known = db.execute("SELECT id, path, parent, sig FROM folders").fetchall()
        self.paths = {fid: path for fid, path, _, _ in known}
        for fid, path, parent, _ in known:
            if not _folder_of_runs(path) or self.paths.get(parent) != (path.rpartition("/")[0] or None):
                raise Unusable(f"a folder that is no folder of run dirs: {path!r}")
        todo = [base for base in RUN_FOLDERS if base not in self.paths.values()]
        todo += [path for _, path, _, sig in known if not _same(sig, _folder_sig(self.root, path, self._now))]
        looked = []
        while todo:
            seen, new = self._look(todo.pop())
            looked += seen
            todo += new
        self._read(looked)
        self.paths = dict(db.execute("SELECT id, path FROM folders"))
        self._write(self._in_turn(), cursor=True)
        if db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name GLOB 'runs_*'").fetchone()[0] \
                < INDEXES.count(";"):
            db.execute("BEGIN IMMEDIATE")
            for statement in INDEXES.split(";")[:-1]:
                db.execute(statement)
            db.execute("COMMIT")
        self.bad = [BadRecord(Path(self.root, self._folder(parent), name, RUN_FILE), reason)
                    for parent, name, reason in db.execute("SELECT parent, name, reason FROM bad ORDER BY rowid")]

    def _folder(self, fid: int) -> str:
        """The path of a folder of run dirs by its id (one another process added since is looked up)."""
        if fid not in self.paths:
            self.paths = dict(self.db.execute("SELECT id, path FROM folders"))
            if fid not in self.paths:
                raise Unusable(f"a run in folder {fid}, which it does not hold")
        return self.paths[fid]

    def _look(self, path: str) -> tuple[list[Seen], list[str]]:
        """List one folder: its run dirs read when new or when their run.json changed. Returns what was seen and
        its folders that are new here (to be listed in turn)."""
        sig = _folder_sig(self.root, path, self._now)  # before the listing: a change during it shows next time
        if sig is None:
            return [Seen(path, None)], []
        try:  # opened: its run dirs' files are looked at from it (half the cost of whole paths, in folders of 1000s)
            fd = os.open(os.path.join(self.root, path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return [Seen(path, sig, set())], []  # unreadable: nothing below it is listed
        try:
            return self._listed(path, sig, fd)
        finally:
            os.close(fd)

    def _listed(self, path: str, sig: int, fd: int) -> tuple[list[Seen], list[str]]:
        try:
            with os.scandir(fd) as it:
                entries = [e.name for e in it if e.name == RUN_FILE or (e.name != ".hydra" and
                                                                       e.is_dir(follow_symlinks=False))]
        except OSError:
            entries = []
        if RUN_FILE in entries and "/" in path:  # it became a run dir
            parent, _, name = path.rpartition("/")
            return [Seen(path, None), Seen(parent, read={name: self._load(path)})], []
        row = self.db.execute("SELECT id FROM folders WHERE path = ?", (path,)).fetchone()
        fid = row[0] if row else None
        runs = dict(self.db.execute("SELECT name, sig FROM runs WHERE parent = ?", (fid,)))
        runs.update(self.db.execute("SELECT name, sig FROM bad WHERE parent = ?", (fid,)))
        folders = {p.rpartition("/")[2] for (p,) in self.db.execute("SELECT path FROM folders WHERE parent = ?",
                                                                     (fid,))}
        seen, new = Seen(path, sig, set(entries) - {RUN_FILE}), []
        for name in seen.names - folders:  # a folder is looked at on its own
            sig = _file_sig_at(fd, name, self._now)  # before reading: a change during it shows next time
            if name in runs and _same(runs[name], sig):
                continue
            if sig is None:  # holds no run.json: a folder to list
                seen.read[name] = None
                new.append(f"{path}/{name}")
            else:
                seen.unread[name] = sig
        return [seen], new

    def _read(self, looked: list[Seen]) -> None:
        """Read the run dirs `looked` left unread (in bulk.py's worker processes when there are many) and write
        what was seen as it comes: every COMMIT_S, so that others wait less than BUSY_S; folders before what they
        hold."""
        unread = [(seen, name) for seen in looked for name in seen.unread]
        loaded = in_chunks(partial(_loaded, str(self.root)), [f"{seen.path}/{name}" for seen, name in unread])
        done, began = 0, time.monotonic()
        for (seen, name), row in zip(unread, (row for chunk in loaded for row in chunk)):
            seen.read[name] = (seen.unread.pop(name), row)
            if not seen.unread and time.monotonic() - began > COMMIT_S:
                ready = looked.index(seen, done) + 1
                self._write(looked[done:ready])
                done, began = ready, time.monotonic()
        self._write(looked[done:])

    def _load(self, folder: str) -> tuple | None:
        """(signature of its run.json, the row of its validated record or why it is none) of a run dir; None when
        it holds no run.json."""
        sig = _file_sig(folder, self.root, self._now)  # before reading: a change during it shows next time
        return None if sig is None else (sig, _loaded(str(self.root), [folder])[0])

    def _in_turn(self) -> list[Seen]:
        """The next CHECK_PER_READ records (and every bad one), looked at again: edits that changed no folder."""
        self._cursor = self.db.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone()[0]
        rows = self.db.execute("SELECT id, parent, name, sig FROM runs WHERE id > ? ORDER BY id LIMIT ?",
                               (self._cursor, CHECK_PER_READ)).fetchall()
        if len(rows) < CHECK_PER_READ:  # round again from the start
            rows += self.db.execute("SELECT id, parent, name, sig FROM runs WHERE id <= ? ORDER BY id LIMIT ?",
                                    (self._cursor, CHECK_PER_READ - len(rows))).fetchall()
        if rows:
            self._cursor = rows[-1][0]
        return self._again_read(rows + self.db.execute("SELECT 0, parent, name, sig FROM bad").fetchall())

    def _again_read(self, rows) -> list[Seen]:
        """What is seen of the run dirs of `rows` (id, parent, name, sig) whose run.json changed."""
        seen = []
        for _, parent, name, sig in rows:
            folder = self._folder(parent)
            if not _same(sig, _file_sig(f"{folder}/{name}", self.root, self._now)):
                seen.append(Seen(folder, read={name: self._load(f"{folder}/{name}")}))
        return seen

    def _write(self, seen: list[Seen], cursor: bool = False) -> None:
        """Write what was seen, in one transaction (and where the checks in turn are)."""
        if not seen and not cursor:
            return
        db, envs = self.db, {}
        db.execute("BEGIN IMMEDIATE")
        for s in seen:
            if s.sig is None:
                self._forget(s.path)
                continue
            row = db.execute("SELECT id FROM folders WHERE path = ?", (s.path,)).fetchone()
            fresh = row is None  # a folder new to the index holds no row to replace
            if s.names is not None:
                parent = db.execute("SELECT id FROM folders WHERE path = ?", (s.path.rpartition("/")[0],)).fetchone()
                if "/" in s.path and not parent:
                    continue  # gone meanwhile, as another process saw
                row = db.execute("INSERT INTO folders (path, parent, sig) VALUES (?, ?, ?) ON CONFLICT (path) DO "
                                 "UPDATE SET sig = excluded.sig RETURNING id", (s.path, parent and parent[0], s.sig)
                                 ).fetchone()
                self._prune(row[0], s.path, s.names)
            if not row:
                continue
            if not fresh:
                for table in ("runs", "bad"):
                    db.executemany(f"DELETE FROM {table} WHERE parent = ? AND name = ?",
                                   [(row[0], name) for name in s.read])
            runs, bad = [], []
            for name, loaded in s.read.items():
                if loaded is None:
                    if s.names is None:  # it holds no run.json now: its folder is listed again next time
                        db.execute("UPDATE folders SET sig = -1 WHERE id = ?", (row[0],))
                elif isinstance(loaded[1], str):
                    bad.append((row[0], name, loaded[0], loaded[1]))
                else:
                    values = [*loaded[1]]
                    if values[ENV] not in envs:
                        envs[values[ENV]] = self._env(values[ENV])
                    values[ENV] = envs[values[ENV]]
                    runs.append((row[0], name, loaded[0], *values))
            db.executemany("INSERT INTO bad VALUES (?, ?, ?, ?)", bad)
            db.executemany(f"INSERT INTO runs (parent, name, sig, {', '.join(COLUMNS)}) VALUES "
                           f"(?, ?, ?{', ?' * len(COLUMNS)})", runs)
        if cursor:
            db.execute("UPDATE meta SET value = ? WHERE key = 'cursor'", (self._cursor,))
        db.execute("COMMIT")

    def _prune(self, fid: int, path: str, names: set[str]) -> None:
        """Forget what the index holds below a folder that is no longer in it."""
        for table in ("runs", "bad"):
            for (name,) in self.db.execute(f"SELECT name FROM {table} WHERE parent = ?", (fid,)).fetchall():
                if name not in names:
                    self.db.execute(f"DELETE FROM {table} WHERE parent = ? AND name = ?", (fid, name))
        for (child,) in self.db.execute("SELECT path FROM folders WHERE parent = ?", (fid,)).fetchall():
            if child.rpartition("/")[2] not in names:
                self._forget(child)

    def _env(self, text: str) -> int:
        """The id of the row of an environment (what tells it from others: ENV_KEYS, as JSON)."""
        row = self.db.execute("SELECT id FROM envs WHERE value = ?", (text,)).fetchone()
        return row[0] if row else self.db.execute("INSERT INTO envs (value) VALUES (?)", (text,)).lastrowid

    def _forget(self, path: str) -> None:
        """Forget a folder and everything below it."""
        for (fid,) in self.db.execute("SELECT id FROM folders WHERE path = ? OR (path > ? AND path < ?)",
                                      (path, path + "/", path + "0")).fetchall():
            for table in ("runs", "bad"):
                self.db.execute(f"DELETE FROM {table} WHERE parent = ?", (fid,))
            self.db.execute("DELETE FROM folders WHERE id = ?", (fid,))

    # --- queries -----------------------------------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows `sql` selects (SELECTED first), checked against their files; asked again while one changed."""
        for _ in range(3):
            rows = self.db.execute(sql, params).fetchall()
            self._now = time.time_ns()
            stale = [r[:4] for r in rows
                     if not _same(r[3], _file_sig(f"{self._folder(r[1])}/{r[2]}", self.root, self._now))]
            if not stale:
                break
            self._write(self._again_read(stale))
        return rows

    def _newest(self, where: str, params: tuple, last: int, columns: str) -> list[tuple]:
        """The `last` newest rows that match (of `columns`), newest first: looked for among the WINDOW newest runs
        (a walk back along the start order), and when those hold fewer, through the filters' own indexes."""
        if where and last:
            window = f"(SELECT * FROM runs INDEXED BY runs_order ORDER BY ifnull(started_at, '') DESC LIMIT {WINDOW})"
            rows = self._rows(f"SELECT {columns} FROM {window} WHERE {where}{_NEWEST_FIRST} LIMIT {last}", params)
            oldest = self.db.execute(f"SELECT min(ifnull(started_at, '')) FROM {window}").fetchone()[0]
            started = columns.split(", ").index("started_at")
            if len(rows) == last and (rows[-1][started] or "") > (oldest or ""):
                return rows  # the window held them all: no run outside it is newer
        return self._rows(f"SELECT {columns} FROM runs WHERE {where or '1'}{_NEWEST_FIRST} LIMIT {last}", params)

    def _founds(self, rows, read: bool) -> list[Found]:
        """The Found of each row; a record read from run.json that fails now is left out and named in `bad`.
        read=True: every record read from its run.json, in bulk (bulk.py)."""
        found = []
        if read:
            folders = [self._run_dir_text(row) for row in rows]
            records = (r for chunk in in_chunks(read_records, folders) for r in chunk)
            for folder, record in zip(folders, records):
                if isinstance(record, RunRecord):
                    found.append(Found(lost_when_gone(record), Path(folder)))
                else:
                    self.bad.append(BadRecord(*record))
            return found
        with without_gc():
            for row in rows:
                try:
                    found.append(self._found(row))
                except BadRecord as err:
                    self.bad.append(err)
        return found

    def _found(self, row: tuple) -> Found:
        """The Found of a row: its record as the index keeps it (validated again), or read from run.json when the
        index keeps only part of it."""
        path = self._run_dir(row)
        values = dict(zip(COLUMNS, row[4:]))
        if values["partial"]:
            return Found(lost_when_gone(read_run(path)), path)
        try:
            data = {"schema": values["schema"], "id": values["run_id"], "status": values["status"],
                    "exit_code": values["exit_code"], "tool": values["tool"], "experiment": values["experiment"],
                    "experiment_file": values["experiment_file"] or _usual_file(values["tool"], values["experiment"]),
                    "experiment_sha256": _hex(values["experiment_sha256"]),
                    "overrides": json.loads(values["overrides"]), "tool_commit": _hex(values["tool_commit"]),
                    "tool_pinned_commit": _hex(values["tool_pinned_commit"]), "tool_dirty": bool(values["tool_dirty"]),
                    "stash_commit": _hex(values["stash_commit"]), "env": json.loads(self._env_of(values["env"])),
                    "started_at": values["started_at"], "ended_at": values["ended_at"],
                    "duration_s": values["duration_s"], "result": json.loads(values["result"] or "null"),
                    "sweep": None if values["sweep_id"] is None else {"id": values["sweep_id"],
                                                                      "num": values["sweep_num"]},
                    "owner": json.loads(values["owner"] or "null"), "fingerprint": values["fingerprint"],
                    **json.loads(values["more"] or "{}")}
            return Found(lost_when_gone(RunRecord.from_dict(data, path / RUN_FILE)), path)
        except (ValueError, TypeError, AttributeError, KeyError, BadRecord) as err:
            raise Unusable(f"the row of {path} is no valid record: {err}") from None

    def select(self, filters=None, read: bool = False) -> tuple[list[Found], str | None]:
        """The runs that pass the filters (views/selection.py Filters; None: every run), oldest first (`--last N`
        keeps the N most recent of those), and the first filter that left none of the runs recorded (as the user
        gave it: `--experiment 'x*'`)."""
        return self._again(lambda: self._select(filters, lambda rows: self._founds(rows, read)))

    def run_dirs(self, filters=None) -> tuple[list[str], str | None]:
        """The run dirs of the runs select() gives, as text, without making their records (for reading them in
        bulk)."""
        return self._again(lambda: self._select(filters, lambda rows: [self._run_dir_text(r) for r in rows], PLACES))

    def _select(self, f, make, columns: str = SELECTED):
        """(make(the rows of `columns` that pass the filters, oldest first), the filter that emptied them)."""
        filters = self._filters(f) if f else []
        status, last = (f.status, f.last) if f else (None, None)
        where, params = _where(filters)
        if status in (Status.RUNNING.value, Status.LOST.value):  # told by the owner, not by a row
            rows = self._owned(where + _OLDEST_FIRST, params, status)
            if last is not None:
                rows = rows[-last:] if last > 0 else []
        elif last is not None:
            rows = list(reversed(self._newest(where, params, last, columns)))
        else:
            rows = self._rows(f"SELECT {columns} FROM runs WHERE {where or '1'}{_OLDEST_FIRST}", params)
        found = make(rows)
        emptied = None
        if not found and filters and self._exists(""):
            for i, (flag, _, _) in enumerate(filters):
                if not self._matches(filters[:i + 1], status):
                    emptied = flag
                    break
        return found, emptied

    def _filters(self, f) -> list[tuple[str, str, tuple]]:
        """(the flag as the user gave it, SQL, parameters) of each filter given, in the order they are named when
        one leaves no run."""
        out = []
        if f.tool:
            out.append((f"--tool {shlex.quote(f.tool)}", "tool = ?", (f.tool,)))
        if f.experiment:
            names = [e for e in self.experiments() if fnmatchcase(e, f.experiment)] if _GLOB.search(f.experiment) \
                else [f.experiment]
            out.append((f"--experiment {shlex.quote(f.experiment)}",
                        f"experiment IN ({', '.join('?' * len(names))})", tuple(names)))
        if f.status == Status.LOST.value:  # running, its owner on this host (whose life can be told), as _row keeps it
            out.append((f"--status {shlex.quote(f.status)}", "status = ? AND instr(owner, ?) > 0",
                        (Status.RUNNING.value, f'"host": {json.dumps(socket.gethostname())}')))
        elif f.status:
            out.append((f"--status {shlex.quote(f.status)}", "status = ?", (f.status,)))
        if f.commit:  # commits are kept as bytes: their hex, in capitals
            out.append((f"--commit {shlex.quote(f.commit)}", "substr(hex(tool_commit), 1, ?) = ?",
                        (len(f.commit), f.commit.upper())))
        if f.sweep:
            out.append((f"--sweep {shlex.quote(f.sweep)}", "sweep_id = ?", (f.sweep,)))
        if f.since:
            out.append((f"--since {shlex.quote(f.given_since)}", "started_since(started_at, ?)",
                        (f.since.isoformat(),)))
        if f.fingerprint:
            out.append((f"--fingerprint {shlex.quote(f.fingerprint)}", *_fingerprint_prefix(f.fingerprint)))
        return out

    def _exists(self, where: str, params: tuple = ()) -> bool:
        return self.db.execute(f"SELECT EXISTS (SELECT 1 FROM runs WHERE {where or '1'})", params).fetchone()[0] == 1

    def _matches(self, filters, status) -> bool:
        """Whether any run passes `filters` (a status of running or lost told by the owner)."""
        where, params = _where(filters)
        if status in (Status.RUNNING.value, Status.LOST.value) and filters[-1][0].startswith("--status"):
            return bool(self._owned(where, params, status))
        return self._exists(where, params)

    def _owned(self, where: str, params: tuple, status: str) -> list[tuple]:
        """The rows (SELECTED) that match whose owner tells `status` (running or lost)."""
        return [row for row in self._rows(f"SELECT {SELECTED} FROM runs WHERE {where}", params)
                if _owner_status(row) == status]

    def count(self) -> int:
        """How many runs are recorded."""
        return self._again(lambda: self.db.execute("SELECT count(*) FROM runs").fetchone()[0])

    def experiments(self) -> list[str]:
        """The experiments that runs were recorded of."""
        return self._again(lambda: self._distinct("experiment"))

    def tools(self) -> list[str]:
        """The tools that runs were recorded of."""
        return self._again(lambda: self._distinct("tool"))

    def _distinct(self, column: str) -> list[str]:
        """The values of an indexed column, one step along its index each."""
        out, row = [], self.db.execute(f"SELECT min({column}) FROM runs").fetchone()
        while row[0] is not None:
            out.append(row[0])
            row = self.db.execute(f"SELECT min({column}) FROM runs WHERE {column} > ?", row).fetchone()
        return out

    def by_fingerprint(self, digest: str) -> Iterator[Path]:
        """The run dirs of the succeeded runs with this fingerprint, latest (by its end) first, found one at a time:
        the runs reuse may stand on (reuse.check_run reads and checks each before it trusts it; the first that
        passes ends the walk)."""
        # +fingerprint: that term is no reason to scan the whole index in the order of the ends
        return self._walk("SELECT id, parent, name, sig FROM runs INDEXED BY runs_fingerprint WHERE "
                          "substr(fingerprint, 1, 12) = ? AND +fingerprint = ? AND status = 'succeeded'",
                          (digest[:12], digest))

    def earlier(self, tool: str, experiment: str, overrides: list[str]) -> Iterator[Path]:
        """The run dirs of the succeeded runs of one job (tool, experiment, overrides as typed), latest (by its end)
        first, found one at a time."""
        text = _overrides(overrides)
        return self._walk("SELECT id, parent, name, sig FROM runs INDEXED BY runs_job WHERE job = ? AND "
                          "status = 'succeeded' AND tool = ? AND experiment = ? AND overrides = ?",
                          (_job(tool, experiment, text), tool, experiment, text))

    def _walk(self, sql: str, params: tuple) -> Iterator[Path]:
        """The run dirs of the rows `sql` selects (id, parent, name, sig), latest end first, each checked against
        its file when it is reached: a changed one is read again and the query asked again past the dirs given."""
        given, changes, offset = set(), 0, 0
        while True:
            rows = self._again(lambda: self.db.execute(f"{sql} ORDER BY ended DESC, id DESC LIMIT ? OFFSET ?",
                                                       (*params, PAGE, offset)).fetchall())
            if not rows:
                return
            offset += len(rows)
            for row in rows:
                if (row[1], row[2]) in given:
                    continue
                self._now = time.time_ns()
                changed = changes < 2 and self._again_read([row])
                if changed:  # read again, and asked again from the start: the row may have moved
                    changes += 1
                    self._again(lambda: self._write(changed))
                    offset = 0
                    break
                given.add((row[1], row[2]))
                yield self._again(lambda: self._run_dir(row))

    def by_id(self, shown: str) -> list[Path]:
        """The run dirs of the runs shown with this id by `runs` (an earlier attempt's: <id>.attempt<k>)."""
        head = shown.rpartition(".")[0] or shown
        return self._again(lambda: [self._run_dir(r) for r in self._rows(
            f"SELECT id, parent, name, sig, run_id FROM runs WHERE run_id IN (?, ?){_OLDEST_FIRST}", (shown, head))
            if label(r[4], r[2]) == shown])

    def _env_of(self, env: int) -> str:
        if env not in self.envs:  # a handful of environments for thousands of runs
            row = self.db.execute("SELECT value FROM envs WHERE id = ?", (env,)).fetchone()
            if row is None:
                raise Unusable(f"a run of environment {env}, which it does not hold")
            self.envs[env] = row[0]
        return self.envs[env]

    def _run_dir(self, row: tuple) -> Path:
        """The run dir of a row, confined to outputs/ and multirun/ (Unusable when it is not)."""
        return Path(self._run_dir_text(row))

    def _run_dir_text(self, row: tuple) -> str:
        """_run_dir as text (a Path costs more to make than the rest, for 100,000 runs)."""
        folder = f"{self._folder(row[1])}/{row[2]}"
        if "/" in row[2] or not _folder_of_runs(folder):
            raise Unusable(f"a run dir outside {' and '.join(RUN_FOLDERS)}: {folder!r}")
        return f"{self.root}/{folder}"


def _where(filters) -> tuple[str, tuple]:
    """The SQL condition and its parameters of filters as Index._filters gives them."""
    return " AND ".join(sql for _, sql, _ in filters), tuple(p for _, _, ps in filters for p in ps)


def _owner_status(row: tuple) -> str:
    """running or lost, as the owner kept in a row of a running run tells (checked as a record's owner is)."""
    try:
        owner = check_owner("owner", json.loads(row[OWNER] or "null"))
    except (ValueError, Invalid) as err:
        raise Unusable(f"the owner of {row[2]} is no valid owner: {err}") from None
    return Status.LOST.value if owner_alive(owner) is False else Status.RUNNING.value


def read_records(run_dirs: Sequence[str]) -> list[RunRecord | tuple[str, str]]:
    """The validated record of each run dir, or (its file, why it is none)."""
    records = []
    for run_dir in run_dirs:
        try:
            records.append(read_run(run_dir))
        except BadRecord as err:
            records.append((str(err.path), err.reason))
    return records


def _loaded(root: str, folders: Sequence[str]) -> list[tuple | str]:
    """The row of the validated record of each run dir, or why it is none."""
    rows = []
    for folder in folders:
        try:
            rows.append(_row(read_run(os.path.join(root, folder)), folder.rpartition("/")[2]))
        except BadRecord as err:
            rows.append(err.reason)
    return rows


def _fingerprint_prefix(prefix: str) -> tuple[str, tuple]:
    """(SQL, parameters) for the fingerprints that start with `prefix`: through the index of their first 12
    characters when it is hex (as experimentstash writes them), else by a GLOB over every run."""
    glob = _GLOB.sub(lambda m: f"[{m.group()}]", prefix) + "*"  # its *, ? and [ taken as themselves
    if not re.fullmatch(r"[0-9a-f]+", prefix):
        return "fingerprint GLOB ?", (glob,)
    if len(prefix) >= 12:
        return "substr(fingerprint, 1, 12) = ? AND fingerprint GLOB ?", (prefix[:12], glob)
    after = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return "substr(fingerprint, 1, 12) >= ? AND substr(fingerprint, 1, 12) < ? AND fingerprint GLOB ?", (
        prefix, after, glob)


def _started_since(started_at: str | None, since: str) -> bool:
    """Whether a run started at or after `since` (a start that is no time never is)."""
    started = parse_time(started_at)
    return started is not None and started >= datetime.fromisoformat(since)


def _ended_order(ended_at: str | None) -> str:
    """A run's end as text that sorts as the times do (UTC, to the microsecond); '' when it is no time."""
    ended = parse_time(ended_at)
    return ended.astimezone(timezone.utc).isoformat(timespec="microseconds") if ended else ""


def _damaged(err: sqlite3.DatabaseError) -> bool:
    return (getattr(err, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _why(err: BaseException) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)


def _sig(st: os.stat_result, now: int) -> int:
    """What tells one state of a file or folder from another (-1: too recent to trust; look again next time)."""
    if st.st_ctime_ns > now - RACY_NS:
        return -1
    return (st.st_ctime_ns ^ st.st_ino << 32 ^ st.st_size) & _MASK


def _folder_of_runs(path: str) -> bool:
    """A relative path below outputs/ or multirun/, without '..' (what the index keeps is checked, not trusted)."""
    return plain_relative(path) and path.split("/", 1)[0] in RUN_FOLDERS


def _same(kept: int, now: int | None) -> bool:
    """Whether a file or folder is as the index saw it (never when what it kept was too recent to trust)."""
    return kept != -1 and kept == now


def _folder_sig(root: Path, path: str, now: int) -> int | None:
    """The signature of a folder of run dirs; None when it is gone or no folder. outputs/ and multirun/ may be
    links (to a larger disk); a link below them is not followed."""
    try:
        st = os.stat(os.path.join(root, path)) if "/" not in path else os.lstat(os.path.join(root, path))
    except OSError:
        return None
    return _sig(st, now) if stat.S_ISDIR(st.st_mode) else None


def _file_sig(folder: str, root: Path, now: int) -> int | None:
    """The signature of a run dir's run.json; None when the folder holds none."""
    try:
        return _sig(os.lstat(f"{root}/{folder}/{RUN_FILE}"), now)
    except OSError:
        return None


def _file_sig_at(fd: int, name: str, now: int) -> int | None:
    """_file_sig of the run dir `name` of the open folder `fd`."""
    try:
        return _sig(os.lstat(f"{name}/{RUN_FILE}", dir_fd=fd), now)
    except OSError:
        return None


def _overrides(overrides) -> str:
    return json.dumps(list(overrides), separators=(",", ":"))


def _job(tool: str, experiment: str, overrides: str) -> int:
    """A 63-bit key of (tool, experiment, overrides): reuse's lookup of a job's earlier runs, in a small index."""
    digest = hashlib.blake2b(f"{tool}\0{experiment}\0{overrides}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _MASK


def _compact(value) -> str | None:
    return None if value is None else to_json(value)


def _usual_file(tool: str, experiment: str) -> str:
    return f"configs/{tool}/experiment/{experiment}.yaml"


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _bytes(value: str | None) -> bytes | None:
    """A commit or sha256 in half the room: the hex digits (checked when the record was read) as bytes."""
    return None if value is None else bytes.fromhex(value)


def _row(record: RunRecord, name: str) -> tuple:
    """The values of COLUMNS for a validated record in the run dir `name`, its environment as JSON (written as the
    id of its row). What most records share is kept once (the environment) or not at all (the usual experiment
    file)."""
    overrides = _overrides(record.overrides)
    result = _compact(record.result)
    more = {k: record.extra[k] for k in SHOWN_EXTRA if k in record.extra}
    if record.resources is not None:  # what the run used, shown by the listing
        more["resources"] = record.resources
    more_text = to_json(more) if more else None
    partial = len(result or "") > STORED_BYTES or len(more_text or "") > STORED_BYTES
    shown = label(record.id, name)
    usual = record.experiment_file == _usual_file(record.tool, record.experiment)
    return (
        record.id, None if shown == record.id else shown, record.schema, record.status.value, record.exit_code,
        record.tool, record.experiment, None if usual else record.experiment_file, _bytes(record.experiment_sha256),
        overrides, _job(record.tool, record.experiment, overrides), _bytes(record.tool_commit),
        _bytes(record.tool_pinned_commit), int(record.tool_dirty), _bytes(record.stash_commit),
        to_json({k: record.env[k] for k in ENV_KEYS if record.env.get(k) is not None}),
        (record.sweep or {}).get("id"), (record.sweep or {}).get("num"), record.started_at, record.ended_at,
        record.duration_s, None if partial else result, None if partial else more_text, int(partial),
        _compact(record.owner) if record.status == Status.RUNNING else None, record.fingerprint,
        _ended_order(record.ended_at),
    )

"""Damaged records of every kind beside real runs: every command that reads records finishes (no hang, no
traceback) and names each bad record: a warning where it lists records, exit code 2 where it was the one asked for.

The damage is seeded random (fixed seeds: the same files every time) on top of a list of kinds that each broke
a reader once: truncated, huge, deeply nested, binary, NUL bytes, a link to /dev/zero or out of the stash, a FIFO,
a folder named run.json, wrong types in every field."""

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from conftest import new_stash

TIMEOUT = 60  # seconds a command may take: a reader that blocks on a FIFO or reads /dev/zero never ends
NASTY = [None, True, 0, -1, 1.5, 10 ** 400, "", "x", "\x1b]0;pwned\x07\x1b[2J", "[blink]spoof[/]", "=cmd|' /C calc'!A0",
         "a|b\nc", "../../../etc/passwd", "\x00", "\u202eevil", [], [1, [2]], {}, {"a": {"b": None}}, "-" * 2000]


def strict_json(text: str):
    """JSON as a strict parser reads it: a bare NaN or Infinity is an error."""
    def refuse(word):
        raise ValueError(f"{word} is not JSON")
    return json.loads(text, parse_constant=refuse)


def nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def kinds(good: dict, outside: Path) -> dict:
    """name -> a function that damages the run.json at the path it is given."""
    text = json.dumps(good).encode()

    def link(target):
        return lambda p: (p.parent.mkdir(parents=True, exist_ok=True), p.symlink_to(target))

    def sparse(p):  # larger than any record may be, without using the disk
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.truncate(64 << 20)

    outside.write_text(json.dumps(good))  # a valid record, but not a file of the stash
    return {
        "truncated": lambda p: write(p, text[: len(text) // 2]),
        "huge": sparse,
        "deep": lambda p: write(p, b"[" * 100_000 + b"]" * 100_000),
        "nested-500": lambda p: write(p, json.dumps({**good, "result": nested(500)}).encode()),
        "binary": lambda p: write(p, bytes(random.Random(1).randrange(256) for _ in range(4096))),
        "nul": lambda p: write(p, text[:40] + b"\x00" * 64 + text[40:]),
        "long-number": lambda p: write(p, text[:-1] + b', "n": ' + b"9" * 5000 + b"}"),
        "not-an-object": lambda p: write(p, b"[1, 2, 3]"),
        "newer-schema": lambda p: write(p, json.dumps({**good, "schema": 99}).encode()),
        "link-dev-zero": link("/dev/zero"),
        "link-outside": link(outside),
        "fifo": lambda p: (p.parent.mkdir(parents=True, exist_ok=True), os.mkfifo(p)),
        "folder": lambda p: p.mkdir(parents=True),
    }


def fuzzed(good: dict, rng: random.Random, n: int) -> tuple[str, bytes]:
    """A record with one random change: a field set to a nasty value or removed, a deep result, cut or flipped
    bytes. Its id is fuzz-<n>, so that it can be found when it is still valid."""
    record = {**good, "id": f"fuzz-{n}"}
    how = rng.choice(["set", "set", "set", "drop", "deep", "cut", "flip"])
    key = rng.choice([k for k in good if k != "id"])
    if how == "set":
        record[key] = rng.choice(NASTY)
    elif how == "drop":
        del record[key]
    elif how == "deep":
        record["result"] = nested(rng.randrange(1, 150))
    data = json.dumps(record).encode()
    if how == "cut":
        data = data[: rng.randrange(len(data))]
    elif how == "flip":
        data = bytearray(data)
        for _ in range(5):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    return f"{how}-{key}", data


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A stash with a sweep (a, crash x seed 0, 1) and one single run, then damaged records beside them: every kind
    once under outputs/, two of the sweep's records replaced, five random ones; and one damaged copy of the sweep
    per kind of sweep.json damage."""
    base = tmp_path_factory.mktemp("damaged")
    stash = new_stash(base)
    assert stash.run("-m", "tool=fx", "experiment=a,crash", "seed=0,1").returncode == 1
    (sweep,) = (stash.root / "multirun").iterdir()
    single = stash.run("tool=fx", "experiment=a")
    assert single.returncode == 0, single.stderr
    (good_dir,) = [p.parent for p in (stash.root / "outputs").rglob("run.json")]
    good = json.loads((good_dir / "run.json").read_text())

    bad = {}  # run dir -> what was done to its run.json
    for name, damage in kinds(good, base / "outside.json").items():
        folder = stash.root / "outputs" / "fx" / "damaged" / name
        damage(folder / "run.json")
        bad[folder] = name
    for job, name in (("2_fx_crash", "fifo"), ("1_fx_a", "deep")):  # records of the sweep's jobs
        (sweep / job / "run.json").unlink()
        kinds(good, base / "outside.json")[name](sweep / job / "run.json")
        bad[sweep / job] = name
    rng = random.Random(3)
    fuzz = {}
    for n in range(5):
        how, data = fuzzed(good, rng, n)
        folder = stash.root / "outputs" / "fx" / "fuzz" / f"{n}-{how}"
        write(folder / "run.json", data)
        fuzz[folder] = f"fuzz-{n}"

    sweeps = {}  # a copy of the sweep with its sweep.json damaged
    text = (sweep / "sweep.json").read_bytes()
    record = json.loads(text)
    sweep_damage = {
        "fifo": lambda p: os.mkfifo(p),
        "link-dev-zero": lambda p: p.symlink_to("/dev/zero"),
        "truncated": lambda p: p.write_bytes(text[: len(text) // 3]),
        "deep-job-field": lambda p: p.write_text(json.dumps(
            {**record, "jobs": [{**record["jobs"][0], "slurm_job_id": nested(200)}, *record["jobs"][1:]]})),
    }
    for name, damage in sweep_damage.items():
        copy = stash.root / "multirun" / f"copy-{name}"
        shutil.copytree(sweep, copy, symlinks=True, ignore=shutil.ignore_patterns("run.json"))
        (copy / "sweep.json").unlink()
        damage(copy / "sweep.json")
        sweeps[name] = copy
    return stash, sweep, good_dir, bad, fuzz, sweeps


def finished(stash, *args, code: int):
    out = stash.run(*args, timeout=TIMEOUT)
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    assert out.returncode == code, (args, out.returncode, out.stderr)
    return out


def named(root: Path, folder: Path) -> str:
    return f"warning: skipped {(folder / 'run.json').relative_to(root)}: "


def test_listing_commands_name_every_bad_record_and_show_the_rest(damaged):
    stash, sweep, good_dir, bad, fuzz, _ = damaged
    listing = finished(stash, "runs", "--json", code=0)
    ids = {r["id"] for r in strict_json(listing.stdout)}
    for folder in bad:
        assert named(stash.root, folder) in listing.stderr
    for folder, run_id in fuzz.items():  # a random record is either shown or named, never dropped silently
        assert (run_id in ids) != (named(stash.root, folder) in listing.stderr), folder.name
    assert json.loads((good_dir / "run.json").read_text())["id"] in ids
    assert {f"{sweep.name}_0", f"{sweep.name}_3"} <= ids  # the sweep's undamaged records
    assert listing.stderr.count("warning: skipped") == len(bad) + sum(r not in ids for r in fuzz.values())

    for args in (("runs",), ("compare",)):
        out = finished(stash, *args, code=0)
        assert out.stderr == listing.stderr  # the same warnings, one per bad record
        assert "\x1b" not in out.stdout


@pytest.mark.parametrize("command", [["status"], ["compare"], ["report", "-o", "REPORT"]])
def test_sweep_commands_name_the_bad_records_of_its_jobs(damaged, tmp_path, command):
    stash, sweep, _, bad, _, _ = damaged
    args = [tmp_path / "report.html" if word == "REPORT" else word for word in command]
    out = finished(stash, args[0], str(sweep), *map(str, args[1:]), code=0)
    for job in ("2_fx_crash", "1_fx_a"):
        assert named(stash.root, sweep / job) in out.stderr
    assert out.stderr.count("warning: skipped") == 2


def test_a_bad_record_asked_for_by_name_is_exit_2_naming_it(damaged):
    stash, _, good_dir, bad, _, sweeps = damaged
    by_kind = {kind: folder for folder, kind in bad.items() if "damaged" in folder.parts}
    before = set((stash.root / "outputs").rglob("stdout.log"))
    for kind, says in (("fifo", "is a FIFO"), ("link-dev-zero", "is a symbolic link")):
        folder = by_kind[kind]
        out = finished(stash, "reproduce", str(folder), code=2)
        assert f"{folder / 'run.json'}: {says}" in out.stderr
    for kind, says in (("deep", "is nested deeper than 100 levels"), ("huge", "is larger than 32 MiB"),
                       ("folder", "is a folder")):
        out = finished(stash, "diff", str(good_dir), str(by_kind[kind]), code=2)
        assert f"{by_kind[kind] / 'run.json'}: {says}" in out.stderr
    for kind, says in (("fifo", "is a FIFO"), ("link-dev-zero", "is a symbolic link"),
                       ("truncated", "is not valid JSON"), ("deep-job-field", "field 'jobs[0].slurm_job_id'")):
        out = finished(stash, "status", str(sweeps[kind]), code=2)
        assert f"{sweeps[kind] / 'sweep.json'}: {says}" in out.stderr
    assert set((stash.root / "outputs").rglob("stdout.log")) == before  # nothing was reproduced


def test_a_reuse_launch_reads_past_every_bad_record(damaged):
    stash, _, _, bad, _, _ = damaged
    out = finished(stash, "tool=fx", "experiment=a", "stash.reuse=true", code=0)
    assert "succeeded with the same fingerprint" in out.stderr
    for folder in bad:
        assert named(stash.root, folder) in out.stderr


def test_wrong_types_in_every_field_are_named(damaged, tmp_path):
    """Every field of run.json given each a value of a wrong type, in a stash of its own: each record is named with
    its field (20 records at a time: more are counted, not named)."""
    stash, _, _, _, _, _ = damaged
    good = json.loads(next((stash.root / "outputs" / "fx" / "a").rglob("run.json")).read_text())
    root = tmp_path / "listing"
    shutil.copytree(stash.root / "configs", root / "configs")
    rng = random.Random(7)
    wrong = {str: [0, 1.5, [], {"a": 1}], int: ["1", 1.5, [], 10 ** 30], float: ["1", [], {}, True],
             list: ["x", {}, 3, [1]], dict: ["x", [], 3, True], bool: ["true", 0, [], "yes"],
             type(None): [5, [], True]}  # "x" is a valid name (pipeline, stage)
    # (not the free-form result, nor the signature, which only reuse trusts and checks)
    cases = [(key, rng.choice(wrong[type(value)])) for key, value in good.items() if key not in ("result", "signature")]
    for start in range(0, len(cases), 20):
        shutil.rmtree(root / "outputs", ignore_errors=True)
        for key, value in cases[start:start + 20]:
            write(root / "outputs" / key / "run.json", json.dumps({**good, key: value}).encode())
        out = stash.run("runs", "--json", cwd=root, timeout=TIMEOUT)
        assert out.returncode == 0 and strict_json(out.stdout) == [], out.stderr
        for key, _ in cases[start:start + 20]:
            assert f"warning: skipped outputs/{key}/run.json: field '{key}" in out.stderr


def test_the_files_beside_a_record_are_read_within_limits(damaged, tmp_path):
    """tool.diff and the experiment's copy are read like records: a huge one is refused with its name, a special
    file never read."""
    stash, _, good_dir, _, _, _ = damaged
    run_dir = stash.root / "outputs" / "fx" / "a" / "beside"
    shutil.copytree(good_dir, run_dir)
    try:
        refused_beside(stash, run_dir)
    finally:
        shutil.rmtree(run_dir)

    (good_dir / "experiment.yaml").rename(tmp_path / "experiment.yaml")
    os.mkfifo(good_dir / "experiment.yaml")  # the run reuse would stand on: not trusted, never read
    try:
        out = finished(stash, "tool=fx", "experiment=a", "stash.reuse=true", code=0)
        assert "its experiment.yaml is missing or not the recorded one" in out.stderr
    finally:
        (good_dir / "experiment.yaml").unlink()
        (tmp_path / "experiment.yaml").rename(good_dir / "experiment.yaml")


def refused_beside(stash, run_dir: Path) -> None:
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "tool_dirty": True, "tool_diff": "tool.diff"}))
    with open(run_dir / "tool.diff", "wb") as f:
        f.truncate(300 << 20)  # sparse: larger than any patch may be, without using the disk
    out = finished(stash, "reproduce", str(run_dir), code=2)
    assert f"{run_dir / 'tool.diff'} is larger than 256 MiB" in out.stderr
    (run_dir / "tool.diff").unlink()
    os.mkfifo(run_dir / "tool.diff")
    out = finished(stash, "reproduce", str(run_dir), code=2)
    assert "tool.diff" in out.stderr and "missing" in out.stderr


def test_bad_figures_in_resources_are_named_and_records_without_them_stay_valid(damaged, tmp_path):
    stash, _, _, _, _, _ = damaged
    good = json.loads(next((stash.root / "outputs" / "fx" / "a").rglob("run.json")).read_text())
    assert good["resources"]["cpu_user_s"] >= 0  # every run records what it used
    root = tmp_path / "listing"
    shutil.copytree(stash.root / "configs", root / "configs")
    bad = {"negative": ({"cpu_user_s": -1}, "resources.cpu_user_s': expected 0 or more"),
           "gpu": ({"gpus": [{"index": "0"}]}, "resources.gpus[0]': expected a whole number"),
           "slurm": ({"slurm": {"max_rss_bytes": "1G"}}, "resources.slurm.max_rss_bytes': expected a number")}
    for name, (resources, _) in bad.items():
        write(root / "outputs" / name / "run.json", json.dumps({**good, "resources": resources}).encode())
    older = {key: value for key, value in good.items() if key not in ("resources", "signature")}
    write(root / "outputs" / "older" / "run.json", json.dumps(older).encode())
    out = stash.run("runs", "--json", cwd=root, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert [r["run_dir"] for r in strict_json(out.stdout)] == [good["run_dir"]]  # the older record, as it says
    for name, (_, why) in bad.items():
        assert f"warning: skipped outputs/{name}/run.json: field '{why}" in out.stderr

"""Text from records, configs and tools reaches the terminal as it was written: control characters (escape
sequences that retitle, clear or recolour a terminal) are shown as escapes, and nothing is read as rich markup."""

import json

from conftest import experiment

ESC = "\x1b]0;pwned\x07\x1b[2J"  # sets the terminal's title, then clears it


def shown(out, code: int = 0) -> str:
    """What a command printed, checked: nothing a terminal would obey, no traceback, the exit code."""
    text = out.stdout + out.stderr
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "\x1b" not in text and "\x07" not in text and "Traceback" not in text, text
    return text


def test_names_that_look_like_markup_are_shown_as_they_are(stash):
    stash.write("configs/fx/experiment/a[/]b.yaml", experiment("value: 5\n"))
    stash.write("configs/fx/experiment/[blink]spoof.yaml", experiment("value: 6\n"))
    stash.commit("experiments named like markup")
    out = stash.run("-m", "tool=fx", "experiment='a[/]b','[blink]spoof',crash")
    (sweep,) = (stash.root / "multirun").iterdir()
    wide = {"COLUMNS": "300"}  # rich's tables fold cells to the width: one line per row here
    for text in (shown(out, 1), shown(stash.run("status", str(sweep), env=wide)),
                 shown(stash.run("list", env=wide)), shown(stash.run("runs")), shown(stash.run("compare", str(sweep)))):
        assert "a[/]b" in text and "[blink]spoof" in text


def tamper(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_escape_sequences_from_records_and_logs_are_made_visible(stash):
    assert stash.run("-m", "tool=fx", "experiment=a,crash").returncode == 1
    (sweep,) = (stash.root / "multirun").iterdir()
    job, failed = sweep / "0_fx_a", sweep / "1_fx_crash"
    tamper(job / "run.json", lambda r: r.update(id=f"run{ESC}", started_at=ESC, overrides=[f"x={ESC}"],
                                                result={f"k{ESC}": 1, "v": ESC}))
    tamper(sweep / "sweep.json", lambda s: s["jobs"][0].update(overrides=[f"x={ESC}"]))
    with open(failed / "stderr.log", "a") as log:
        log.write(f"the tool said {ESC}\n")
    checks = {  # command -> what of the tampered fields it shows, escaped
        ("runs",): ["run\\x1b]0;pwned\\x07\\x1b[2J", "x=\\x1b", "k\\x1b", "v=\\x1b"],
        ("compare",): ["k\\x1b]0;pwned\\x07\\x1b[2J", "\\x1b]0;pwned"],  # a header, an override's value
        ("compare", str(sweep), "--format", "md"): ["k\\x1b"],
        ("compare", str(sweep), "--format", "csv"): ["k\\x1b"],
        ("status", str(sweep)): ["x=\\x1b]0;pwned", "the tool said \\x1b]0;pwned"],
        ("diff", str(job), str(failed)): ["run\\x1b]0;pwned", "k\\x1b"],
    }
    for args, says in checks.items():
        text = shown(stash.run(*args, env={"COLUMNS": "300"}))
        for needle in says:
            assert needle in text, (args, needle, text)
    # (the tool's own output streams to the terminal as the tool writes it: a record of the crash job with only
    # its id tampered keeps escapes away from the tool)
    tamper(failed / "run.json", lambda r: r.update(id=f"crash{ESC}"))
    text = shown(stash.run("reproduce", str(failed)), code=3)
    assert "reproducing run crash\\x1b]0;pwned" in text and "(reproduces crash\\x1b]0;pwned" in text
    listed = stash.run("runs", "--json")
    assert listed.returncode == 0 and "\x1b" not in listed.stdout  # JSON escapes them itself
    assert any(r["id"] == f"run{ESC}" for r in json.loads(listed.stdout))

"""Notifications of a sweep's end (and first failure) through apprise, received by a local HTTP server and a local
SMTP server; URLs hold secrets: never in a record or the output."""

import json

import pytest

from sinks import HttpSink, SmtpSink


@pytest.fixture
def http():
    sink = HttpSink()
    yield sink
    sink.close()


@pytest.fixture
def smtp():
    sink = SmtpSink()
    yield sink
    sink.close()


def every_record(stash) -> str:
    return "".join(p.read_text() for p in (stash.root / "multirun").rglob("*.json"))


def test_the_end_of_a_sweep_is_posted_and_mailed_with_counts_failures_and_commands(stash, http, smtp):
    stash.write("configs/meta.local.yaml", f"notify:\n  - {http.url('secret-token')}\n  - '{smtp.url()}'\n")
    out = stash.run("-m", "tool=fx", "experiment=a,crash,slow", "sleep=1")
    assert out.returncode == 1, out.stderr
    (posted,) = http.received
    (mail,) = smtp.mails
    (sweep,) = (stash.root / "multirun").iterdir()
    assert posted["path"] == "/secret-token"
    assert posted["title"] == f"sweep {sweep.name} ended: 2 succeeded, 1 failed"
    assert mail["Subject"] == posted["title"]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    for body in (posted["message"], text):
        assert "3 jobs: 2 succeeded, 1 failed" in body
        assert f"job 1 failed, exit code 3: fx crash sleep=1, log multirun/{sweep.name}/1_fx_crash/stderr.log" in body
        assert "Slowest: job " in body
        assert f"Rerun:  experimentstash rerun multirun/{sweep.name}" in body
        assert f"Report: experimentstash report multirun/{sweep.name}" in body
    assert "secret-token" not in every_record(stash) + out.stdout + out.stderr


def test_the_first_failure_is_told_at_once_then_the_end(stash, http):
    stash.write("configs/meta.local.yaml", f"notify:\n  urls: [{http.url()}]\n  when: [first_failure, end]\n")
    out = stash.run("-m", "tool=fx", "experiment=crash,b", "crash=true", "hydra.launcher.max_parallel=1")
    assert out.returncode == 1, out.stderr
    first, end = http.received
    assert first["title"].endswith(": job 0 failed") and "fx crash crash=true" in first["message"]
    assert end["title"].endswith("ended: 2 failed")


def test_stash_notify_on_the_command_line_is_used_and_never_recorded(stash, http):
    stash.write("configs/meta.local.yaml", "notify: json://127.0.0.1:9/never-used\n")
    url = http.url("cli-secret")
    out = stash.run("-m", "tool=fx", "experiment=a,b", f"stash.notify={url}")
    assert out.returncode == 0, out.stderr
    (posted,) = http.received
    assert posted["path"] == "/cli-secret" and posted["title"].endswith("ended: 2 succeeded")
    sweep = json.loads(next((stash.root / "multirun").rglob("sweep.json")).read_text())
    assert "stash.notify=<json://127.0.0.1>" in sweep["command_line"]
    assert all(not any("notify" in w for w in job["launch_overrides"]) for job in sweep["jobs"])
    assert "cli-secret" not in every_record(stash) + out.stdout + out.stderr


def test_a_notification_that_cannot_be_delivered_is_one_warning_not_a_failed_sweep(stash, http):
    port = http.port
    http.close()  # nothing listens there any more
    stash.write("configs/meta.local.yaml", f"notify: json://127.0.0.1:{port}/token-xyz\n")
    out = stash.run("-m", "tool=fx", "experiment=a,b")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("warning: the notification to json://127.0.0.1 was not delivered") == 1, out.stderr
    assert "2 jobs: 2 succeeded" in out.stdout
    assert "token-xyz" not in every_record(stash) + out.stdout + out.stderr


@pytest.mark.parametrize("meta, said", [
    ("notify: nosuchservice://t0ken-abc\n", "Notification URL 1 (nosuchservice://…) is not one apprise can send to"),
    ("notify: {urls: [json://localhost/x], when: [later]}\n",
     "configs/meta.yaml: notify.when: expected a list of end, first_failure"),
    ("notify: [3]\n", "configs/meta.yaml: notify: expected a notification URL or a list of them"),
])
def test_bad_notify_settings_are_one_message_and_nothing_starts(stash, meta, said):
    stash.write("configs/meta.local.yaml", meta)
    out = stash.run("-m", "tool=fx", "experiment=a,b")
    assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "t0ken-abc" not in out.stderr
    assert not (stash.root / "multirun").exists()

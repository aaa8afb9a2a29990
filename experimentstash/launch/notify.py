"""Notifications: one message when a sweep ends (and, if asked, at its first failure), sent through apprise to the
URLs of `notify:` in meta.yaml or `stash.notify` (Slack, email, Matrix, a JSON webhook, ...).

URLs hold secrets (tokens, passwords): they are never recorded or printed; messages name one by shown(). A message
that cannot be delivered is a warning, never a failed sweep.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from .. import StashError
from ..output import plain
from ..overrides import override_key
from ..records import JobEntry, Status
from ..registry import Stash
from ..views.summary import FAILED

OPTION = "stash.notify"
ENV = "EXPERIMENTSTASH_NOTIFY"  # the command line's URLs, handed to a sweep's finishing job (never written to disk)
SLOWEST = 3  # jobs named as the slowest
NAMED_FAILURES = 10  # failed jobs named one by one; the rest are counted


def shown(url: str) -> str:
    """A URL as messages and records may show it: its scheme, and its host when that is a host name (a token in
    the host's place, as in slack://TOKEN/..., is not shown)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "(a URL that cannot be read)"
    named = host == "localhost" or "." in host
    return f"{parts.scheme or '?'}://{host if named else '…'}"


def hide_urls(words: list[str]) -> list[str]:
    """Override words as they may be recorded or printed: stash.notify's value reduced to shown() forms."""
    return [f"{OPTION}=<{', '.join(shown(u) for u in _split(word.partition('=')[2]))}>"
            if override_key(word) == OPTION else word for word in words]


def without_urls(words: list[str]) -> list[str]:
    """Override words without stash.notify (what sweep.json keeps for `rerun` replays no secret)."""
    return [word for word in words if override_key(word) != OPTION]


def _split(text: str) -> list[str]:
    return [part.strip(" '\"") for part in text.strip("[]").split(",") if part.strip(" '\"")]


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


class Notifier:
    """Where a sweep's messages go: the command line's URLs (every job's stash.notify), else meta.yaml's."""

    def __init__(self, urls: list[str], when: tuple[str, ...], given: bool):
        self.urls = urls
        self.when = when
        self.given = given  # the command line's (stash.notify), not meta.yaml's
        self._failure_sent = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @classmethod
    def for_sweep(cls, stash: Stash, options: list[dict], given: str | None = None) -> "Notifier | None":
        """The sweep's notifier (None when nothing is to be told), each URL checked by apprise before anything
        starts. `given`: the command line's URLs as handed to a finishing job (ENV: a JSON list)."""
        urls = list(dict.fromkeys(u for o in options for u in _as_list(o.get("notify"))))
        from_command_line = given is not None or any(o.get("notify") is not None for o in options)
        if given is not None:
            urls = _as_list(json.loads(given))
        elif not from_command_line:
            urls = list(stash.notify.urls)
        if not urls:
            return None
        try:
            import apprise
        except ImportError:
            raise StashError("Notifications (notify: in meta.yaml, or stash.notify) need apprise: pip install "
                             "'experimentstash[notify]'. Nothing was started.") from None
        for k, url in enumerate(urls):
            if not apprise.Apprise().add(url):
                raise StashError(f"Notification URL {k + 1} ({shown(url)}) is not one apprise can send to: see "
                                 "https://github.com/caronc/apprise/wiki for the forms. Nothing was started.")
        return cls(urls, stash.notify.when, from_command_line)

    def env(self) -> dict[str, str]:
        """What a finishing job elsewhere needs to send to the same URLs (meta.yaml's it reads itself)."""
        return {ENV: json.dumps(self.urls)} if self.given else {}

    def send(self, title: str, body: str) -> list[str]:
        """Send to every URL; a warning for each one that could not be delivered (naming it by shown())."""
        import apprise

        quiet = logging.getLogger("apprise")  # its own log lines may show a URL: never printed
        quiet.propagate = False
        quiet.handlers = [logging.NullHandler()]
        problems = []
        for url in self.urls:
            sender = apprise.Apprise()
            sender.add(url)
            try:
                ok = sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT)
            except Exception as err:  # a plugin's own error: the sweep goes on
                ok, why = False, type(err).__name__
            else:
                why = "it did not accept the message"
            if not ok:
                problems.append(f"the notification to {shown(url)} was not delivered ({why}).")
        return problems

    def first_failure(self, job: JobEntry, sweep_id: str, warn) -> None:
        """The first job of the sweep that failed or timed out, told at once (when: [first_failure]), in a thread of
        its own: the sweep does not wait for it until its end."""
        with self._lock:
            if "first_failure" not in self.when or self._failure_sent or job.status not in FAILED:
                return
            self._failure_sent = True
        title = f"sweep {sweep_id}: job {job.num} {job.status.value}"
        body = f"{title}: {_words(job)} (run dir {job.run_dir})"

        def send() -> None:
            for problem in self.send(title, body):
                warn(problem)

        thread = threading.Thread(target=send, daemon=True)
        self._threads.append(thread)
        thread.start()

    def sweep_ended(self, root: Path, sweep_dir: Path, sweep_id: str, jobs: list[JobEntry]) -> list[str]:
        """The message of the sweep's end (after the first failure's, if that one is still being sent); the
        warnings to show."""
        for thread in self._threads:
            thread.join()
        if "end" not in self.when:
            return []
        return self.send(*end_message(root, sweep_dir, sweep_id, jobs))


def _words(job: JobEntry) -> str:
    return plain(" ".join([job.tool, job.experiment, *job.overrides]))


def end_message(root: Path, sweep_dir: Path, sweep_id: str, jobs: list[JobEntry]) -> tuple[str, str]:
    """Title and body: the counts by status, the slowest jobs, the failed ones with their logs, the commands."""
    counts = Counter(job.status.value for job in jobs)
    summary = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    title = f"sweep {sweep_id} ended: {summary}"
    where = shlex.quote(os.path.relpath(sweep_dir, root))
    lines = [f"{len(jobs)} jobs: {summary}. Sweep dir: {where} (stash {root})"]
    timed = sorted((j for j in jobs if j.duration_s is not None), key=lambda j: -j.duration_s)[:SLOWEST]
    if timed:
        lines.append("Slowest: " + "; ".join(f"job {j.num} {_words(j)} {j.duration_s:.1f}s" for j in timed))
    failed = [j for j in jobs if j.status in FAILED or j.status in (Status.LOST, Status.PREEMPTED)]
    for job in failed[:NAMED_FAILURES]:
        code = f", exit code {job.exit_code}" if job.exit_code is not None else ""
        lines.append(f"job {job.num} {job.status.value}{code}: {_words(job)}, log {job.run_dir}/stderr.log")
    if len(failed) > NAMED_FAILURES:
        lines.append(f"... and {len(failed) - NAMED_FAILURES} more did not succeed.")
    if any(not job.status.ok for job in jobs):
        lines.append(f"Rerun:  experimentstash rerun {where}")
    lines.append(f"Report: experimentstash report {where}")
    return title, "\n".join(lines)

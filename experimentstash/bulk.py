"""Reading many records at once (building the index, `runs --json`, a view of every recorded run): on every CPU the
process may use, and without Python's garbage collector walking what was read."""

from __future__ import annotations

import gc
import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

Item = TypeVar("Item")
Out = TypeVar("Out")
CHUNK = 500  # records per piece of work: a few tens of milliseconds
ALONE_BELOW = 4 * CHUNK  # fewer records than this are read in this process: starting workers would cost more


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def without_gc():
    """No collection while many records are read: they hold no cycles, and the collector, run every few hundred
    new objects, would walk every object kept so far each time. What was read is then left out of later
    collections (gc.freeze): a view of 10,000 records makes millions of objects, which it would walk again and
    again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


def in_chunks(work: Callable[[Sequence[Item]], Out], items: Sequence[Item]) -> Iterator[Out]:
    """work(chunk) for each chunk of CHUNK items, in order. Worker processes do it when there are many items, more
    than one CPU, and this process runs one thread (a child forked from a process with other threads can hang on
    a lock one of them held); `work` is then a module-level function (or a partial of one), and what it returns
    is pickled back."""
    chunks = [items[at:at + CHUNK] for at in range(0, len(items), CHUNK)]
    # twice the CPUs: records not in memory keep a worker waiting for the disk, while another parses
    workers = min(2 * usable_cpus(), len(chunks), 8)
    if len(items) < ALONE_BELOW or usable_cpus() < 2 or threading.active_count() > 1 or not hasattr(os, "fork"):
        with without_gc():
            yield from map(work, chunks)
        return
    import multiprocessing  # here: it takes longer to import than a small read takes

    # forked, so that nothing is imported again; the workers never touch what this process has open (the index's
    # connection): they end by os._exit, without closing it
    with without_gc(), multiprocessing.get_context("fork").Pool(workers, initializer=_worker_start) as pool:
        yield from pool.imap(work, chunks)


def _worker_start() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to act on: it ends the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # how the parent ends them, whatever handler it set
    gc.disable()

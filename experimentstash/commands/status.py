"""`experimentstash status <sweep dir>`: every job's state, from its run.json and from the sweep's backend."""

from __future__ import annotations

from pathlib import Path

from . import folder


def add_arguments(parser) -> None:
    parser.add_argument("sweep_dir", help="the sweep dir (a folder under multirun/ holding sweep.json)")
    parser.add_argument("--watch", action="store_true",
                        help="follow the sweep until it ends: counts, running jobs, each failure as it happens")


def run(args, root: Path) -> int:
    from ..launch.sweep import open_sweep
    from ..launch.trackers import settle
    from ..output import plain_lines
    from ..registry import Stash
    from ..views.summary import print_summary
    from ..views.usage import sizing

    stash = Stash.load(root)
    if args.watch:
        from ..launch.watch import watch

        sweep, notes = watch(stash, folder(root, args.sweep_dir)), []  # its notes were shown as they came
        if sweep is None:  # Ctrl-C: the watch ends, not the sweep
            return 130
    else:
        sweep = open_sweep(stash, folder(root, args.sweep_dir))
        notes = sweep.refresh()
        sweep.commit()  # sweep.json and run.json in line with what is known, unless a launcher at work keeps them
    print_summary(stash.root, sweep.dir, [sweep.jobs[n] for n in sorted(sweep.jobs)])
    for line in sizing(sweep.records.values()):  # Slurm's jobs: requested against used
        print(line)
    for note in notes:
        print(plain_lines(note))
    for line in settle(stash, sweep):  # MLflow runs of jobs that ended while no launcher watched them
        print(plain_lines(line))
    return 0

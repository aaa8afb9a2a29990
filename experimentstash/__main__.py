"""`python -m experimentstash ...` and the `experimentstash` command."""

import sys


def main(argv: list[str] | None = None) -> None:
    from .cli import main as run

    sys.exit(run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()

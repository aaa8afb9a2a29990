"""`python -m experimentstash ...` and the `experimentstash` command."""

import sys


def main() -> None:
    from .cli import main as run

    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()

"""``python -m vaelib``: the command line (see ``vaelib.cli``; ``python -m vaelib --help`` lists the commands)."""
import sys

from vaelib.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m vaelib``: the command line (see ``vaelib.cli``; ``python -m vaelib --help`` lists the commands)."""
import os
import sys

from vaelib.cli import main

if __name__ == "__main__":
    # Figures go to files, no display is needed (read when matplotlib loads). Set here, for this
    # process alone: ``vaelib.cli.main`` called in a Jupyter kernel or a test leaves the caller's
    # environment, and so the kernels that caller starts, as it found them.
    os.environ["MPLBACKEND"] = "Agg"
    sys.exit(main())

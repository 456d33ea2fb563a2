#!/usr/bin/env python3
"""The project's two commands, for a fresh clone on a machine with only Python 3 and pip.

    python3 tasks.py book   # set up .venv, execute every chapter, build the HTML (warnings are errors)
    python3 tasks.py test   # set up .venv, run the whole test suite (library, notebooks, built book)

The virtual environment is (re)built when requirements.txt or pyproject.toml change.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"
BUILD_DIR = ROOT / "_build"
CHROMIUM = Path("/usr/bin/chromium")


def run(*cmd: str | Path, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def ensure_venv() -> None:
    """Create .venv and install the pinned requirements and vaelib (editable), once per change."""
    digest = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == digest.hexdigest():
        return
    if VENV.exists():
        shutil.rmtree(VENV)
    venv.create(VENV, with_pip=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-r", ROOT / "requirements.txt")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ROOT)
    STAMP.write_text(digest.hexdigest())


def ensure_chromium() -> None:
    """The browser test drives Debian's Chromium; install it with apt-get when it is missing.

    A Korean font (fonts-nanum) comes with it, so the Korean terms show in the test's screenshots.
    """
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        sys.exit("The browser test needs Chromium at /usr/bin/chromium. Install it "
                 "(Debian/Ubuntu: sudo apt-get install chromium) and run the tests again.")
    run("apt-get", "update", "-qq")
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-nanum",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def build_book(output: Path = BUILD_DIR) -> Path:
    """Execute every chapter and build the HTML with Sphinx warnings as errors; return index.html."""
    jb = VENV / "bin" / "jupyter-book"
    run(jb, "build", ROOT, "--path-output", output, "--warningiserror", "--nitpick", "--keep-going",
        "--all")
    return output / "_build" / "html" / "index.html"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in {"book", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    # The book's networks are tiny: one thread per process is faster than two that wait for each
    # other, and far faster when the cores are busy (a VAE epoch measured 0.57 s vs 11 s of CPU).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ensure_venv()
    if argv[0] == "book":
        index = build_book()
        print(f"\nThe book is built: open {index}")
        return 0
    ensure_chromium()
    return subprocess.run([str(PYTHON), "-m", "pytest", "--nbval-lax", "tests", "book"], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

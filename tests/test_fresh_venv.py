"""A chapter downloaded from the built book runs in a fresh virtual environment after the one
install its first cell names (issue 24, item 3).

As a reader would: a new venv, then the first cell's command, `python -m pip install ".[extras]"`,
run in a copy of the repository's top folder (pip builds vaelib's wheel from it and installs it
with those extras alone); then the downloaded notebook, executed by that venv's own Jupyter in a
folder of its own, away from the repository. Two chapters: the quickest that needs no extra beyond
`notebook`, and the quickest that needs one more.

It installs about a hundred packages (torch among them), so it is slow: pip takes them from its
caches and the local wheel files, pinned to requirements.txt's versions (a constraints file), so
nothing is downloaded that the book's own .venv did not already use.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_cache import get_cache

import tasks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import takeaway  # noqa: E402

INSTALL = re.compile(r'python -m pip install "\.\[([a-z,]+)\]"')
EXECUTE = """\
import sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

notebook = nbformat.read(sys.argv[1], as_version=4)
try:
    NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
finally:
    nbformat.write(notebook, sys.argv[2])
"""


def _environment() -> dict[str, str]:
    """This process's environment less what points into the book's own .venv or checkout."""
    return {key: value for key, value in os.environ.items()
            if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not key.startswith("VAELIB_")}


def _constraints(target: Path) -> Path:
    """requirements.txt's pins as a constraints file (which takes no extras: "dask[distributed]" -> "dask")."""
    lines = [re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).strip()
             for line in (ROOT / "requirements.txt").read_text().splitlines()]
    target.write_text("\n".join(line for line in lines if line) + "\n")
    return target


def _chapters_to_run(book_build) -> list[tuple[str, list[str]]]:
    """The quickest chapter (by its execution in the build) that needs only `notebook`, and the
    quickest that needs another extra too, with the extras each one's first cell names."""
    cache = get_cache(tasks.cache_dir(book_build.output))
    timed = []
    for chapter in tasks.notebook_chapters():
        downloaded = nbformat.read(book_build.html / takeaway.notebook_file(chapter), as_version=4)
        extras = INSTALL.search(downloaded.cells[0].source).group(1).split(",")
        try:
            key, _ = cache.merge_match_into_notebook(nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4))
            seconds = (cache.get_cache_record(key).data or {}).get("execution_seconds", math.inf)
        except KeyError:
            seconds = math.inf
        timed.append((seconds, chapter, extras))
    plain = min((t for t in timed if t[2] == ["notebook"]), default=None)
    more = min((t for t in timed if len(t[2]) > 1), default=None)
    assert plain and more, f"no chapter of each kind: {timed}"
    return [(chapter, extras) for _, chapter, extras in (plain, more)]


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_downloaded_chapter_runs_in_a_fresh_venv_after_its_one_install(request, tmp_path):
    env = _environment()
    env["PIP_CONSTRAINT"] = str(_constraints(tmp_path / "constraints.txt"))
    # A copy of the repository's top folder as a reader has it (what the wheel is built from).
    repository = tmp_path / "repository"
    shutil.copytree(ROOT / "vaelib", repository / "vaelib", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copyfile(ROOT / "pyproject.toml", repository / "pyproject.toml")
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    started = time.monotonic()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, timeout=300)
    python = venv / "bin" / "python"

    def install(extras: list[str]) -> float:
        begun = time.monotonic()
        # --no-compile: pip byte-compiles every installed module, half of the install's time (134 s
        # against 65 s for .[notebook]); Python compiles what the chapters import when they import
        # it, and pip ignores compile errors anyway, so skipping it loses no check.
        _run([str(python), "-m", "pip", "install", "--quiet", "--no-compile", f".[{','.join(extras)}]"], repository,
             env, timeout=1200)
        return time.monotonic() - begun

    # The first chapter needs `notebook` alone (_chapters_to_run), so its install comes before the
    # book is asked for: under pytest-xdist it runs while another worker builds the book.
    first_install = install(["notebook"])
    book_build = request.getfixturevalue("book_build")
    chapters = _chapters_to_run(book_build)
    assert chapters[0][1] == ["notebook"], chapters
    timings = []
    # Each chapter right after the install its first cell names: the first with its extras alone,
    # the second once its own install has added what the first lacked.
    for index, (chapter, extras) in enumerate(chapters):
        install_seconds = first_install if index == 0 else install(extras)
        installed = time.monotonic()
        where = _run([str(python), "-c", "import vaelib; print(vaelib.__file__)"], downloads, env, timeout=120)
        assert Path(where.stdout.strip()).is_relative_to(venv), f"vaelib came from {where.stdout.strip()}"
        name = Path(chapter).name
        notebook = downloads / f"{name}.ipynb"
        shutil.copyfile(book_build.html / takeaway.notebook_file(chapter), notebook)
        result = subprocess.run([str(python), "-c", EXECUTE, str(notebook), str(downloads / f"{name}.out.ipynb")],
                                cwd=downloads, env=env, capture_output=True, text=True, timeout=900)
        timings.append(f"{name} [{','.join(extras)}]: install {install_seconds:.0f} s, "
                       f"run {time.monotonic() - installed:.0f} s")
        executed = nbformat.read(downloads / f"{name}.out.ipynb", as_version=4)
        problems = [tasks._describe(name, index, cell, problem) for index, cell in enumerate(executed.cells)
                    for problem in tasks._output_problems(cell)]
        assert result.returncode == 0 and not problems, \
            f"{name} failed in the fresh venv with .[{','.join(extras)}]:\n" + "\n".join(problems) \
            + result.stderr[-3000:]
    print(f"fresh venv in {time.monotonic() - started:.0f} s: " + "; ".join(timings))

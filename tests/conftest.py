import json
import os
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from vaelib.data import cosine_surface

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tasks.py: the book build, read by the tests
import tasks  # noqa: E402


# The slow tests, by file (every test in it) or by file and test name (a name's parametrised cases
# too): marked ``slow`` so that ``python -m pytest -m "not slow" tests`` is a quick check. The test
# command of the README (``python3 tasks.py test``) runs everything. Measured at idle, each takes
# from about ten seconds to minutes.
SLOW = {
    "test_book.py": "*", "test_chapters.py": "*", "test_browser.py": "*", "test_offline.py": "*",  # the book
    "test_sweep.py": "*",  # Dask clusters
}


# The files that read the built book, longest first (seconds at idle on 2 cores, book built). They
# run last, except test_book.py, which runs first and so starts the build: under pytest-xdist
# (``tasks.py test`` runs one worker per core, a file whole on one worker) the other workers run the
# library's tests while the book builds, then share these out.
BOOK_FILES = ("test_fresh_venv.py",  # 190-210 s: pip installs into a new venv first, then asks for the book
              "test_browser.py",  # 180 s
              "test_pdf.py",  # 155 s
              "test_chapters.py", "test_offline.py", "test_takeaway.py", "test_interactive.py")


def _run_order(item) -> tuple[int, int]:
    name = item.path.name
    if name == "test_book.py":
        return (0, 0)
    return (2, BOOK_FILES.index(name)) if name in BOOK_FILES else (1, 0)


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = SLOW.get(item.path.name, ())
        if names == "*" or item.originalname in names:
            item.add_marker(pytest.mark.slow)
    items.sort(key=_run_order)  # stable: the order within a file stays


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cosine_small():
    return cosine_surface(n=512, seed=1)


@pytest.fixture(scope="session")
def book_build(testrun_uid):
    """The book built once per test run (``tasks.build_book``), whatever the number of pytest-xdist
    workers, with its failures recorded rather than raised: test_book checks the build's exit
    status, test_chapters each chapter's execution.

    Set VAELIB_BOOK_HTML to an already built HTML folder (<path-output>/_build/html) to test that
    instead of building; its exit status is then unknown.
    """
    if os.environ.get("VAELIB_BOOK_HTML"):
        html = Path(os.environ["VAELIB_BOOK_HTML"])
        assert (html / "index.html").is_file(), f"VAELIB_BOOK_HTML={html} holds no built book (index.html)"
        return tasks.BookBuild(output=html.parents[1], returncode=None)
    # Under pytest-xdist each worker asks for the book: the first one builds it and records the
    # result for this test run (testrun_uid); the others wait for that and read the record.
    tasks.BUILD_DIR.mkdir(exist_ok=True)
    record = tasks.BUILD_DIR / f".book-build-{testrun_uid}.json"
    with FileLock(tasks.BUILD_DIR / ".book-build-record.lock"):
        if record.is_file():
            saved = json.loads(record.read_text())
            return tasks.BookBuild(Path(saved["output"]), saved["returncode"], saved["log"])
        for earlier in tasks.BUILD_DIR.glob(".book-build-*.json"):
            earlier.unlink()
        build = tasks.build_book()
        tasks.write_atomically(record, json.dumps({"output": str(build.output), "returncode": build.returncode,
                                                   "log": build.log}))
    return build


@pytest.fixture(scope="session")
def built_book(book_build):
    """The built book's HTML folder."""
    return book_build.html

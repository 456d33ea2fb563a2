import os
import sys
from pathlib import Path

import pytest
import torch

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


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = SLOW.get(item.path.name, ())
        if names == "*" or item.originalname in names:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cosine_small():
    return cosine_surface(n=512, seed=1)


@pytest.fixture(scope="session")
def book_build():
    """The book built once per test session (``tasks.build_book``), with its failures recorded rather
    than raised: test_book checks the build's exit status, test_chapters each chapter's execution.

    Set VAELIB_BOOK_HTML to an already built HTML folder (<path-output>/_build/html) to test that
    instead of building; its exit status is then unknown.
    """
    if os.environ.get("VAELIB_BOOK_HTML"):
        html = Path(os.environ["VAELIB_BOOK_HTML"])
        assert (html / "index.html").is_file(), f"VAELIB_BOOK_HTML={html} holds no built book (index.html)"
        return tasks.BookBuild(output=html.parents[1], returncode=None)
    return tasks.build_book()


@pytest.fixture(scope="session")
def built_book(book_build):
    """The built book's HTML folder."""
    return book_build.html

import pytest
import torch

from vaelib.data import cosine_surface


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cosine_small():
    return cosine_surface(n=512, seed=1)


@pytest.fixture(scope="session")
def built_book():
    """Build the book once per test session (executing every chapter); return the HTML folder.

    Set VAELIB_BOOK_HTML to an already built HTML folder to test that instead of building.
    """
    import importlib.util
    import os
    from pathlib import Path

    if os.environ.get("VAELIB_BOOK_HTML"):
        html = Path(os.environ["VAELIB_BOOK_HTML"])
        assert (html / "index.html").is_file(), f"VAELIB_BOOK_HTML={html} holds no built book (index.html)"
        return html
    spec = importlib.util.spec_from_file_location("tasks", Path(__file__).resolve().parents[1] / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks.build_book().parent

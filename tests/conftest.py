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
    """Build the book once per test session (executing every chapter); return the HTML folder."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("tasks", Path(__file__).resolve().parents[1] / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks.build_book().parent

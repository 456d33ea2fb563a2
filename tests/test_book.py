"""Book-level tests: notebooks are stored clean, the table of contents is whole, the book builds.

Each chapter's execution in that build is checked by test_chapters.py."""
import json
from pathlib import Path

import pytest

import tasks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


def test_every_chapter_is_in_the_table_of_contents():
    listed = set(tasks.toc_files(ROOT))
    chapters = {str(p.relative_to(ROOT).with_suffix(""))
                for p in (ROOT / "book").glob("*") if p.suffix in {".ipynb", ".md"}}
    assert chapters == listed


def test_book_builds_with_warnings_as_errors(book_build, built_book):
    if book_build.returncode is not None:
        assert book_build.returncode == 0, "the book build failed:\n" + "\n".join(book_build.warnings())
    index = built_book / "index.html"
    assert index.is_file()
    page = (built_book / "book" / "autoencoder.html").read_text()
    assert "<img" in page and "The autoencoder" in page

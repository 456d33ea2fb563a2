"""What a reader takes away from the built book (book/_ext/takeaway.py): the note that says what a
chapter needs, each chapter as an executed notebook, and the archive of all of them.

The first tests check how the extras are derived; the others read the book built once per test
session (the ``book_build`` fixture in conftest.py).
"""
from __future__ import annotations

import html
import re
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

import tasks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import takeaway  # noqa: E402

CHAPTERS = tasks.notebook_chapters()
INSTALL = re.compile(r'python -m pip install "\.\[([a-z,]+)\]"')


def test_optional_dependencies_are_read_from_pyproject_with_the_extras_of_a_requirement(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["numpy", "Tqdm>=4"]\n'
                         '[project.optional-dependencies]\nplots = ["plotly>=5"]\n'
                         'again = ["numpy"]\nsweep = ["dask[distributed]"]\n')
    extras = takeaway.optional_dependencies(pyproject)
    assert list(extras) == ["plots", "again", "sweep"]
    assert extras["plots"] == {"plotly"}
    assert extras["again"] == set(), "a base dependency makes no extra needed"
    assert extras["sweep"] >= {"dask", "distributed"}, "dask[distributed] brings distributed"


def test_extras_follow_the_modules_a_chapter_imported():
    modules = {"torch": ["torch"], "mlxtend": ["mlxtend"], "plotly": ["plotly"], "cooper": ["cooper-optim"],
               "distributed": ["distributed"], "myst_nb": ["myst-nb"]}
    assert takeaway.extras_for(["torch", "myst_nb"], module_distributions=modules) == ["notebook"]
    assert takeaway.extras_for(["torch", "mlxtend"], module_distributions=modules) == ["notebook", "mnist"]
    assert takeaway.extras_for(["cooper", "plotly", "distributed"], module_distributions=modules) == [
        "notebook", "interactive", "sweep", "cooper"]
    assert takeaway.install_command(["notebook", "mnist"]) == 'python -m pip install ".[notebook,mnist]"'


def test_the_downloadable_notebook_starts_with_the_note_and_leaves_the_executed_one_alone():
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    notebook = takeaway.downloadable(executed, ["notebook", "mnist"])
    assert len(executed.cells) == 1 and len(notebook.cells) == 2
    assert notebook.cells[0].cell_type == "markdown"
    assert 'python -m pip install ".[notebook,mnist]"' in notebook.cells[0].source


def test_the_download_menu_of_a_chapter_offers_its_executed_notebook_and_the_archive():
    from types import SimpleNamespace

    app = SimpleNamespace(builder=SimpleNamespace(name="html"),
                          env=SimpleNamespace(found_docs={"book/vae", "book/intro"},
                                              doc2path=lambda docname: ROOT / f"{docname}.ipynb"))
    source, pdf = {"label": "download-source-button"}, {"label": "download-pdf-button"}

    def context():
        return {"pathto": lambda target, resource: f"../{target}",
                "header_buttons": [{"label": "download-buttons", "buttons": [source, pdf]}]}

    page = context()
    takeaway._add_downloads(app, "book/vae", "page.html", page, None)
    buttons = page["header_buttons"][0]["buttons"]
    assert buttons[0] is source and buttons[-1] is pdf
    assert [button["url"] for button in buttons[1:-1]] == ["../notebooks/vae.ipynb",
                                                           f"../notebooks/{takeaway.ARCHIVE_NAME}"]
    app.env.doc2path = lambda docname: ROOT / f"{docname}.md"
    page = context()
    takeaway._add_downloads(app, "book/intro", "page.html", page, None)
    assert page["header_buttons"][0]["buttons"] == [source, pdf], "a Markdown page has no executed notebook"


# ------------------------------------------------------------------------------------------------
# The built book

def _code(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def _executed(built_book: Path, chapter: str):
    path = built_book / takeaway.notebook_file(chapter)
    assert path.is_file(), f"{path} is missing"
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_downloads_as_an_executed_notebook_that_says_what_it_needs(built_book, chapter):
    notebook = _executed(built_book, chapter)
    nbformat.validate(notebook)
    source = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
    assert _code(notebook) == _code(source), "the download is not the chapter's current code"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code_cells), "a code cell was not executed"
    assert any(cell.outputs for cell in code_cells), "the download holds no outputs"

    first = notebook.cells[0]
    assert first.cell_type == "markdown" and takeaway.NOTE_TITLE in first.source
    match = INSTALL.search(first.source)
    assert match, first.source
    extras = match.group(1).split(",")
    code = "\n".join(_code(source))
    # What the chapter visibly calls must be among the derived extras.
    for call, extra in [("load_mnist_subset", "mnist"), ("interactive.", "interactive"),
                        ("cooper_cross_check", "cooper"), ("vaelib.sweep", "sweep")]:
        if call in code:
            assert extra in extras, f"{chapter} calls {call} but its note asks for {extras}"
    assert extras[0] == "notebook"

    page = (built_book / f"{chapter}.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert takeaway.NOTE_TITLE in text and match.group(0) in text, "the page's note differs from the notebook's"
    href = re.escape(takeaway.notebook_file(chapter).rsplit("/", 1)[-1])
    links = re.findall(rf'href="(?:\.\./)+{takeaway.NOTEBOOKS_DIR}/{href}"', page)
    assert len(links) >= 2, "the note and the download menu should both link the executed notebook"
    assert "download-executed-notebook-button" in page and "download-all-notebooks-button" in page


def test_the_archive_holds_every_executed_notebook(built_book):
    archive = built_book / takeaway.NOTEBOOKS_DIR / takeaway.ARCHIVE_NAME
    with zipfile.ZipFile(archive) as bundle:
        names = sorted(bundle.namelist())
        assert names == sorted(f"{Path(chapter).name}.ipynb" for chapter in CHAPTERS)
        for name in names:
            assert bundle.read(name) == (built_book / takeaway.NOTEBOOKS_DIR / name).read_bytes(), name


def test_the_introduction_links_the_archive(built_book):
    intro = (built_book / "book" / "intro.html").read_text(encoding="utf-8")
    assert f'href="../{takeaway.NOTEBOOKS_DIR}/{takeaway.ARCHIVE_NAME}"' in intro
    assert 'id="sec-run-yourself"' in intro or 'id="run-the-chapters-yourself"' in intro

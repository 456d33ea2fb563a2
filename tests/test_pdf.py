"""The whole book as one PDF, built offline by `python3 tasks.py pdf` (tasks.pdf): it opens, and
holds every page of the book with its equations, figures and tables.

It builds the single-page HTML from the execution cache that the session's book build filled
(the ``book_build`` fixture), so no chapter is executed again, then prints it in Chromium.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from pypdf import PdfReader

import tasks

ROOT = Path(__file__).resolve().parents[1]


def _title(page: str) -> str:
    """A page's title: the first level-1 heading of its notebook or Markdown file."""
    path = ROOT / f"{page}.ipynb"
    if path.is_file():
        text = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells
                         if cell.cell_type == "markdown")
    else:
        text = (ROOT / f"{page}.md").read_text()
    return re.search(r"^# (.+)$", text, re.MULTILINE).group(1).strip()


def _words(text: str) -> str:
    """Lower case, one space for any run of white space, straight quotes for typographic ones."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip().lower()


@pytest.fixture(scope="module")
def book_pdf(book_build):
    if not tasks.cache_dir(book_build.output).is_dir():
        pytest.skip(f"no execution cache beside the book built at {book_build.html} to build the PDF from")
    assert tasks.pdf(book_build.output) == 0, "tasks.pdf failed: see its output above"
    return PdfReader(book_build.output / tasks.PDF_NAME)


@pytest.fixture(scope="module")
def pdf_text(book_pdf):
    return _words(" ".join(page.extract_text() or "" for page in book_pdf.pages))


def test_the_pdf_holds_every_page_of_the_book_in_order(pdf_text):
    titles = [_title(page) for page in tasks.toc_files()]
    positions = [pdf_text.find(_words(title)) for title in titles]
    missing = [title for title, position in zip(titles, positions) if position < 0]
    assert not missing, f"titles missing from the PDF: {missing}"
    assert positions == sorted(positions), "the pages are not in the order of _toc.yml"


def test_the_pdf_has_the_figures_the_equations_and_the_tables(book_pdf, pdf_text, book_build):
    images = sum(len(page.images) for page in book_pdf.pages)
    html = (book_build.output / "_build" / "singlehtml" / "index.html").read_text(encoding="utf-8")
    figures = len(re.findall(r"<img ", html))
    assert images >= figures * 0.9, f"{images} images in the PDF for {figures} on the page"
    # tasks.pdf refuses to print while a formula is untypeset or MathJax reports an error; the text
    # holds no TeX source either (a code cell's Python string "\\mathcal" is code, not a formula).
    untypeset = re.search(r"(?<!\\)\\(frac|mathbf|mathcal|begin\{|sum_|left)|\$\$", pdf_text)
    assert not untypeset, f"raw TeX in the PDF: ...{pdf_text[max(0, untypeset.start() - 80):untypeset.end() + 40]}..."
    # The chapter map, a table of the introduction, with its header and one row's text.
    assert _words("What you take away") in pdf_text and _words("the reconstruction error") in pdf_text
    assert len(book_pdf.pages) > 50, json.dumps({"pages": len(book_pdf.pages)})

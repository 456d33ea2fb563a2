"""One table renderer for every experiment (vaelib.tables)."""
import pytest

from vaelib.tables import render_table

HEADER, ROWS = ["method", "R"], [["ELBO", "1.05"], ["σ-VAE", "0.033 <"]]


def test_text_markdown_and_html():
    text = render_table(HEADER, ROWS, "text", title="T")
    assert text.splitlines() == ["T", "method  R", "ELBO    1.05", "σ-VAE   0.033 <"]
    markdown = render_table(HEADER, ROWS, "markdown")
    assert markdown.splitlines() == ["| method | R |", "|---|---|", "| ELBO | 1.05 |", "| σ-VAE | 0.033 < |"]
    html = render_table(HEADER, ROWS, "html", title="T")
    assert html.startswith("<table><caption>T</caption>") and "0.033 &lt;" in html


def test_bad_input():
    with pytest.raises(ValueError, match="style must be one of"):
        render_table(HEADER, ROWS, "latex")
    with pytest.raises(ValueError, match="row 0 has 1 cells, the header 2"):
        render_table(HEADER, [["ELBO"]])

"""One table renderer for every experiment (vaelib.tables)."""
import pytest

from vaelib.tables import mean_std_cell, render_table

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


def test_mean_std_cells():
    assert mean_std_cell(0.0123456, 0.00123) == "0.0123 ±\u00a00.0012"
    assert mean_std_cell(56832.4, 2740.2) == "56832 ±\u00a02740"  # no exponent notation from 10**digits on
    assert mean_std_cell(56832.4, 2740.2, digits=5) == "56832 ±\u00a02740"
    assert mean_std_cell(3.14159, 0.0271828) == "3.14 ±\u00a00.027"
    assert mean_std_cell(1.23456, 0.5, digits=4) == "1.235 ±\u00a00.5"
    assert mean_std_cell(0.5, None) == mean_std_cell(0.5, float("nan")) == "0.5"  # one run: no spread
    assert mean_std_cell(None, None) == mean_std_cell(float("nan"), 0.1) == "–"

"""One table renderer for every experiment (vaelib.tables)."""
import numpy as np
import pytest

from vaelib.claims import SeedSummary
from vaelib.tables import (MINUS, NO_BREAK, Column, column_figures, format_number, legend, mean_std_cell,
                           render_table)

HEADER, ROWS = ["method", "R"], [["ELBO", "1.05"], ["σ-VAE", "0.033 <"]]
PM = f" ±{NO_BREAK}"


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
    with pytest.raises(TypeError, match=r"row 1, column 1 is \[1.0, 2.0\]; give a number, \(mean, std\)"):
        render_table(HEADER, [["a", 1.0], ["b", [1.0, 2.0]]])
    with pytest.raises(ValueError, match="reference_rows holds 2, but the table has 2 rows"):
        render_table(HEADER, ROWS, reference_rows={2})
    with pytest.raises(ValueError, match="better must be one of"):
        Column("R", "smaller")


def test_mean_std_cells():
    assert mean_std_cell(0.0123456, 0.00123) == f"0.0123{PM}0.0012"
    assert mean_std_cell(56832.4, 2740.2) == f"56832{PM}2740"  # a large number in full, never 5.68e+04
    assert mean_std_cell(3.14159, 0.0271828) == f"3.14{PM}0.03"  # the spread at the mean's decimals
    assert mean_std_cell(4.0, 0.027) == f"4.00{PM}0.03"  # trailing zeros kept: not "4 ± 0.027"
    assert mean_std_cell(1.66, 0.0002, figures=4) == f"1.660{PM}0.0002"  # never rounded to ± 0.000
    assert mean_std_cell(0.0102, 7.1e-05) == f"0.0102{PM}0.0001"  # never 7.1e-05
    assert mean_std_cell(1.66, 4.2e-05, figures=4) == f"1.660{PM}0.00004"  # never 4.2e-05
    assert mean_std_cell(-159.5, 4.2) == f"{MINUS}160{PM}4"  # a true minus: no break after it
    assert mean_std_cell(0.0, 0.0) == f"0{NO_BREAK}(all{NO_BREAK}runs)"  # not "0 ± 0"
    assert mean_std_cell(0.5, None) == mean_std_cell(0.5, float("nan")) == "0.500"  # one run: no spread
    assert mean_std_cell(None, None) == mean_std_cell(float("nan"), 0.1) == "–"


def test_numbers_never_use_exponents():
    assert format_number(4.2e-05) == "0.0000420"
    assert format_number(9.9996) == "10.0"  # three figures after rounding, not "10.00"
    assert format_number(-0.0004) == f"{MINUS}0.000400" and format_number(0.0) == "0"
    for x in (1e-7, 3.3e-5, 123456789.0, -2.5e6):
        assert "e" not in format_number(x) and "-" not in format_number(x)


def test_one_format_per_column():
    """The issue saw "4 ± 0.027" beside "0.0412 ± 0.00095": each column now has one number of
    significant figures, 4 where a cell's spread needs it, and keeps it for every cell."""
    assert column_figures([(1.05, 0.016), (0.0412, 0.00095)]) == 3
    assert column_figures([(1.05, 0.016), (0.0102, 7.1e-05)]) == 4
    assert column_figures([(0.5, None), "–", None]) == 3
    header = ["objective", Column("R"), Column("KL")]
    rows = [["ELBO", (1.05, 0.016), (0.497, 0.015)], ["K7", (0.0102, 7.1e-05), (18.4, 0.16)],
            ["β-VAE", (0.0412, 0.00095), (4.0, 0.027)]]
    lines = render_table(header, rows, "markdown").splitlines()
    assert lines[2] == f"| ELBO | 1.050{PM}0.016 | 0.497{PM}0.015 |"
    assert lines[3] == f"| K7 | 0.01020{PM}0.00007 | 18.4{PM}0.2 |"
    assert lines[4] == f"| β-VAE | 0.04120{PM}0.00095 | 4.00{PM}0.03 |"


def test_best_value_marked_with_ties_over_seeds():
    header = ["objective", Column("energy", "lower"), Column("cells covered", "higher"), Column("KL")]
    rows = [["fresh data", SeedSummary(0.001, 0.001, 5), SeedSummary(0.999, 0.001, 5), None],
            ["A", SeedSummary(0.010, 0.002, 5), SeedSummary(0.90, 0.01, 5), (1.0, 0.1, 5)],
            ["B", SeedSummary(0.011, 0.002, 5), SeedSummary(0.95, 0.01, 5), (0.5, 0.1, 5)],  # tied with A
            ["C", SeedSummary(0.100, 0.002, 5), SeedSummary(0.50, 0.01, 5), (9.0, 0.1, 5)]]
    markdown = render_table(header, rows, "markdown", reference_rows={0})
    lines = markdown.splitlines()
    assert lines[0] == f"| objective | energy{NO_BREAK}↓ | cells covered{NO_BREAK}↑ | KL |"
    assert "**" not in lines[2]  # the reference row is never marked, though its numbers are best
    assert lines[3].count("**") == 2 and f"**0.0100{PM}0.0020**" in lines[3]
    assert f"**0.0110{PM}0.0020**" in lines[4] and f"**0.950{PM}0.010**" in lines[4]  # B: 0.8 s.e. from A
    assert "**" not in lines[5]  # C is clearly worse in both, and KL is not ranked
    assert len(lines) == 6  # no title: the page's caption carries the legend
    text = render_table(header, rows, "text", reference_rows={0}).splitlines()
    assert text[2].count(" *") == 1 and text[3].count(" *") == 2 and "*" not in text[1] + text[4]
    note = " ".join(text[5:])  # the legend below the table, wrapped for a terminal
    assert note.startswith("↓ lower is better; ↑ higher is better. *: the best mean")
    assert "within 2 combined standard errors" in note and "“fresh data” is not ranked" in note
    assert max(map(len, text[5:])) <= 88 and len(text) > 6
    html = render_table(header, rows, "html", title="T", reference_rows={0})
    assert html.count("<strong>") == 3 and "<caption>T ↓ lower is better" in html


def test_without_seeds_only_the_best_value_is_marked():
    header = ["cloud", Column("distance", "lower")]
    rows = [["data", 0.08], ["proposed", 0.0301], ["ELBO", 0.0302]]
    lines = render_table(header, rows, "markdown", reference_rows=[0], show_legend=True).splitlines()
    assert lines[3] == "| proposed | **0.0301** |" and lines[4] == "| ELBO | 0.0302 |"
    assert lines[-1] == legend(header, over_seeds=False, reference=["data"])
    assert "the best value in each ranked column (and any that reads the same);" in lines[-1]
    same = render_table(header, [*rows, ["AAE", 0.03012]], "markdown", reference_rows=[0]).splitlines()
    assert same[3] == "| proposed | **0.0301** |" and same[5] == "| AAE | **0.0301** |"  # equal as shown
    assert legend(["a", Column("R")]) == ""  # nothing ranked, nothing to explain


def test_numpy_numbers_and_nan_means():
    header = ["x", Column("v", "higher")]
    lines = render_table(header, [["a", np.float32(0.5)], ["b", (float("nan"), 0.1)]], "markdown").splitlines()
    assert lines[2:] == ["| a | 0.500 |", "| b | – |"]  # one ranked value: nothing to mark


def test_a_settings_value_in_a_label_stays_whole():
    lines = render_table(["objective", "R"], [["β-VAE, β = 0.03", 0.5]], "markdown").splitlines()
    assert lines[2] == f"| β-VAE, β{NO_BREAK}={NO_BREAK}0.03 | 0.500 |"

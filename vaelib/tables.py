"""Tables of results for a terminal, a README or a notebook page: one renderer for every experiment.

``render_table(header, rows, style)`` with ``style`` one of ``STYLES``: ``"text"`` (aligned
columns), ``"markdown"`` (a pipe table) or ``"html"`` (cells escaped). A title, when given, goes
above the table (its caption in HTML); a book page that numbers its own caption passes none.

The cells are numbers, not strings, so that the renderer can format each column one way:

* a header entry is a string or a ``Column``, whose ``better`` ("lower" or "higher") makes it a
  quality column: its heading carries "↓" or "↑", and its best value is marked (bold in Markdown
  and HTML, a trailing "*" in text). With the seeds' counts (``SeedSummary`` cells), every value
  not clearly worse than the best (within ``margin`` combined standard errors, ``vaelib.claims``)
  is marked too: the seeds do not separate them. ``reference_rows`` (the noise level of fresh
  data, say) are shown but not ranked. ``legend(...)`` is the sentence that says all this; a
  text table prints it below itself, a page puts it in its caption.
* a cell is a number (one run), ``(mean, std)``, ``(mean, std, n)`` or a ``SeedSummary`` (mean ±
  std over seeds), ``None`` ("–", missing), or a string shown as it is (a label, a value quoted
  from a paper as printed there), but for no-break spaces around " = " ("β = 0.03" stays whole).
* a column's means all have the same number of significant figures (``column_figures``: 3, or 4
  where a cell needs them to show its spread), trailing zeros kept; a spread has its mean's
  decimals. No exponent notation and a true minus sign (U+2212), so that no browser breaks a
  number; a no-break space joins "±" and the spread (a narrow column may break before the "±").

Used by Table 1 (Part IV), the comparison (Part III), the multiplier rules (Part III), the sweep's
summary and the chapters' own tables.
"""
from __future__ import annotations

import html
import math
import numbers
import textwrap
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal

from vaelib import _checks
from vaelib.claims import MARGIN, SeedSummary, separation

STYLES = ("text", "markdown", "html")
BETTER = ("lower", "higher")
NO_BREAK = "\u00a0"
MINUS = "\u2212"
FIGURES = (3, 4)  # a column's significant figures: the first, or the second where a spread needs it
TEXT_MARK = "*"   # how a text table marks a best value
TEXT_WIDTH = 88   # a text table's legend is wrapped at this width
ARROWS = {"lower": "↓", "higher": "↑"}
MISSING = "–"


@dataclass(frozen=True)
class Column:
    """A column's label and, for a quality column, whether a ``"lower"`` or ``"higher"`` value is
    better (None: the column is not ranked, as a trade-off such as R or the KL is not)."""

    label: str
    better: str | None = None

    def __post_init__(self) -> None:
        if self.better is not None:
            _checks.one_of("better", self.better, BETTER)

    @property
    def heading(self) -> str:
        return self.label if self.better is None else f"{self.label}{NO_BREAK}{ARROWS[self.better]}"


Stat = tuple[float, float | None, int | None]  # mean, spread (None: one run), seeds (None: unknown)


def _stat(cell: object, where: str) -> Stat | str | None:
    """A cell as a string to show as it is, None (missing) or (mean, std, n)."""
    if cell is None or isinstance(cell, str):
        return cell
    if isinstance(cell, SeedSummary):
        return float(cell.mean), float(cell.std), int(cell.n)
    if isinstance(cell, numbers.Real) and not isinstance(cell, bool):
        return float(cell), None, None
    if isinstance(cell, tuple) and len(cell) in (2, 3) and all(
            v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in cell):
        mean, std, n = (*cell, None) if len(cell) == 2 else cell
        return (float("nan") if mean is None else float(mean), None if std is None else float(std),
                None if n is None else int(n))
    raise TypeError(f"{where} is {cell!r}; give a number, (mean, std), (mean, std, n), a "
                    "vaelib.claims.SeedSummary, None for a missing value, or a string")


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _lead(x: float, figures: int) -> int:
    """The power of ten of ``x``'s first digit once rounded to ``figures`` significant figures."""
    return math.floor(math.log10(abs(float(f"{x:.{figures - 1}e}"))))


def _decimals(x: float, figures: int) -> int:
    return max(0, figures - 1 - _lead(x, figures))


def _fixed(x: float, decimals: int) -> str:
    text = f"{abs(x):.{decimals}f}"
    return (MINUS if x < 0 and text.strip("0.") else "") + text


def format_number(x: float, figures: int = FIGURES[0]) -> str:
    """``x`` with ``figures`` significant figures, trailing zeros kept, without exponent notation
    (a large number in full: 56832) and with a true minus sign; "0" for zero, "–" for NaN."""
    if not math.isfinite(x):
        return MISSING if math.isnan(x) else ("" if x > 0 else MINUS) + "∞"
    return "0" if x == 0 else _fixed(x, _decimals(x, figures))


def mean_std_cell(mean: float | None, std: float | None, figures: int = FIGURES[0]) -> str:
    """One "mean ± std" cell: the mean with ``figures`` significant figures, the spread with the
    mean's decimals (with one significant figure where those would round it to 0). "–" for a
    missing or NaN mean; the mean alone when there is no spread (one run); "0 (all runs)" when
    every run gave exactly 0."""
    if mean is None or math.isnan(mean):
        return MISSING
    if not _finite(std):
        return format_number(mean, figures)
    assert std is not None
    if mean == 0:
        if std == 0:
            return f"0{NO_BREAK}(all{NO_BREAK}runs)"
        decimals = max(0, 1 - _lead(std, 2))
    else:
        decimals = _decimals(mean, figures)
    spread = _fixed(std, decimals)
    if std > 0 and not spread.strip("0."):
        spread = _fixed(std, -_lead(std, 1))
    return f"{_fixed(mean, decimals)} ±{NO_BREAK}{spread}"


def as_printed(mean: float, std: float | None = None) -> str:
    """A quoted value (a paper's "10.53 ± 13.9"), as a string cell: its shortest digits, not
    re-rounded to the column's figures, without exponent notation and with a true minus sign."""
    def shortest(x: float) -> str:
        text = format(Decimal(repr(float(x))).normalize(), "f")
        return MINUS + text[1:] if text.startswith("-") else text

    return shortest(mean) if std is None else f"{shortest(mean)} ±{NO_BREAK}{shortest(std)}"


def column_figures(cells: Sequence[object]) -> int:
    """The significant figures of a column's means: ``FIGURES[0]``, or ``FIGURES[1]`` where a cell
    needs them to show its spread's first digit."""
    needed = FIGURES[0]
    for cell in cells:
        stat = _stat(cell, "a cell")
        if isinstance(stat, tuple):
            mean, std, _ = stat
            if _finite(mean) and mean != 0 and _finite(std) and std:
                assert std is not None
                needed = max(needed, _lead(mean, FIGURES[1]) - _lead(std, 1) + 1)
    return min(needed, FIGURES[1])


def _format(stat: Stat | str | None, figures: int) -> str:
    if stat is None:
        return MISSING
    if isinstance(stat, str):  # a label's setting stays whole: "β-VAE, β = 0.03" never ends a line at "="
        return stat.replace(" = ", f"{NO_BREAK}={NO_BREAK}")
    return mean_std_cell(stat[0], stat[1], figures)


def _marked(column: Column, stats: Sequence[Stat | str | None], texts: Sequence[str],
            reference_rows: Collection[int], margin: float) -> tuple[set[int], bool]:
    """The rows whose value is marked in a quality column, and whether ties were judged over seeds
    (without the seeds' counts: the values that read the same as the best)."""
    ranked = [(i, s) for i, s in enumerate(stats)
              if i not in reference_rows and isinstance(s, tuple) and math.isfinite(s[0])]
    if column.better is None or len(ranked) < 2:
        return set(), False
    pick = min if column.better == "lower" else max
    first, best = pick(ranked, key=lambda item: item[1][0])
    marked = {i for i, s in ranked if s[0] == best[0] or texts[i] == texts[first]}
    over_seeds = all(_finite(s[1]) and s[2] is not None and s[2] >= 2 for _, s in ranked)
    if over_seeds:
        def summary(s: Stat) -> SeedSummary:
            return SeedSummary(s[0], s[1] or 0.0, s[2] or 0)
        marked |= {i for i, s in ranked if abs(separation(summary(s), summary(best))) <= margin}
    return marked, over_seeds


def legend(columns: Sequence[str | Column], *, style: str = "markdown", over_seeds: bool = True,
           reference: Sequence[str] = (), margin: float = MARGIN) -> str:
    """The sentence that explains a table's arrows and marks (empty when no column is ranked):
    for a page's caption, or below a text table. ``over_seeds``: ties within ``margin`` combined
    standard errors are marked too; ``reference``: the labels of the rows that are not ranked."""
    _checks.one_of("style", style, STYLES)
    directions = {c.better for c in columns if isinstance(c, Column) and c.better}
    if not directions:
        return ""
    arrows = "; ".join(f"{ARROWS[d]} {d} is better" for d in BETTER if d in directions)
    mark = f"{TEXT_MARK}:" if style == "text" else "Bold:"
    best = "the best mean in each ranked column" if over_seeds else "the best value in each ranked column (and any that reads the same)"
    ties = (f", and every mean the seeds do not separate from it (within {margin:g} combined "
            "standard errors)") if over_seeds else ""
    names = " and ".join(f"“{name}”" for name in reference)
    unranked = f"; {names} {'is' if len(reference) == 1 else 'are'} not ranked" if reference else ""
    return f"{arrows}. {mark} {best}{ties}{unranked}."


def render_table(header: Sequence[str | Column], rows: Sequence[Sequence[object]], style: str = "text",
                 title: str | None = None, *, reference_rows: Collection[int] = (),
                 show_legend: bool | None = None, margin: float = MARGIN) -> str:
    """``rows`` (one cell per column of ``header``; see the module's notes) as a table in ``style``.
    ``show_legend``: print ``legend`` below the table (in HTML: in its caption); by default a text
    table does and a Markdown or HTML one only with a title (a book page's caption says it)."""
    _checks.one_of("style", style, STYLES)
    columns = [c if isinstance(c, Column) else Column(str(c)) for c in header]
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"row {i} has {len(row)} cells, the header {len(columns)}; give one cell per column")
    for i in reference_rows:
        if not 0 <= i < len(rows):
            raise ValueError(f"reference_rows holds {i}, but the table has {len(rows)} rows (0 to {len(rows) - 1})")
    stats = [[_stat(cell, f"row {i}, column {j}") for j, cell in enumerate(row)] for i, row in enumerate(rows)]
    texts = [[""] * len(columns) for _ in rows]
    marks: list[set[int]] = []
    over_seeds = True
    for j, column in enumerate(columns):
        cells = [row[j] for row in stats]
        figures = column_figures([c for c in cells if isinstance(c, tuple)])
        for i, cell in enumerate(cells):
            texts[i][j] = _format(cell, figures)
        marked, seeds = _marked(column, cells, [row[j] for row in texts], reference_rows, margin)
        marks.append(marked)
        over_seeds = over_seeds and (seeds or not marked)
    reference = [texts[i][0] for i in sorted(reference_rows)]
    note = legend(columns, style=style, over_seeds=over_seeds, reference=reference, margin=margin)
    if show_legend is None:
        show_legend = style == "text" or title is not None
    note = note if show_legend else ""
    headings = [c.heading for c in columns]
    if style == "markdown":
        body = [[f"**{t}**" if i in marks[j] else t for j, t in enumerate(row)] for i, row in enumerate(texts)]
        lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(headings) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body] + (["", note] if note else []))
    if style == "html":
        def html_cell(tag: str, text: str, bold: bool) -> str:
            inner = f"<strong>{html.escape(text)}</strong>" if bold else html.escape(text)
            return f"<{tag}>{inner}</{tag}>"

        words = " ".join(part for part in (title, note) if part)
        caption = f"<caption>{html.escape(words)}</caption>" if words else ""
        head = "".join(html_cell("th", h, False) for h in headings)
        rows_html = "".join("<tr>" + "".join(html_cell("td", t, i in marks[j]) for j, t in enumerate(row)) + "</tr>"
                            for i, row in enumerate(texts))
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"
    note = textwrap.fill(note, TEXT_WIDTH)  # a terminal's or a printed cell's width
    return "\n".join(([title] if title else []) + _text_lines(headings, texts, marks) + ([note] if note else []))


def _text_lines(headings: list[str], texts: list[list[str]], marks: list[set[int]]) -> list[str]:
    """Aligned columns, each "mean ± std" aligned on its "±", a best value followed by the mark."""
    columns = []
    for j, heading in enumerate(headings):
        cells = [row[j] for row in texts]
        split = [c.split(" ±", 1) if " ±" in c else [c, ""] for c in cells]
        if any(right for _, right in split):
            left = max(len(a) for a, _ in split)
            right = max(len(b) for _, b in split)
            cells = [a.rjust(left) + (" ±" + b if b else "").ljust(right + 2) for a, b in split]
        cells = [c + (f" {TEXT_MARK}" if i in marks[j] else "") for i, c in enumerate(cells)]
        columns.append([heading, *cells])
    widths = [max(len(c) for c in column) for column in columns]
    return ["  ".join(column[i].ljust(w) for column, w in zip(columns, widths)).rstrip()
            for i in range(len(texts) + 1)]

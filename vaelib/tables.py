"""Tables of results for a terminal, a README or a notebook page: one renderer for every experiment.

``mean_std_cell(mean, std)`` writes one "mean ± std" cell the same way for all of them.
``render_table(header, rows, style)`` with ``style`` one of ``STYLES``: ``"text"`` (aligned
columns), ``"markdown"`` (a pipe table) or ``"html"`` (cells escaped). A title, when given, goes
above the table (its caption in HTML); a book page that numbers its own caption passes none.
Used by Table 1 (Part IV), the comparison (Part III) and the sweep's summary.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

from vaelib import _checks

STYLES = ("text", "markdown", "html")
NO_BREAK = "\u00a0"


def mean_std_cell(mean: float | None, std: float | None, digits: int = 3) -> str:
    """One "mean ± std" cell: ``digits`` significant digits for the mean, two for the spread. A
    narrow column may break the line before the "±" (the spread goes under the mean), never between
    the "±" and the spread: a no-break space joins them. Whole numbers
    where ``g`` would switch to exponent notation (a mean from 10**digits on, a spread from 100
    on). "–" for a missing or NaN mean; the mean alone when there is no spread (one run)."""
    if mean is None or math.isnan(mean):
        return "–"
    large = abs(mean) >= 10 ** digits
    text = f"{mean:.0f}" if large else f"{mean:.{digits}g}"
    if std is None or math.isnan(std):
        return text
    spread = f"{std:.0f}" if large or abs(std) >= 100 else f"{std:.2g}"
    return f"{text} ±{NO_BREAK}{spread}"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], style: str = "text",
                 title: str | None = None) -> str:
    """``rows`` (lists of cell strings, one per column of ``header``) as a table in ``style``."""
    _checks.one_of("style", style, STYLES)
    rows = [[str(cell) for cell in row] for row in rows]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {i} has {len(row)} cells, the header {len(header)}; give one cell per column")
    if style == "markdown":
        lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    if style == "html":
        def cells(tag: str, row: Sequence[str]) -> str:
            return "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row)

        caption = f"<caption>{html.escape(title)}</caption>" if title else ""
        body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
        return f"<table>{caption}<thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(([title] if title else []) + lines)

"""Tables of results for a terminal, a README or a notebook page: one renderer for every experiment.

``render_table(header, rows, style)`` with ``style`` one of ``STYLES``: ``"text"`` (aligned
columns), ``"markdown"`` (a pipe table) or ``"html"`` (cells escaped). A title, when given, goes
above the table (its caption in HTML); a book page that numbers its own caption passes none.
Used by Table 1 (Part IV), the comparison (Part III) and the sweep's summary.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

from vaelib import _checks

STYLES = ("text", "markdown", "html")


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

"""The book's own Sphinx extension (loaded by _config.yml, `sphinx: local_extensions`).

Small jobs, each a fix or a feature that no configuration value provides:
- keep the theme's menu button working (``_keep_one_menu_button``);
- label the bibliography by author and year, as the text cites (``AuthorYearLabelStyle``);
- serve plotly.js from the book's own ``_static`` to the pages that show an interactive figure,
  fetched by book.js, with the figure's own script, when a figure nears the screen
  (``_plot_when_reached``), never in <head>; images load when reached (``_images_when_reached``);
- show each chapter's figure at its natural size at most, and on a phone never so small that its
  smallest text is under vaelib.plots.MIN_TEXT_PX: wider, it scrolls in its box; a tap or click
  opens it alone, at full size (``_figures_at_their_size``);
- leave out the theme's fontawesome.js (``_without_fontawesome_script``).
"""
from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pybtex.plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinxcontrib.bibtex.style.referencing import PersonStyle
from sphinxcontrib.bibtex.style.template import join, year

from vaelib.interactive import PLOTLYJS_ENV, plotlyjs_path
from vaelib.plots import MIN_TEXT_PX, png_facts

PLOTLYJS_STATIC = "plotly/plotly.min.js"  # under the built book's _static
PLOTLY_FIGURE_MARKER = 'class="plotly-graph-div"'
# What plotly's figure HTML calls to draw (plotly.io.to_html), and what the book calls instead:
# book.js's vaebookPlot keeps the figure until plotly.js has arrived.
PLOTLY_DRAW_CALL, BOOK_DRAW_CALL = "Plotly.newPlot(", "window.vaebookPlot("
FIGURE_SCRIPT = re.compile(r"<script[^>]*>((?:(?!</script>).)*?Plotly\.newPlot\((?:(?!</script>).)*)</script>", re.S)
FIGURE_ID = re.compile(r'getElementById\("([\w-]+)"\)')
FIGURE_SCRIPTS = "figures"  # under the built book's _static: each 3-D figure's script, by element id
IMG_TAG = re.compile(r"<img (?![^>]*\bloading=)")
IMG_ELEMENT = re.compile(r"<img\b[^>]*>")
IMG_SRC = re.compile(r'\bsrc="([^"]+)"')
# pydata-sphinx-theme's template that puts fontawesome.js (1.5 MB) in every page's <head>.
THEME_MACROS = "static/webpack-macros.html"
FONTAWESOME_SCRIPT = re.compile(r'\s*<script defer src="[^"]*_static/scripts/fontawesome\.js[^"]*"></script>')
BIBLIOGRAPHY_STYLE = "vaebook_author_year"


def _keep_one_menu_button(app, config) -> None:
    """Make the visible menu button the page's only `.primary-toggle`.

    sphinx-book-theme 1.3.0 pins pydata-sphinx-theme 0.17.1. Unless the book sets
    `navbar_persistent` itself, pydata-sphinx-theme 0.17 defaults it to a search field (it does not
    see the book theme's empty default in theme.conf), so the hidden top navbar is rendered, and
    with it a second menu button placed before the book theme's. Both themes' scripts attach the
    menu to the *first* `.primary-toggle` of the page, the hidden one, so the visible button did
    nothing at any width (pydata/pydata-sphinx-theme#2451). Setting the book theme's own default
    keeps the navbar empty; its search field is in the sidebar and the article header anyway.
    """
    config.html_theme_options.setdefault("navbar_persistent", [])


class AuthorYearLabelStyle(BaseLabelStyle):
    """Bibliography labels "Kingma and Welling, 2014", written by the same template as the
    author-year citations in the text (`bibtex_reference_style: author_year`), so the two agree;
    a repeated label gets a letter ("2014a", "2014b")."""

    _person = PersonStyle()
    _template = join(sep=", ")[_person.author_or_editor_or_title(full=False), year]

    def format_labels(self, sorted_entries):
        labels = [self._template.format_data({"entry": entry, "style": SimpleNamespace(person=self._person)})
                  .render_as("text") for entry in sorted_entries]
        repeated = {label for label in labels if labels.count(label) > 1}
        seen: dict[str, int] = {}
        for label in labels:
            if label in repeated:
                seen[label] = seen.get(label, 0) + 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class AuthorYearStyle(UnsrtStyle):
    """The unsrt entry format, sorted by author, year and title, labelled by author and year."""
    default_sorting_style = "author_year_title"
    default_label_style = BIBLIOGRAPHY_STYLE


def _mark_book_build(app, config) -> None:
    """Chapters executed by this build show plotly figures without embedding plotly.js: the page
    loads it (see vaelib.interactive). The kernels inherit this process's environment."""
    os.environ[PLOTLYJS_ENV] = "page"


def _plot_when_reached(app, pagename, templatename, context, doctree) -> None:
    """A page that shows a plotly figure draws it through book.js when the figure nears the
    screen: book.js fetches plotly.js (4.8 MB) and then the figure's own script (its points, a few
    hundred kilobytes), which this moves out of the page into _static/figures/. On a slow line the
    text shows first, and a reader who never reaches the figure downloads neither. No other page
    refers to plotly.js."""
    body = context.get("body", "")
    if PLOTLY_FIGURE_MARKER not in body:
        return
    folder = Path(app.outdir) / "_static" / FIGURE_SCRIPTS

    def move_out(match: re.Match) -> str:
        script = match.group(1)
        div_id = FIGURE_ID.search(script)
        if div_id is None:
            raise RuntimeError(f"{pagename}: a plotly figure script names no element: plotly's HTML changed; "
                               "update book/_ext/vaebook.py")
        target = folder / f"{div_id.group(1)}.js"
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(script.replace(PLOTLY_DRAW_CALL, BOOK_DRAW_CALL), encoding="utf-8")
        partial.replace(target)
        url = context["pathto"](f"_static/{FIGURE_SCRIPTS}/{target.name}", 1)
        return f'<script>window.vaebookPlotLater("{div_id.group(1)}", "{url}");</script>'

    body, moved = FIGURE_SCRIPT.subn(move_out, body)
    if not moved:
        raise RuntimeError(f"{pagename}: a plotly figure without {PLOTLY_DRAW_CALL!r}: plotly's HTML "
                           "changed; update book/_ext/vaebook.py and book.js (vaebookPlotLater)")
    context["body"] = body


def _images_when_reached(app, pagename, templatename, context, doctree) -> None:
    """Images load when the reader nears them (loading="lazy"), so that on a slow line the text,
    its stylesheets and MathJax do not share the line with every figure of the chapter."""
    if "body" in context:
        context["body"] = IMG_TAG.sub('<img loading="lazy" ', context["body"])


def _figures_at_their_size(app, pagename, templatename, context, doctree) -> None:
    """Each figure a chapter drew (a PNG that vaelib.plots.figure_png wrote, with its smallest
    text recorded) gets its natural size as width and height, which book.css makes its largest
    size (never scaled up, never blurred) and which keeps its place while it loads; and a
    min-width at which its smallest text is still MIN_TEXT_PX CSS pixels high. On a phone a figure
    that cannot shrink to the column scrolls sideways in its box (a link that opens it alone, at
    full size, for a closer look). Other images are left as they are."""
    body = context.get("body", "")
    if "<img" not in body:
        return
    sources = {unique: Path(app.srcdir, path) for path, (_, unique) in app.env.images.items()}

    def sized(match: re.Match) -> str:
        img = match.group(0)
        src = IMG_SRC.search(img)
        source = sources.get(Path(src.group(1)).name) if src else None
        if source is None or source.suffix.lower() != ".png" or not source.is_file():
            return img
        width, height, smallest = png_facts(source.read_bytes())
        if smallest is None:
            return img
        min_width = min(width, math.ceil(width * MIN_TEXT_PX / smallest))
        attributes = (f' width="{width}" height="{height}" data-smallest-text-px="{smallest:g}"'
                      f' style="min-width: {min_width}px"')
        return (f'<a class="vaebook-figure" href="{src.group(1)}" title="Open the figure alone, at full size">'
                f'{img[:-1].rstrip("/ ")}{attributes} /></a>')

    context["body"] = IMG_ELEMENT.sub(sized, body)


def _without_fontawesome_script(app, config) -> None:
    """Serve the theme's head macros without fontawesome.js, the 1.5 MB script that turns each
    <i class="fa-..."> into an inline SVG. The theme's stylesheet already draws the same icons
    (the book has a handful: menu, search, download, colour mode) from fontawesome's web font,
    fetched only when an icon is shown. The macro file is the theme's own, less that one line."""
    import pydata_sphinx_theme

    source = Path(pydata_sphinx_theme.__file__).parent / "theme" / "pydata_sphinx_theme" / THEME_MACROS
    text, removed = FONTAWESOME_SCRIPT.subn("", source.read_text(encoding="utf-8"))
    if removed != 1:
        raise RuntimeError(f"{source} no longer loads fontawesome.js as book/_ext/vaebook.py expects: "
                           "update FONTAWESOME_SCRIPT there")
    templates = Path(app.doctreedir).parent / "vaebook_templates"
    target = templates / THEME_MACROS
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    config.templates_path = [str(templates), *config.templates_path]


def _copy_plotlyjs(app, exception) -> None:
    """Copy the installed plotly package's plotly.min.js into the built book's _static."""
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / PLOTLYJS_STATIC
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(plotlyjs_path(), partial)
    partial.replace(target)


def setup(app):
    pybtex.plugin.register_plugin("pybtex.style.labels", BIBLIOGRAPHY_STYLE, AuthorYearLabelStyle)
    pybtex.plugin.register_plugin("pybtex.style.formatting", BIBLIOGRAPHY_STYLE, AuthorYearStyle)
    app.connect("config-inited", _keep_one_menu_button)
    app.connect("config-inited", _mark_book_build)
    app.connect("html-page-context", _plot_when_reached)
    app.connect("html-page-context", _images_when_reached)
    app.connect("html-page-context", _figures_at_their_size)
    app.connect("config-inited", _without_fontawesome_script)
    app.connect("build-finished", _copy_plotlyjs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

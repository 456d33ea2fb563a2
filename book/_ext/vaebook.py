"""The book's own Sphinx extension (loaded by _config.yml, `sphinx: local_extensions`).

Three small jobs, each a fix or a feature that no configuration value provides:
- keep the theme's menu button working (``_keep_one_menu_button``);
- label the bibliography by author and year, as the text cites (``AuthorYearLabelStyle``);
- serve plotly.js from the book's own ``_static`` to the pages that show an interactive figure.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pybtex.plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinxcontrib.bibtex.style.referencing import PersonStyle
from sphinxcontrib.bibtex.style.template import join, year

from vaelib.interactive import PLOTLYJS_ENV, plotlyjs_path

PLOTLYJS_STATIC = "plotly/plotly.min.js"  # under the built book's _static
PLOTLY_FIGURE_MARKER = 'class="plotly-graph-div"'
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


def _load_plotlyjs_where_needed(app, pagename, templatename, context, doctree) -> None:
    """Add plotly.js to the <head> of a page that shows a plotly figure, and to no other page
    (a page-specific script: Sphinx reverts the list after each page)."""
    if PLOTLY_FIGURE_MARKER in context.get("body", ""):
        app.add_js_file(PLOTLYJS_STATIC)


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
    app.connect("html-page-context", _load_plotlyjs_where_needed)
    app.connect("build-finished", _copy_plotlyjs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""The built book works offline: no page loads a script, stylesheet or font from the network.

A static check of the built HTML (tests/test_browser.py then opens every page in Chromium with the
network blocked). It parses every page rather than grepping, so that attribute order, quoting and
protocol-relative URLs ("//cdn...") cannot slip through.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
# Stylesheets fetch fonts and other stylesheets through url(...) and @import.
REMOTE_IN_CSS = re.compile(r"""(url\(\s*['"]?|@import\s+['"])\s*(https?:)?//""", re.IGNORECASE)
LINK_RELS_THAT_FETCH = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "manifest"}


class _ResourceParser(HTMLParser):
    """Collect what a page fetches: script sources, fetched <link>s and inline script text."""

    def __init__(self):
        super().__init__()
        self.fetched: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            if attrs.get("src"):
                self.fetched.append(attrs["src"])
            else:
                self._in_inline_script = True
                self.inline_scripts.append("")
        elif tag == "link" and LINK_RELS_THAT_FETCH & set((attrs.get("rel") or "").lower().split()):
            self.fetched.append(attrs.get("href") or "")
        elif tag in {"img", "iframe", "audio", "video", "source", "embed"} and attrs.get("src"):
            self.fetched.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data):
        if self._in_inline_script:
            self.inline_scripts[-1] += data


def _pages(html_dir: Path) -> list[Path]:
    pages = sorted(p for p in html_dir.rglob("*.html")
                   if not {"reports", "_static"} & set(p.relative_to(html_dir).parts))
    assert pages, f"no HTML pages under {html_dir}"
    return pages


def _parse(page: Path) -> _ResourceParser:
    parser = _ResourceParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_no_page_fetches_a_remote_script_stylesheet_or_image(built_book):
    remote = [f"{page.relative_to(built_book)}: {url}"
              for page in _pages(built_book) for url in _parse(page).fetched if REMOTE.match(url)]
    assert not remote, "pages fetch from the network:\n" + "\n".join(remote)


def test_no_inline_script_points_at_a_remote_url(built_book):
    """Inline configuration such as Thebe's THEBE_JS_URL would load code from a CDN on a click."""
    remote = [f"{page.relative_to(built_book)}: {match.group(0)}"
              for page in _pages(built_book) for script in _parse(page).inline_scripts
              for match in re.finditer(r"""["'](https?:)?//[^"']+["']""", script)]
    assert not remote, "inline scripts refer to remote URLs:\n" + "\n".join(remote)


def test_no_stylesheet_imports_a_remote_font_or_stylesheet(built_book):
    remote = [f"{css.relative_to(built_book)}: {line.strip()[:120]}"
              for css in sorted(built_book.rglob("*.css"))
              for line in css.read_text(encoding="utf-8", errors="replace").splitlines()
              if REMOTE_IN_CSS.search(line)]
    assert not remote, "stylesheets fetch from the network:\n" + "\n".join(remote)


def test_mathjax_is_served_from_the_book_itself(built_book):
    """Every page with math loads MathJax from _static/mathjax, and that file is in the build."""
    mathjax = built_book / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.is_file(), f"{mathjax} is missing: is sphinx-mathjax-offline in _config.yml?"
    chapter = built_book / "book" / "autoencoder.html"
    scripts = _parse(chapter).fetched
    assert any(src.split("?")[0].endswith("_static/mathjax/tex-chtml.js") for src in scripts), (
        f"{chapter.name} does not load the local MathJax; it loads {scripts}")


PLOTLYJS = "_static/plotly/plotly.min.js"
# plotly.js inlined into a page (a chapter executed outside the book build, see
# vaelib.interactive) would weigh megabytes; a figure's own script is a few hundred kilobytes.
MAX_INLINE_SCRIPT_CHARS = 1_000_000


def test_plotlyjs_is_served_from_the_book_itself(built_book):
    """Interactive 3-D figures get plotly.js from the book's _static (book/_ext/vaebook.py copies it
    from the plotly package), on the pages that show one, and no page carries a copy inline."""
    assert (built_book / PLOTLYJS).is_file(), f"{PLOTLYJS} is missing: is vaebook in _config.yml's extensions?"
    problems = []
    for page in _pages(built_book):
        html = page.read_text(encoding="utf-8")
        parsed = _parse(page)
        # book.js fetches plotly.js when a figure nears the screen (vaebookPlotLater, which the
        # book's extension puts in place of the figures' scripts); no <head> script loads it.
        loads = "window.vaebookPlotLater(" in html or any(src.split("?")[0].endswith(PLOTLYJS)
                                                     for src in parsed.fetched)
        if 'class="plotly-graph-div"' in html and not loads:
            problems.append(f"{page.relative_to(built_book)} shows a plotly figure but does not load {PLOTLYJS}")
        if loads and 'class="plotly-graph-div"' not in html:
            problems.append(f"{page.relative_to(built_book)} loads {PLOTLYJS} but shows no plotly figure")
        problems += [f"{page.relative_to(built_book)} inlines a {len(script):,}-character script (plotly.js?): "
                     "rebuild the book so that its chapters execute with VAELIB_PLOTLYJS=page"
                     for script in parsed.inline_scripts if len(script) > MAX_INLINE_SCRIPT_CHARS]
    assert not problems, "\n".join(problems)

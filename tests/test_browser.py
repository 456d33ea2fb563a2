"""The built book in a real browser: headless Chromium opens every page from a local HTTP server.

Checks what a reader would see: pages load with no console error, no failed request and no
request leaving 127.0.0.1; every equation is typeset by the book's own MathJax; every figure has
loaded; the navigation (previous/next, table of contents, cross-references) leads to pages and
anchors that exist; each chapter's notebook can be downloaded. One browser visits each page once,
in turn, and the tests read what the visits recorded. A screenshot of the autoencoder chapter is
saved next to the HTML folder (_build/_build/screenshots/ for `python3 tasks.py test`).

The second half looks at the book as a reader does on a desktop (1400 px) and on a phone (390 px):
the menu button opens the chapter menu; no equation or figure is wider than its column (a figure
wider than a phone scrolls in its own box); a figure's smallest text is at least 9 CSS px on a
phone and no figure is scaled up beyond its natural size on a desktop; figures have numbered
captions and alt text; hide-input cells start
collapsed; no inline formula or printed output is cut off; on a phone, controls are big enough to
tap, wide tables keep their first column in view, and a swipe over a 3-D figure scrolls the page
until the reader taps it; an interactive 3-D figure renders and turns when dragged; the first text
shows within 8 s on a throttled Slow 4G line; search snippets show no raw TeX. Screenshots of the
pages in SCREENSHOT_PAGES at both widths go to the same folder.

Chromium is Debian's /usr/bin/chromium (`python3 tasks.py test` installs it when missing), driven
by Playwright; `playwright install` is never needed.
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError, sync_playwright

from vaelib import plots

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LOCAL_HOST = "127.0.0.1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                 # No host but the local server resolves: a page that reaches for the network fails
                 # here as it would offline (and the request is recorded below).
                 f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {LOCAL_HOST}"]
PAGE_TIMEOUT_MS = 30_000
NETWORK_IDLE_TIMEOUT_MS = 15_000
SCREENSHOT_PAGE = "book/autoencoder.html"
# Raw TeX that MathJax should have replaced: display delimiters, environments, control sequences.
RAW_TEX = re.compile(r"\$\$|\\begin\{|\\\[|\\\(|\\[A-Za-z]{2,}")

# Text the reader sees outside code, MathJax output and scripts (where TeX may legitimately stay).
VISIBLE_PROSE_JS = """() => {
  const skip = 'pre, code, script, style, mjx-container, .highlight, .cell_output, .output';
  const walker = document.createTreeWalker(document.querySelector('main') || document.body,
                                           NodeFilter.SHOW_TEXT);
  const parts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement.closest(skip)) parts.push(node.textContent);
  }
  return parts.join(' ');
}"""

# Images load when the reader nears them (loading="lazy", book/_ext/vaebook.py): load them all, as
# a reader scrolling through would, before looking at them.
LOAD_IMAGES_JS = """async () => {
  document.querySelectorAll('img[loading="lazy"]').forEach(img => { img.loading = 'eager'; });
  await Promise.all(Array.from(document.images).map(img => img.complete ? null :
      new Promise(done => { img.onload = img.onerror = done; })));
}"""

PAGE_FACTS_JS = """() => ({
  untypeset: Array.from(document.querySelectorAll('div.math, span.math'))
               .filter(el => !el.querySelector('mjx-container'))
               .map(el => el.textContent.trim().slice(0, 80)),
  display_typeset: document.querySelectorAll('mjx-container[display="true"]').length,
  math_errors: Array.from(document.querySelectorAll('mjx-merror'))
                 .map(el => el.getAttribute('data-mjx-error') || el.textContent),
  // MathJax shows an undefined control sequence (a macro no package defines) as red text.
  undefined_macros: Array.from(document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]'))
                      .map(el => el.textContent),
  broken_images: Array.from(document.images)
                   .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src),
  images: document.images.length,
  prev: document.querySelector('a.left-prev')?.href ?? null,
  next: document.querySelector('a.right-next')?.href ?? null,
  toc: Array.from(document.querySelectorAll('nav.bd-links a[href]')).map(a => a.href),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map(el => el.id),
  downloads: Array.from(document.querySelectorAll('a[href$=".ipynb"]')).map(a => a.href),
})"""


@dataclass
class PageReport:
    url: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)
    raw_tex: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    layout: dict = field(default_factory=dict)  # LAYOUT_FACTS_JS at the desktop width


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="session")
def book_url(built_book):
    """Serve the built HTML on an ephemeral port of 127.0.0.1 for the whole session."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer((LOCAL_HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOCAL_HOST}:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def browser_context():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `python3 tasks.py test` installs Debian's chromium, "
                    "or run `apt-get install chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=DESKTOP)  # the first visit also measures the desktop layout
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        yield context
        context.close()
        browser.close()


def _visit(context, url: str, redirects: bool = False, screenshot_to: Path | None = None) -> PageReport:
    """Open one page (Chromium resolves no host but 127.0.0.1) and record what went wrong.

    A redirect page (the root index.html of a Jupyter Book) is followed to where it leads.
    """
    report = PageReport(url)
    pending: set[str] = set()
    page = context.new_page()

    def on_request(request):
        pending.add(request.url)
        parsed = urlparse(request.url)
        if parsed.scheme in {"http", "https", "ws", "wss"} and parsed.hostname != LOCAL_HOST:
            report.remote_requests.append(request.url)

    def on_failed(request):
        pending.discard(request.url)
        report.failed_requests.append(f"{request.url} ({request.failure})")

    page.on("request", on_request)
    page.on("requestfinished", lambda request: pending.discard(request.url))
    page.on("requestfailed", on_failed)
    page.on("response", lambda resp: resp.status >= 400
            and report.failed_requests.append(f"{resp.url} (HTTP {resp.status})"))
    page.on("console", lambda msg: msg.type == "error" and report.console_errors.append(
        f"{msg.text} [{msg.location.get('url')}]"))
    page.on("pageerror", lambda error: report.console_errors.append(str(error)))
    try:
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            report.failed_requests.append(f"{url} (HTTP {response and response.status})")
        if redirects:
            page.wait_for_url(lambda current: current != url)
            page.wait_for_load_state("load")
        if page.evaluate("() => !!window.MathJax?.startup?.promise"):
            page.evaluate("() => MathJax.startup.promise")
        page.evaluate(LOAD_IMAGES_JS)
        try:  # MathJax fetches its fonts after typesetting; let them arrive (or fail) before looking
            page.wait_for_load_state("networkidle", timeout=NETWORK_IDLE_TIMEOUT_MS)
        except PlaywrightTimeoutError:
            report.failed_requests.extend(f"{request} (still pending after {NETWORK_IDLE_TIMEOUT_MS} ms)"
                                          for request in sorted(pending))
        report.facts = page.evaluate(PAGE_FACTS_JS)
        report.layout = page.evaluate(LAYOUT_FACTS_JS)
        report.raw_tex = sorted(set(RAW_TEX.findall(page.evaluate(VISIBLE_PROSE_JS))))
        if screenshot_to is not None:
            screenshot_to.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot_to.with_suffix(".top.png")))
            page.screenshot(path=str(screenshot_to), full_page=True)
            print(f"\nscreenshot of {url}: {screenshot_to} (and {screenshot_to.with_suffix('.top.png').name})")
    finally:
        page.close()
    return report


@pytest.fixture(scope="session")
def book_pages(built_book):
    """Every HTML page of the book, relative to the HTML folder (not build reports or the theme's
    HTML templates that Sphinx copies into _static)."""
    pages = sorted(str(p.relative_to(built_book)) for p in built_book.rglob("*.html")
                   if not {"reports", "_static"} & set(p.relative_to(built_book).parts))
    assert SCREENSHOT_PAGE in pages, f"{SCREENSHOT_PAGE} is not among the built pages {pages}"
    return pages


@pytest.fixture(scope="session")
def reports(browser_context, book_url, book_pages, built_book) -> dict[str, PageReport]:
    """Visit every page once, in turn; the tests below read what the visits recorded."""
    screenshots = built_book.parent / "screenshots"
    targets = {SCREENSHOT_PAGE: screenshots / "autoencoder.png",
               **{page: screenshots / f"{Path(page).stem}-{DESKTOP['width']}px.png" for page in SCREENSHOT_PAGES}}
    return {page: _visit(browser_context, book_url + page,
                         redirects='http-equiv="refresh"' in (built_book / page).read_text(encoding="utf-8").lower(),
                         screenshot_to=targets.get(page))
            for page in book_pages}


def _problems(reports: dict[str, PageReport], describe) -> list[str]:
    return [f"{page}: {problem}" for page, report in reports.items() for problem in describe(report)]


def test_pages_load_without_errors_or_network(reports):
    problems = _problems(reports, lambda r: [f"console error: {e}" for e in r.console_errors]
                         + [f"failed request: {e}" for e in r.failed_requests]
                         + [f"request outside {LOCAL_HOST}: {e}" for e in r.remote_requests])
    assert not problems, "\n".join(problems)


def test_every_equation_is_typeset(reports):
    chapter = reports[SCREENSHOT_PAGE].facts
    assert chapter["display_typeset"] >= 2, (
        f"{SCREENSHOT_PAGE} shows {chapter['display_typeset']} typeset display equations; it has at least 2")
    problems = _problems(reports, lambda r: [f"not typeset: {t}" for t in r.facts["untypeset"]]
                         + [f"MathJax error: {e}" for e in r.facts["math_errors"]]
                         + [f"undefined TeX macro: {m}" for m in r.facts["undefined_macros"]]
                         + [f"raw TeX in the text: {t}" for t in r.raw_tex])
    assert not problems, "\n".join(problems)


def test_every_image_has_loaded(reports):
    assert reports[SCREENSHOT_PAGE].facts["images"] >= 1, f"{SCREENSHOT_PAGE} shows no figure"
    problems = _problems(reports, lambda r: [f"image not loaded: {src}" for src in r.facts["broken_images"]])
    assert not problems, "\n".join(problems)


def _page_of(url: str, book_url: str) -> str:
    return urldefrag(url)[0][len(book_url):] or "index.html"


def test_navigation_links_lead_to_existing_pages(reports, book_url, browser_context):
    """Previous/next and the table of contents point at built pages; following them gives HTTP 200."""
    targets = {urldefrag(url)[0] for report in reports.values()
               for url in [report.facts["prev"], report.facts["next"], *report.facts["toc"]] if url}
    assert targets, "no navigation links found: did the theme's markup change?"
    statuses = {url: browser_context.request.get(url).status for url in sorted(targets)}
    broken = [f"{url}: HTTP {status}" for url, status in statuses.items() if status != 200]
    assert not broken, "\n".join(broken)


def test_next_links_walk_through_every_chapter(reports, book_url):
    """Starting at the first page and clicking 'next' reaches every page in the table of contents."""
    toc_pages = {_page_of(url, book_url) for url in reports["book/intro.html"].facts["toc"]}
    seen, page = [], "book/intro.html"
    while page and page not in seen:
        if page not in reports:
            pytest.fail(f"'next' on {seen[-1]} leads to {page}, which is not a page of the book")
        seen.append(page)
        following = reports[page].facts["next"]
        page = _page_of(following, book_url) if following else None
    assert toc_pages <= set(seen), f"the next-chain {seen} skips {sorted(toc_pages - set(seen))}"


def test_internal_links_reach_their_anchors(reports, book_url):
    """Every link inside the book (cross-references, citations, glossary terms) lands on an anchor."""
    broken = []
    for page, report in reports.items():
        for url in report.facts["links"]:
            if not url.startswith(book_url):
                continue
            target, anchor = urldefrag(url)
            anchor = unquote(anchor)
            target_page = _page_of(target, book_url)
            if target_page.endswith(".html") and target_page not in reports:
                broken.append(f"{page}: {url} (no such page)")
            elif anchor and target_page in reports and anchor not in reports[target_page].facts["ids"]:
                broken.append(f"{page}: {url} (no anchor #{anchor})")
    assert not broken, "\n".join(broken)


def test_chapter_notebooks_can_be_downloaded(reports, browser_context):
    """Each chapter page built from a notebook offers its .ipynb, served by the book itself."""
    chapters = [f"book/{nb.stem}.html" for nb in sorted((ROOT / "book").glob("*.ipynb"))
                if f"book/{nb.stem}.html" in reports]
    assert SCREENSHOT_PAGE in chapters
    problems = []
    for page in chapters:
        downloads = reports[page].facts["downloads"]
        if not downloads:
            problems.append(f"{page}: no .ipynb download link")
            continue
        response = browser_context.request.get(downloads[0])
        if response.status != 200:
            problems.append(f"{page}: {downloads[0]} gives HTTP {response.status}")
        elif json.loads(response.body()).get("nbformat") != 4:
            problems.append(f"{page}: {downloads[0]} is not a version-4 notebook")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------
# The page as a reader sees it on a desktop (1400 px) and on a phone (390 px): the menu, equations,
# figures and captions, the interactive figures, collapsed cells and search. Each page of the book is
# opened once per width; screenshots of the pages in SCREENSHOT_PAGES are written next to the others.

DESKTOP, PHONE = {"width": 1400, "height": 900}, {"width": 390, "height": 844}
SCREENSHOT_PAGES = ["book/intro.html", "book/vae.html", "book/comparison.html", "book/reproduce.html"]
# A filename, or text that only names the file, is not alt text.
FILE_LIKE_ALT = re.compile(r"(^|/)[\w.-]+\.(png|jpe?g|svg|gif|webp)$", re.IGNORECASE)

LAYOUT_FACTS_JS = """() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const main = document.querySelector('.bd-main') || article;
  const articleBox = article.getBoundingClientRect();
  const articleRight = articleBox.right - parseFloat(getComputedStyle(article).paddingRight);
  // How far right an element may reach: the article's text column, or, for a cell tagged
  // full-width (sphinx-book-theme's margin layout), the main area up to the window's edge.
  const limit = el => el.closest('.tag_full-width, .full-width')
    ? Math.min(main.getBoundingClientRect().right, window.innerWidth) : articleRight;
  const label = el => (el.closest('[id]') || {}).id || el.tagName.toLowerCase();
  const equations = Array.from(article.querySelectorAll('mjx-container[display="true"]')).map(el => ({
    where: label(el), overflow: el.scrollWidth - el.clientWidth,
    beyond: el.getBoundingClientRect().right - limit(el), scrolls: getComputedStyle(el).overflowX}));
  const figureOf = el => el.closest('figure');
  const numbered = el => !!figureOf(el)?.querySelector('figcaption .caption-number');
  // A box between the element and the article that scrolls sideways (a figure wider than a phone).
  const scrollBox = el => {
    for (let box = el.parentElement; box && box !== article; box = box.parentElement) {
      if (['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) return box;
    }
    return null;
  };
  const images = Array.from(article.querySelectorAll('img')).map(img => ({
    where: label(img), src: (img.getAttribute('src') || '').split('/').pop(), alt: img.getAttribute('alt') || '',
    natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
    beyond: img.getBoundingClientRect().right - limit(img), numbered: numbered(img),
    in_output: !!img.closest('.cell_output'),
    box_beyond: scrollBox(img) ? scrollBox(img).getBoundingClientRect().right - limit(img) : null}));
  const plots = Array.from(article.querySelectorAll('.plotly-graph-div')).map(div => ({
    where: label(div), alt: div.closest('[aria-label]')?.getAttribute('aria-label') || '',
    beyond: div.getBoundingClientRect().right - limit(div), numbered: numbered(div)}));
  const tables = Array.from(article.querySelectorAll('table'))
    .filter(t => !t.closest('.highlight, mjx-container, .cell_input'))
    .map(t => ({where: label(t), caption: (t.querySelector('caption')?.textContent || '').trim().slice(0, 60),
                numbered: !!t.querySelector('caption .caption-number') || numbered(t),
                beyond: t.getBoundingClientRect().right - limit(t)}));
  const hidden_inputs = Array.from(article.querySelectorAll('.cell.tag_hide-input')).map(cell => {
    const input = cell.querySelector('.cell_input'), output = cell.querySelector('.cell_output');
    return {where: label(cell), input_visible: !!input && input.checkVisibility(),
            toggle: !!cell.querySelector('details.hide summary'),
            output_visible: !output || output.checkVisibility()};
  });
  // An inline formula wider than its box must scroll there (the theme's overflow: hidden clipped it).
  const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const inline_math = Array.from(article.querySelectorAll('span.math')).map(el => {
    const box = el.getBoundingClientRect(), formula = el.querySelector('mjx-container');
    return {where: label(el), text: el.textContent.trim().slice(0, 50),
            hidden: formula ? Math.round(formula.getBoundingClientRect().width - box.width) : 0,
            scrolls: scrolls(el), beyond: el.closest('table') ? 0 : box.right - limit(el)};  // a table scrolls in its box
  }).filter(m => (m.hidden > 1 && !m.scrolls) || m.beyond > 1);
  // Printed output wraps inside its box: no line runs past it, hidden or behind a scrollbar.
  const outputs = Array.from(article.querySelectorAll('.cell_output pre')).filter(el => el.checkVisibility())
    .map(el => ({where: label(el), first: el.textContent.trim().slice(0, 50), over: el.scrollWidth - el.clientWidth}))
    .filter(o => o.over > 1);
  const visible = el => el.checkVisibility() && el.getBoundingClientRect().width > 0;
  const size = el => el.getBoundingClientRect();
  const targets = Array.from(document.querySelectorAll(
      '.bd-header-article button, .bd-header-article a.btn, button.toggle-button, details.hide > summary, ' +
      'button.copybtn'))
    .filter(visible).map(el => ({what: el.getAttribute('aria-label') || el.title || el.className || el.tagName,
                                 width: Math.round(size(el).width), height: Math.round(size(el).height)}));
  const fullscreen = Array.from(document.querySelectorAll('.btn-fullscreen-button')).filter(visible).length;
  const caption_weights = Array.from(article.querySelectorAll('figcaption, table caption')).filter(visible)
    .map(el => parseInt(getComputedStyle(el).fontWeight, 10));
  // A table wider than its box: its first column stays in view while the rest scrolls.
  const wide_tables = Array.from(article.querySelectorAll('table'))
    .filter(t => !t.closest('.highlight, mjx-container, .cell_input') && t.scrollWidth > t.parentElement.clientWidth + 1)
    .map(t => ({where: label(t), first_column: getComputedStyle(t.querySelector('tr > :first-child')).position}));
  return {page_overflow: document.documentElement.scrollWidth - window.innerWidth,
          equations, images, plots, tables, hidden_inputs, inline_math, outputs, targets, fullscreen,
          caption_weights, wide_tables};
}"""


@dataclass
class Layout:
    page: str
    width: int
    facts: dict


def _book_chapter_pages(book_pages) -> list[str]:
    return [page for page in book_pages if page.startswith("book/")]


def _layouts(browser_context, book_url, pages, viewport, screenshots: Path) -> dict[str, Layout]:
    context = browser_context.browser.new_context(viewport=viewport)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    layouts = {}
    try:
        for page_name in pages:
            page = context.new_page()
            page.goto(book_url + page_name, wait_until="load")
            if page.evaluate("() => !!window.MathJax?.startup?.promise"):
                page.evaluate("() => MathJax.startup.promise")
            page.evaluate(LOAD_IMAGES_JS)
            page.wait_for_load_state("networkidle", timeout=NETWORK_IDLE_TIMEOUT_MS)
            layouts[page_name] = Layout(page_name, viewport["width"], page.evaluate(LAYOUT_FACTS_JS))
            if page_name in SCREENSHOT_PAGES:
                screenshots.mkdir(parents=True, exist_ok=True)
                target = screenshots / f"{Path(page_name).stem}-{viewport['width']}px.png"
                page.screenshot(path=str(target.with_suffix(".top.png")))
                page.screenshot(path=str(target), full_page=True)
                print(f"\nscreenshot of {page_name} at {viewport['width']} px: {target}")
            page.close()
    finally:
        context.close()
    return layouts


@pytest.fixture(scope="session")
def desktop(reports, book_pages) -> dict[str, Layout]:
    """The chapters' layout at 1400 px, measured during the visit of every page (one visit each)."""
    return {page: Layout(page, DESKTOP["width"], reports[page].layout) for page in _book_chapter_pages(book_pages)}


@pytest.fixture(scope="session")
def phone(browser_context, book_url, book_pages, built_book) -> dict[str, Layout]:
    return _layouts(browser_context, book_url, _book_chapter_pages(book_pages), PHONE,
                    built_book.parent / "screenshots")


def _layout_problems(layouts: dict[str, Layout], describe) -> list[str]:
    return [f"{page} at {layout.width} px: {problem}" for page, layout in layouts.items()
            for problem in describe(layout.facts)]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390px", "1400px"])
def test_the_menu_button_opens_the_chapter_menu(browser_context, book_url, reports, viewport):
    """The visible menu button shows every chapter: in a dialog on a phone, and on a desktop it
    hides and shows the sidebar again (sphinx-book-theme's collapse)."""
    chapters = sorted({_page_of(url, book_url) for url in reports["book/intro.html"].facts["toc"]})
    context = browser_context.browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        page.goto(book_url + SCREENSHOT_PAGE, wait_until="load")
        buttons = [button for button in page.query_selector_all(".primary-toggle") if button.is_visible()]
        assert len(buttons) == 1, f"{len(buttons)} visible menu buttons on {SCREENSHOT_PAGE}"
        sidebar = page.locator("#pst-primary-sidebar")
        if viewport is PHONE:
            assert not sidebar.is_visible(), "on a phone the chapter menu should start closed"
            buttons[0].click()
            menu = page.locator("#pst-primary-sidebar-modal[open]")
            menu.wait_for(state="visible")
            shown = {_page_of(page.evaluate("a => a.href", link), book_url)
                     for link in menu.locator("nav.bd-links a[href]").element_handles() if link.is_visible()}
            assert set(chapters) <= shown, f"the menu does not show {sorted(set(chapters) - shown)}"
            page.keyboard.press("Escape")
            menu.wait_for(state="detached")
        else:
            assert sidebar.is_visible(), "on a desktop the chapter menu should start open"
            buttons[0].click()
            sidebar.wait_for(state="hidden")
            buttons[0].click()
            sidebar.wait_for(state="visible")
    finally:
        context.close()


def test_no_equation_figure_or_table_is_wider_than_its_column_at_1400px(desktop):
    """Long equations are broken over lines (aligned/split); figures fit their column (or column
    and margin, for a cell tagged full-width); tables fit without scrolling (a "mean ± std" cell
    may put its spread under its mean: vaelib.tables.mean_std_cell); the page never scrolls sideways."""
    problems = _layout_problems(desktop, lambda f: (
        [f"the page scrolls sideways by {f['page_overflow']} px"] * (f["page_overflow"] > 1)
        + [f"equation {e['where']} is {e['overflow']} px wider than its column: break it over lines"
           for e in f["equations"] if e["overflow"] > 1 or e["beyond"] > 1]
        + [f"figure {i['src']} reaches {i['beyond']:.0f} px beyond its column" for i in f["images"] if i["beyond"] > 1]
        + [f"interactive figure {p['where']} reaches {p['beyond']:.0f} px beyond its column"
           for p in f["plots"] if p["beyond"] > 1]
        + [f"table {t['where']} ({t['caption']!r}) reaches {t['beyond']:.0f} px beyond its column"
           for t in f["tables"] if t["beyond"] > 1]))
    assert not problems, "\n".join(problems)


def test_equations_scroll_inside_their_box_on_a_phone(phone):
    """A phone cannot show every equation whole: one that does not fit scrolls inside its own box
    (never clipped unseen), and the page itself never scrolls sideways."""
    problems = _layout_problems(phone, lambda f: (
        [f"the page scrolls sideways by {f['page_overflow']} px"] * (f["page_overflow"] > 1)
        + [f"equation {e['where']} is clipped ({e['overflow']} px hidden, overflow-x: {e['scrolls']})"
           for e in f["equations"] if e["overflow"] > 1 and e["scrolls"] not in {"auto", "scroll"}]
        + [f"equation {e['where']} reaches {e['beyond']:.0f} px beyond the column" for e in f["equations"]
           if e["beyond"] > 1]))
    assert not problems, "\n".join(problems)


def test_no_inline_formula_or_printed_output_is_cut_off(desktop, phone):
    """An inline formula wider than the column scrolls in its own box (the theme clipped it unseen:
    the glossary's KL entry read "... = ."), and printed output (a "Check it" verdict) wraps inside
    its box instead of running past it, at both widths."""
    problems = _layout_problems({**{f"{k} ": v for k, v in desktop.items()}, **phone}, lambda f: (
        [f"inline formula {m['text']!r} in {m['where']} is clipped ({m['hidden']} px hidden) or reaches "
         f"{m['beyond']:.0f} px beyond the column" for m in f["inline_math"]]
        + [f"printed output {o['first']!r} in {o['where']} runs {o['over']} px past its box" for o in f["outputs"]]))
    assert not problems, "\n".join(problems)


MIN_TAP_TARGET_PX = 40


def test_controls_are_easy_to_tap_and_captions_easy_to_read_on_a_phone(desktop, phone):
    """On a phone the header's icons, the cells' show/hide toggles, the solutions' buttons and the
    code cells' copy buttons are at least 40 px each way, and there is no fullscreen button;
    captions are at the text's weight."""
    assert any(f.facts["targets"] for f in phone.values()), "no header button found: did the theme change?"
    assert any("copybtn" in t["what"] for f in phone.values() for t in f.facts["targets"]), (
        "no copy button of a code cell found: did sphinx-copybutton change?")
    problems = _layout_problems(phone, lambda f: (
        [f"{t['what']!r} is {t['width']} x {t['height']} px, under {MIN_TAP_TARGET_PX} px"
         for t in f["targets"] if min(t["width"], t["height"]) < MIN_TAP_TARGET_PX]
        + ["a fullscreen button is shown"] * (f["fullscreen"] > 0)))
    problems += _layout_problems({**desktop, **phone}, lambda f: [
        f"a caption is set in font weight {w}" for w in sorted(set(f["caption_weights"])) if w < 400])
    assert not problems, "\n".join(problems)


def test_a_table_wider_than_a_phone_keeps_its_first_column_in_view(phone):
    """A table wider than the phone scrolls sideways in its box; its first column (the row labels)
    is sticky, so a reader always sees which row a number belongs to."""
    wide = [t for layout in phone.values() for t in layout.facts["wide_tables"]]
    assert wide, "no table is wider than a phone: the check has nothing to look at"
    problems = _layout_problems(phone, lambda f: [
        f"table {t['where']}: its first column scrolls away (position: {t['first_column']})"
        for t in f["wide_tables"] if t["first_column"] != "sticky"])
    assert not problems, "\n".join(problems)


def test_figure_text_is_readable_on_a_phone_and_no_figure_is_scaled_up_on_a_desktop(desktop, phone,
                                                                                     built_book):
    """At 390 px a figure's smallest text is at least 9 CSS px high: its shown scale times that
    text's height in the image's own pixels, which vaelib.plots.figure_png records in the PNG (a
    figure drawn otherwise is reported). Where the column is too narrow for that, the figure
    scrolls sideways in its own box, which stays within the column. At 1400 px no figure is shown
    larger than its natural size (scaled up, a PNG blurs)."""
    smallest = {}

    def smallest_text_px(src: str) -> float | None:
        if src not in smallest:
            smallest[src] = plots.png_facts((built_book / "_images" / src).read_bytes())[2]
        return smallest[src]

    def readable(f) -> list[str]:
        problems = []
        for i in (i for i in f["images"] if i["natural"]):
            text = smallest_text_px(i["src"])
            if text is None:
                problems.append(f"figure {i['src']} records no smallest text: draw it with vaelib.plots "
                                "(a chapter's figures are shown through plots.figure_png)")
            elif i["shown"] / i["natural"] * text < plots.MIN_TEXT_PX - 0.05:
                problems.append(f"figure {i['src']} is shown at {i['shown']:.0f} of its {i['natural']} px: its "
                                f"smallest text is {i['shown'] / i['natural'] * text:.1f} CSS px, under "
                                f"{plots.MIN_TEXT_PX}")
            if i["beyond"] > 1 and (i["box_beyond"] is None or i["box_beyond"] > 1):
                problems.append(f"figure {i['src']} reaches {i['beyond']:.0f} px beyond the column, "
                                "outside a box that scrolls")
        return problems

    problems = _layout_problems(phone, readable)
    problems += _layout_problems(desktop, lambda f: [
        f"figure {i['src']} is scaled up to {i['shown'] / i['natural']:.2f} times its size "
        f"({i['shown']:.0f} px shown, {i['natural']} px drawn)"
        for i in f["images"] if i["natural"] and i["shown"] > i["natural"] + 0.5])
    shown = [i for layout in phone.values() for i in layout.facts["images"] if i["natural"]]
    assert len(shown) >= 10, f"only {len(shown)} figures found on the phone: the check has little to look at"
    assert not problems, "\n".join(problems)


def test_every_figure_and_table_has_a_numbered_caption_and_alt_text(desktop):
    """Figures (images and interactive plots) sit in a numbered figure with alt text that says what
    they show; tables have a numbered caption (a {table} directive, or a figure around an output)."""
    problems = _layout_problems(desktop, lambda f: (
        [f"figure {i['src']} has no numbered caption" for i in f["images"] if not i["numbered"]]
        + [f"figure {i['src']} has no alt text (alt={i['alt']!r})" for i in f["images"]
           if not i["alt"].strip() or FILE_LIKE_ALT.search(i["alt"].strip())]
        + [f"interactive figure {p['where']} has no numbered caption" for p in f["plots"] if not p["numbered"]]
        + [f"interactive figure {p['where']} has no alt text" for p in f["plots"] if not p["alt"].strip()]
        + [f"table {t['where']} ({t['caption'] or 'no caption'}) has no numbered caption"
           for t in f["tables"] if not t["numbered"]]))
    assert not problems, "\n".join(problems)


def test_hide_input_cells_start_collapsed_and_show_their_output(desktop):
    """'Check it' and plotting cells are tagged hide-input: their code waits behind a toggle, while
    their output (a figure, a printed check) shows."""
    cells = [cell for layout in desktop.values() for cell in layout.facts["hidden_inputs"]]
    assert cells, "no cell in the book is tagged hide-input (tests/test_notebook_style.py says which should be)"
    problems = _layout_problems(desktop, lambda f: [
        f"cell {c['where']}: " + ", ".join(
            what for what, bad in [("its code shows", c["input_visible"]), ("it has no toggle", not c["toggle"]),
                                   ("its output is hidden", not c["output_visible"])] if bad)
        for c in f["hidden_inputs"] if c["input_visible"] or not c["toggle"] or not c["output_visible"]])
    assert not problems, "\n".join(problems)


def test_an_interactive_figure_renders_and_turns_when_dragged(desktop, browser_context, book_url, built_book):
    """The 3-D figures (vaelib.interactive) load plotly.js from the book's own _static, draw their
    points, and a drag across the scene turns the camera."""
    pages = [page for page, layout in desktop.items() if layout.facts["plots"]]
    assert pages, "no page shows an interactive 3-D figure (vaelib.interactive.point_clouds_3d)"
    context = browser_context.browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(book_url + pages[0], wait_until="load")
        assert page.evaluate("() => !!document.createElement('canvas').getContext('webgl')"), (
            "this Chromium has no WebGL: 3-D plots cannot render (try --enable-unsafe-swiftshader)")
        # plotly.js is fetched once the figure nears the screen (book.js), not with the page.
        assert not page.evaluate("() => !!window.Plotly"), f"{pages[0]} loads plotly.js before it is needed"
        page.locator(".plotly-graph-div").first.scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelector('.plotly-graph-div')?._fullLayout?.scene")
        loaded = page.evaluate("() => performance.getEntriesByType('resource').map(r => r.name)"
                               ".filter(name => name.includes('plotly'))")
        assert any(urlparse(name).path.endswith("_static/plotly/plotly.min.js") for name in loaded), loaded
        plot = page.locator(".plotly-graph-div").first
        plot.scroll_into_view_if_needed()
        camera = "() => JSON.stringify(document.querySelector('.plotly-graph-div')._fullLayout.scene.camera.eye)"
        before = page.evaluate(camera)
        box = plot.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        for step in range(1, 11):
            page.mouse.move(x + 12 * step, y + 3 * step)
        page.mouse.up()
        page.wait_for_timeout(300)
        after = page.evaluate(camera)
        assert after != before, f"dragging across the 3-D figure on {pages[0]} did not turn it (camera {before})"
    finally:
        context.close()


def test_a_swipe_over_a_3d_figure_scrolls_the_page_until_the_reader_taps_it(desktop, browser_context, book_url):
    """On a touch screen a 3-D figure nearly as tall as the screen took every swipe (plotly turns the
    scene), so the page could not be scrolled past it. A vertical swipe over it now scrolls the page;
    a tap hands the figure its touches. Its title is clear of plotly's toolbar, and its "tap" label
    of the theme's "Back to top" button."""
    pages = [page for page, layout in desktop.items() if layout.facts["plots"]]
    assert pages, "no page shows an interactive 3-D figure"
    context = browser_context.browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(book_url + pages[0], wait_until="load")
        plot = page.locator(".plotly-graph-div").first
        plot.scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelector('.plotly-graph-div')?._fullLayout?.scene")
        box = plot.bounding_box()
        title, toolbar = (page.locator(f".vaelib-plotly-3d {css}").first.bounding_box()
                          for css in (".gtitle", ".modebar"))
        assert title and toolbar, "the 3-D figure has no title or no toolbar"
        overlap = (min(title["x"] + title["width"], toolbar["x"] + toolbar["width"]) - max(title["x"], toolbar["x"]) > 0
                   and min(title["y"] + title["height"], toolbar["y"] + toolbar["height"]) - max(title["y"], toolbar["y"]) > 0)
        assert not overlap, f"the figure's title {title} lies under plotly's toolbar {toolbar}"
        before = page.evaluate("() => window.scrollY")
        cdp = context.new_cdp_session(page)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.7
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for step in range(1, 11):  # a finger moving 200 px up over the figure
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y - 20 * step}]})
            page.wait_for_timeout(16)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        page.wait_for_timeout(300)
        scrolled = page.evaluate("() => window.scrollY") - before
        assert scrolled > 100, f"a 200 px swipe over the 3-D figure on {pages[0]} scrolled the page {scrolled:.0f} px"
        # The theme's "Back to top" button, fixed on the screen, stays clear of the shield's label at
        # every scroll position: their left-to-right extents do not meet.
        label = page.locator(".vaelib-plotly-3d .vaebook-touch-shield span").first.bounding_box()
        page.evaluate("() => { document.getElementById('pst-back-to-top').style.display = 'block'; }")
        back = page.locator("#pst-back-to-top").bounding_box()
        assert label and back, "no touch label or no 'Back to top' button: did the theme or book.js change?"
        assert (back["x"] >= label["x"] + label["width"] or back["x"] + back["width"] <= label["x"]), (
            f"the 'Back to top' button {back} can cover the 3-D figure's touch label {label}")
        assert min(back["width"], back["height"]) >= MIN_TAP_TARGET_PX, f"the 'Back to top' button is {back}"
        page.evaluate("() => { document.getElementById('pst-back-to-top').style.display = 'none'; }")
        shield = page.locator(".vaelib-plotly-3d .vaebook-touch-shield").first
        shield.tap()
        assert page.locator(".vaelib-plotly-3d .vaebook-touch-shield").count() < len(
            page.query_selector_all(".vaelib-plotly-3d")), "a tap does not hand the figure its touches"
    finally:
        context.close()


# Chrome DevTools' "Slow 4G" profile, with an empty cache: what a reader on a poor line gets.
SLOW_4G = {"offline": False, "latency": 150, "downloadThroughput": 1.6e6 / 8, "uploadThroughput": 750e3 / 8}
MAX_FIRST_TEXT_S = 8.0
# One page per kind: a page with a 3-D figure (it used to load 4.8 MB of plotly.js first) and a
# page of text and equations (every page carries the theme's and MathJax's scripts).
SLOW_PAGES = ["book/autoencoder.html", "book/intro.html"]


@pytest.mark.parametrize("page_name", SLOW_PAGES)
def test_first_text_shows_within_8_s_on_a_slow_line(browser_context, book_url, page_name):
    """On a throttled Slow 4G line (150 ms, 1.6 Mbit/s) with an empty cache, the page's first text
    (first contentful paint) shows within 8 s: no large script blocks it."""
    context = browser_context.browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        cdp.send("Network.emulateNetworkConditions", SLOW_4G)
        page.goto(book_url + page_name, wait_until="commit")
        page.wait_for_function("() => performance.getEntriesByName('first-contentful-paint').length",
                               timeout=(MAX_FIRST_TEXT_S + 2) * 1000, polling=100)
        first_text = page.evaluate("() => performance.getEntriesByName('first-contentful-paint')[0].startTime") / 1000
    except PlaywrightTimeoutError:
        first_text = float("inf")
    finally:
        context.close()
    assert first_text <= MAX_FIRST_TEXT_S, (
        f"{page_name} shows its first text after {first_text:.1f} s on Slow 4G (at most {MAX_FIRST_TEXT_S} s)")


def test_search_snippets_show_no_raw_tex(browser_context, book_url):
    """Sphinx cuts search snippets from a page's HTML before MathJax has typeset it; book.js turns
    the TeX into text first, so a reader sees 'z^c', not '\\mathbf{z}^c'."""
    context = browser_context.browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(book_url + "search.html?q=reconstruction", wait_until="load")
        page.wait_for_function("() => document.querySelectorAll('#search-results li p.context').length >= 3",
                               timeout=PAGE_TIMEOUT_MS)
        snippets = page.evaluate("() => Array.from(document.querySelectorAll('#search-results li p.context'))"
                                 ".map(p => p.textContent)")
    finally:
        context.close()
    raw = [f"{RAW_TEX.findall(text)} in {text[:120]!r}" for text in snippets if RAW_TEX.search(text)]
    assert not raw, "search snippets show raw TeX:\n" + "\n".join(raw)


# The book's tables of results, at 1400 px and on a phone: a number is never broken across two lines
# (no exponent's hyphen, a true minus sign, a no-break space between "±" and the spread:
# vaelib.tables), and every ranked column (its heading ends in "↓" or "↑") marks its best value in
# bold, with a caption that says what the bold means. (In this module, not one of its own: a second
# module importing this one's session fixtures would start a second Playwright in the same process.)
TABLE_PAGES = ["book/reproduce.html", "book/constrained.html", "book/kingma_welling.html",
               "book/comparison.html"]

TABLE_FACTS_JS = r"""() => Array.from(document.querySelectorAll('main table')).map(table => {
  const heads = Array.from(table.querySelectorAll('thead th')).map(th => th.textContent.trim());
  const broken = [];
  for (const td of table.querySelectorAll('tbody td')) {
    const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest('mjx-container')) continue;
      const number = /±\u00a0[−-]?\d[\d.,]*|[−-]?\d[\d.,]*/g;
      for (let m = number.exec(node.textContent); m; m = number.exec(node.textContent)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  const rows = Array.from(table.querySelectorAll('tbody tr'));
  const ranked = heads.map((h, i) => [h, i]).filter(([h]) => /[↓↑]$/.test(h));
  const caption = table.querySelector('caption')?.textContent ?? '';
  return {where: caption.replace(/\s+/g, ' ').slice(0, 50), broken, ranked: ranked.map(([h]) => h),
          unmarked: ranked.filter(([, i]) => !rows.some(tr => tr.children[i]?.querySelector('strong')))
                          .map(([h]) => h),
          legend: caption.includes('Bold:')};
})"""


def _table_facts(browser, url: str, viewport: dict) -> list[dict]:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(url, wait_until="load")
        page.evaluate("() => window.MathJax?.startup?.promise")  # the tables' formulas typeset
        return page.evaluate(TABLE_FACTS_JS)
    finally:
        context.close()


@pytest.fixture(scope="module")
def tables(browser_context, book_url):
    """Per page and width, the facts of each table of the page."""
    return {(page, viewport["width"]): _table_facts(browser_context.browser, book_url + page, viewport)
            for viewport in (DESKTOP, PHONE) for page in TABLE_PAGES}


def test_no_number_in_a_table_is_broken_across_lines(tables):
    problems = [f"{page} at {width} px, table '{t['where']}': {t['broken']}"
                for (page, width), found in tables.items() for t in found if t["broken"]]
    assert not problems, "numbers broken across two lines:\n" + "\n".join(problems)


@pytest.mark.parametrize("page_name", TABLE_PAGES)
def test_each_ranked_column_marks_its_best_value_and_the_caption_says_so(tables, page_name):
    found = tables[page_name, DESKTOP["width"]]
    ranked = [t for t in found if t["ranked"]]
    if page_name in ("book/reproduce.html", "book/kingma_welling.html"):
        assert ranked, f"{page_name}: no table has a ranked column (a heading ending in ↓ or ↑)"
    problems = [f"table '{t['where']}': no bold value in {t['unmarked']}" for t in ranked if t["unmarked"]]
    problems += [f"table '{t['where']}': its caption does not say what the bold means" for t in ranked
                 if not t["legend"]]
    assert not problems, f"{page_name}:\n" + "\n".join(problems)


def test_the_check_sees_a_broken_number_and_vaelib_tables_writes_none(browser_context):
    """In a column narrower than its cells, the issue's "4.2e-05" breaks at its hyphen; the same
    value as vaelib.tables writes it stays whole, and the spread stays beside its "±"."""
    from vaelib.tables import render_table

    before = "<table><tbody><tr><td>1.66 ± 4.2e-05</td></tr></tbody></table>"
    after = render_table(["R"], [[(1.66, 4.2e-05)], [(-159.5, 4.2)]], "html")
    context = browser_context.browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        page.set_content(f"<main><style>td {{ width: 2.5em; }}</style>{before}{after}</main>")
        found = page.evaluate(TABLE_FACTS_JS)
    finally:
        context.close()
    assert found[0]["broken"], "the check does not see '4.2e-05' broken in a narrow column"
    assert not found[1]["broken"], found[1]

"""The built book in a real browser: headless Chromium opens every page from a local HTTP server.

Checks what a reader would see: pages load with no console error, no failed request and no
request leaving 127.0.0.1; every equation is typeset by the book's own MathJax; every figure has
loaded; the navigation (previous/next, table of contents, cross-references) leads to pages and
anchors that exist; each chapter's notebook can be downloaded. One browser visits each page once,
in turn, and the tests read what the visits recorded. A screenshot of the autoencoder chapter is
saved next to the HTML folder (_build/_build/screenshots/ for `python3 tasks.py test`).

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
        context = browser.new_context(viewport={"width": 1280, "height": 900})
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
        try:  # MathJax fetches its fonts after typesetting; let them arrive (or fail) before looking
            page.wait_for_load_state("networkidle", timeout=NETWORK_IDLE_TIMEOUT_MS)
        except PlaywrightTimeoutError:
            report.failed_requests.extend(f"{request} (still pending after {NETWORK_IDLE_TIMEOUT_MS} ms)"
                                          for request in sorted(pending))
        report.facts = page.evaluate(PAGE_FACTS_JS)
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
    screenshot = built_book.parent / "screenshots" / "autoencoder.png"
    return {page: _visit(browser_context, book_url + page,
                         redirects='http-equiv="refresh"' in (built_book / page).read_text(encoding="utf-8").lower(),
                         screenshot_to=screenshot if page == SCREENSHOT_PAGE else None)
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

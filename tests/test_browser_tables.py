"""The book's tables of results in a real browser, at 1400 px and on a phone (390 px).

A number is never broken across two lines (no exponent's hyphen, a true minus sign, a no-break
space between "±" and the spread, vaelib.tables), and every ranked column (its heading ends in
"↓" or "↑") marks its best value in bold, with a caption that says what the bold means.

Reuses test_browser.py's server and browser (its fixtures, imported) on the pages with computed
tables; `VAELIB_BOOK_HTML=_build/_build/html` tests an already built book.
"""
from __future__ import annotations

import pytest

from test_browser import DESKTOP, PAGE_TIMEOUT_MS, PHONE, book_url, browser_context  # noqa: F401  (fixtures)

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
def tables(browser_context, book_url):  # noqa: F811
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


def test_the_check_sees_a_broken_number_and_vaelib_tables_writes_none(browser_context):  # noqa: F811
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

#!/usr/bin/env python3
"""The project's commands, for a fresh clone on a machine with only Python 3 and pip.

    python3 tasks.py --help           # every command, one line each
    python3 tasks.py book             # set up .venv, execute the chapters that changed, build the HTML
    python3 tasks.py test             # set up .venv, run the whole test suite (library, chapters, built book),
                                      # on one pytest-xdist worker per core
    python3 tasks.py chapter NAME     # execute one chapter (e.g. vae, or a notebook's path) as the build does
    python3 tasks.py lab              # open the chapters in JupyterLab, with .venv as their kernel
    python3 tasks.py pdf              # the whole book as one PDF (_build/vaebook.pdf), offline

The virtual environment is (re)built when requirements.txt or pyproject.toml change; the command
then runs on inside it.

The book build executes chapters through myst-nb's cache (jupyter-cache, in _build/_build/.jupyter_cache):
a chapter is executed again only when its code cells change, and every chapter is executed again
when vaelib's sources or the pinned requirements change (jupyter-cache keys on a chapter's code
alone, so ``build_book`` clears the cache then). The tests check that build's executions
(tests/test_chapters.py), so each chapter runs once per change, never twice.

No thread setting (OMP_NUM_THREADS) is made here: vaelib chooses its own thread count
(vaelib/threads.py), so the chapters run as fast from a reader's Jupyter as they do here, and a
regression shows in this build too. benchmarks/bench_chapters.py compares the two.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"
BUILD_DIR = ROOT / "_build"
CHROMIUM = Path("/usr/bin/chromium")
# What a chapter's outputs depend on besides its own code: the cache is cleared when these change.
LIBRARY_SOURCES = ("vaelib/**/*.py", "vaelib/**/*.c", "requirements.txt", "pyproject.toml")
# What a cached execution records besides the notebook: a cache filled before a change of it is
# cleared like one filled with other library sources.
CACHE_FORMAT = "execution_seconds, imported"
TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")
CHAPTER_BUDGET_S = 45  # seconds per chapter's execution at idle (benchmarks/bench_chapters.py)
LAB_KERNEL = "vaelib"  # the Jupyter kernel `lab` registers: .venv's Python


def run(*cmd: str | Path, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def ensure_venv() -> None:
    """Create .venv and install the pinned requirements and vaelib (editable), once per change.

    A working .venv is never deleted: a change of requirements is installed into it in place, so
    that a process still running from it (a test, a chapter's kernel, another git worktree that
    shares it through a symbolic link) keeps its packages. Only a .venv without a Python is
    created afresh.
    """
    digest = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == digest.hexdigest():
        return
    if PYTHON.exists() and (VENV / "pyvenv.cfg").exists():
        run(PYTHON, "-m", "pip", "install", "--quiet", "-r", ROOT / "requirements.txt")
        if not VENV.is_symlink():  # a worktree's shared .venv has vaelib installed from its owner
            run(PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ROOT)
        write_atomically(STAMP, digest.hexdigest())
        return
    if VENV.exists():
        shutil.rmtree(VENV)
    venv.create(VENV, with_pip=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-r", ROOT / "requirements.txt")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ROOT)
    write_atomically(STAMP, digest.hexdigest())


def ensure_chromium() -> None:
    """The browser test drives Debian's Chromium; install it with apt-get when it is missing.

    A Korean font (fonts-nanum) comes with it, so the Korean terms show in the test's screenshots.
    """
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        sys.exit("The browser test needs Chromium at /usr/bin/chromium. Install it "
                 "(Debian/Ubuntu: sudo apt-get install chromium) and run the tests again.")
    run("apt-get", "update", "-qq")
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-nanum",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def toc_files(root: Path = ROOT) -> list[str]:
    """Every page of the book, in the order of _toc.yml: the root page, then each chapter."""
    import yaml

    def files(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for value in node.values():
                yield from files(value)
        elif isinstance(node, list):
            for item in node:
                yield from files(item)

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [toc["root"], *files(toc)]


def notebook_chapters(root: Path = ROOT) -> list[str]:
    """The pages of _toc.yml that are notebooks, the ones the build executes: e.g. "book/vae"."""
    return [page for page in toc_files(root) if (root / f"{page}.ipynb").is_file()]


def library_digest(root: Path = ROOT) -> str:
    """sha256 over the names and contents of LIBRARY_SOURCES (and CACHE_FORMAT)."""
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for path in sorted({p for pattern in LIBRARY_SOURCES for p in root.glob(pattern) if p.is_file()}):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def cache_dir(output: Path = BUILD_DIR) -> Path:
    """Where myst-nb keeps the executed chapters (its default for `--path-output output`)."""
    return output / "_build" / ".jupyter_cache"


def clear_cache_if_library_changed(output: Path = BUILD_DIR, root: Path = ROOT) -> None:
    """Empty the execution cache when vaelib or the requirements changed since it was filled.

    The digest of the sources it was filled with is kept beside it; it is written before the
    build, so an interrupted build leaves executions that match it.
    """
    cache, digest = cache_dir(output), library_digest(root)
    stamp = cache.with_name(cache.name + ".sources.sha256")
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    if cache.exists():
        print(f"vaelib/ or the requirements changed: every chapter will be executed again ({cache} cleared)",
              flush=True)
        shutil.rmtree(cache)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(stamp, digest + "\n")


@dataclass(frozen=True)
class BookBuild:
    """What one `jupyter-book build` left: its --path-output folder, exit status and output."""

    output: Path
    returncode: int | None  # None: a book built elsewhere, whose status is unknown
    log: str = field(default="", repr=False)

    @property
    def html(self) -> Path:
        return self.output / "_build" / "html"

    def warnings(self) -> list[str]:
        lines = TERMINAL_COLOURS.sub("", self.log).splitlines()
        return [line for line in lines if "WARNING:" in line or "ERROR:" in line]


# Run in each chapter's kernel before its first cell (IPython's exec_files): after every cell, the
# top-level names of the modules imported so far are written to a file, so that the book can tell
# which of vaelib's extras a chapter needs (book/_ext/takeaway.py). Nothing shows in the notebook.
# It also marks rfc3987_syntax as absent: JupyterLab's jupyter-events installs it for jsonschema's
# optional IRI format check, and it compiles 38 grammars when imported, which jsonschema does when
# a chapter's first myst_nb.glue imports nbformat: 2.8 s of every chapter's execution (as much in a
# reader's Jupyter, once per kernel). jsonschema skips that check when the module cannot be
# imported, and nothing a chapter does validates an IRI.
IMPORTS_RECORDER = """\
import sys
sys.modules.setdefault("rfc3987_syntax", None)
def _vaebook_record_imports(*_, _path={path!r}):
    import sys
    with open(_path, "w") as file:
        names = {{name.partition(".")[0] for name, module in list(sys.modules.items()) if module is not None}}
        file.write("\\n".join(sorted(names)))
get_ipython().events.register("post_run_cell", _vaebook_record_imports)
del _vaebook_record_imports, sys
"""


@dataclass
class Execution:
    """One chapter executed as the build executes it: the notebook with its outputs, the seconds
    it took, the error that stopped it (None when it ran to the end) and the top-level modules
    its kernel had imported by the end."""

    path: str
    notebook: object = field(repr=False)
    seconds: float
    error: str | None
    imported: list[str]


def prepare_kernel_environment() -> None:
    """What the chapters' kernels inherit from this process: the setting the book's extension makes
    (pages load plotly.js themselves), and no MPLBACKEND: set to Agg, as a shell or a command run
    in-process may leave it, it would stop the kernels' inline figures, and the pages would lose them."""
    os.environ["VAELIB_PLOTLYJS"] = "page"
    os.environ.pop("MPLBACKEND", None)


def _execute(path: str, timeout: int) -> Execution:
    """Run one chapter as myst-nb's cache mode runs it (in its folder, _config.yml's timeout per
    cell, errors not allowed), recording what its kernel imports; in a worker process of
    ``execute_uncached_chapters`` (or in ``chapter``'s own process)."""
    import tempfile

    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    prepare_kernel_environment()  # the kernel started below inherits this process's environment
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="vaebook-imports-") as scratch:
        recorder, record = Path(scratch) / "record_imports.py", Path(scratch) / "imported.txt"
        recorder.write_text(IMPORTS_RECORDER.format(path=str(record)))
        result = single_nb_execution(notebook, cwd=str(Path(path).parent), allow_errors=False,
                                     timeout=timeout, meta_override=True,
                                     extra_arguments=[f"--IPKernelApp.exec_files={recorder}"])
        imported = record.read_text().split() if record.is_file() else []
    return Execution(path, notebook, result.time, None if result.err is None else result.exc_string, imported)


def execute_uncached_chapters(output: Path = BUILD_DIR, root: Path = ROOT) -> None:
    """Execute the chapters the cache does not hold, one per core at a time, and cache them.

    myst-nb's cache mode executes chapters one after the other; on a machine with two cores that
    leaves one idle while a chapter's kernel starts, imports and runs single-threaded code. The
    build then finds these chapters in the cache. A chapter that fails is not cached: the build
    executes it again and reports it (``chapter_problems``).
    """
    import nbformat
    import yaml
    from concurrent.futures import ProcessPoolExecutor
    from jupyter_cache import get_cache

    timeout = yaml.safe_load((root / "_config.yml").read_text())["execute"]["timeout"]
    cache = get_cache(str(cache_dir(output)))
    pending = []
    for chapter in notebook_chapters(root):
        path = str(root / f"{chapter}.ipynb")
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            pending.append(path)
    if not pending:
        return
    workers = min(len(pending), os.cpu_count() or 1)
    print(f"executing {len(pending)} chapters, {workers} at a time", flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for execution in pool.map(_execute, pending, [timeout] * len(pending)):
            name = Path(execution.path).relative_to(root)
            if execution.error is None:
                _cache_execution(cache, execution)
            print(f"  {name}: {'executed' if execution.error is None else 'FAILED'} in {execution.seconds:.0f} s",
                  flush=True)


def _cache_execution(cache, execution: Execution) -> None:
    """Store a chapter's successful execution where the book build looks for it, with its time and
    the top-level modules it imported (read by book/_ext/takeaway.py)."""
    from jupyter_cache.base import CacheBundleIn

    record = cache.add_nb_to_project(execution.path)
    data = {"execution_seconds": execution.seconds, "imported": execution.imported}
    cache.cache_notebook_bundle(CacheBundleIn(execution.notebook, record.uri, data=data),
                                check_validity=False, overwrite=True)


def resolve_notebook(name: str, root: Path = ROOT) -> tuple[Path, str, bool] | None:
    """What ``chapter`` executes: a chapter of the book by name ("vae", "book/vae.ipynb") or any
    notebook by its path (an edited copy, say). Returns the notebook's path, the label its report
    uses (e.g. "book/vae") and whether it is a chapter of the book; None when there is no such
    chapter or file."""
    chapters = notebook_chapters(root)
    given = Path(name)
    if given.suffix == ".ipynb" and given.is_file():
        path = given.resolve()
        stem = path.stem
        is_chapter = f"book/{stem}" in chapters and path == (root / "book" / f"{stem}.ipynb").resolve()
        try:
            label = path.relative_to(root.resolve()).with_suffix("").as_posix()
        except ValueError:
            label = str(given.with_suffix(""))
        return path, label, is_chapter
    stem = given.name.removesuffix(".ipynb")
    if f"book/{stem}" in chapters:
        return root / "book" / f"{stem}.ipynb", f"book/{stem}", True
    return None


def chapter(name: str, output: Path = BUILD_DIR, root: Path = ROOT) -> int:
    """Execute one chapter exactly as the book build does (its folder, _config.yml's timeout per
    cell, the build's environment), report its time against the budget and every cell that raised
    or printed to stderr, and keep a clean execution of a book chapter in the build's cache, so
    that the next build does not execute it again.

    ``name`` is a chapter's name (e.g. "vae") or the path of a notebook (a copy being edited,
    executed from its own folder and not cached). Returns 0 when it ran cleanly, 1 when a cell
    failed, 2 when there is no such chapter.
    """
    import resource

    import yaml
    from jupyter_cache import get_cache

    found = resolve_notebook(name, root)
    if found is None:
        chapters = [Path(c).name for c in notebook_chapters(root)]
        print(f"no chapter or notebook {name!r}; the chapters are: {', '.join(chapters)} "
              "(or give a notebook's path, e.g. book/vae.ipynb)", file=sys.stderr)
        return 2
    path, label, is_chapter = found
    if is_chapter:
        clear_cache_if_library_changed(output, root)
    timeout = yaml.safe_load((root / "_config.yml").read_text())["execute"]["timeout"]
    print(f"executing {label}.ipynb ...", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    execution = _execute(str(path), timeout)
    executed, seconds, error = execution.notebook, execution.seconds, execution.error
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the chapter's kernel, once it has exited
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    problems = [_describe(label, index, cell, problem) for index, cell in enumerate(executed.cells)
                for problem in _output_problems(cell)]
    if error is not None and not problems:
        last = next((line for line in reversed(error.strip().splitlines()) if line.strip()), error)
        problems = [f"{label}.ipynb: {last}"]
    verdict = "within" if seconds <= CHAPTER_BUDGET_S else "OVER"
    print(f"{label}.ipynb: {'FAILED' if problems else 'ran cleanly'} in {seconds:.1f} s wall, {cpu:.1f} s "
          f"CPU in its kernel ({verdict} the {CHAPTER_BUDGET_S} s budget at idle; the wall time grows with "
          "the machine's load)")
    for line in problems:
        print("  " + line, file=sys.stderr)
    if problems:
        return 1
    if is_chapter:
        _cache_execution(get_cache(str(cache_dir(output))), execution)
        print(f"cached for the next build of the book ({cache_dir(output)})")
    else:
        print(f"not a chapter of this book ({root / 'book'}): its execution is not cached")
    return 0


def build_book(output: Path = BUILD_DIR, root: Path = ROOT, builder: str = "html") -> BookBuild:
    """Build the HTML with Sphinx warnings as errors, executing only what the cache does not hold.

    The build goes on past a failing chapter (--keep-going), so one build finds every failure; read
    them with ``chapter_problems``. Its output is printed as it comes and kept in the result.
    ``builder="singlehtml"`` builds the whole book as one page (for the PDF), from the same cache.
    """
    from filelock import FileLock

    output.mkdir(parents=True, exist_ok=True)
    # Two builds into one folder would share its doctrees and its execution cache: the second waits.
    with FileLock(output / ".build.lock"):
        return _build_book(output, root, builder)


def _build_book(output: Path, root: Path, builder: str) -> BookBuild:
    prepare_kernel_environment()  # the build executes a chapter that failed before (to report it)
    clear_cache_if_library_changed(output, root)
    execute_uncached_chapters(output, root)
    # myst-nb writes reports/<chapter>.err.log for a chapter that fails; one from an earlier build
    # would outlive its fix.
    shutil.rmtree(output / "_build" / builder / "reports", ignore_errors=True)
    # --all re-reads every page (from the cache): Sphinx would otherwise skip an unchanged page and
    # forget the warnings it raised in the build before, and pass.
    cmd = [VENV / "bin" / "jupyter-book", "build", root, "--path-output", output, "--builder", builder,
           "--warningiserror", "--nitpick", "--keep-going", "--all"]
    print("+", " ".join(str(c) for c in cmd), flush=True)
    lines = []
    with subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return BookBuild(output, process.returncode, "".join(lines))


def chapter_problems(chapter: str, output: Path = BUILD_DIR, root: Path = ROOT) -> list[str]:
    """What went wrong when the last build executed ``chapter`` (e.g. "book/vae"): one line per
    cell that raised or printed to stderr (a chapter's warnings are errors), naming the cell by its
    number and first line; [] when every cell ran cleanly.

    A chapter that ran to the end is in the build's jupyter-cache; one that did not is missing from
    it, and myst-nb then wrote the notebook as far as it ran to _build/jupyter_execute/.
    """
    import nbformat
    from jupyter_cache import get_cache

    source, cache = root / f"{chapter}.ipynb", cache_dir(output)
    if not cache.is_dir():
        return [f"{chapter}: no execution cache at {cache}: build the book first"]
    notebook = nbformat.read(source, as_version=4)
    try:
        _, executed = get_cache(cache).merge_match_into_notebook(notebook)
    except KeyError:
        return _unfinished_execution(chapter, source, notebook, output, get_cache(cache))
    return [_describe(chapter, index, cell, problem) for index, cell in enumerate(executed.cells)
            for problem in _output_problems(cell)]


def _unfinished_execution(chapter: str, source: Path, notebook, output: Path, cache) -> list[str]:
    """Name the cell that raised (or never finished) in the partial notebook the build wrote."""
    import nbformat

    try:
        traceback = cache.get_project_record(str(source.absolute())).traceback or ""
    except KeyError:
        traceback = ""
    last_line = next((line for line in reversed(traceback.strip().splitlines()) if line.strip()), "")
    partial = output / "_build" / "jupyter_execute" / f"{chapter}.ipynb"
    executed = nbformat.read(partial, as_version=4) if partial.is_file() else None
    started = [] if executed is None or _code(executed) != _code(notebook) else \
        [index for index, cell in enumerate(executed.cells) if cell.get("execution_count")]
    if not started:
        return [f"{chapter}: the last build did not execute it to the end, and left no notebook of what it "
                f"ran that matches the current source: {last_line or 'no error recorded; build the book'}"]
    problems = [_describe(chapter, index, cell, problem) for index, cell in enumerate(executed.cells)
                for problem in _output_problems(cell)]
    return problems or [_describe(chapter, started[-1], executed.cells[started[-1]], f"did not finish: {last_line}")]


def _code(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def _output_problems(cell) -> list[str]:
    """An error (unless the cell is tagged to raise one) or stderr text (unless tagged to hide it)."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    problems = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error" and "raises-exception" not in tags:
            problems.append(f"{output.get('ename')}: {output.get('evalue')}")
        elif output.get("output_type") == "stream" and output.get("name") == "stderr" \
                and "remove-stderr" not in tags:
            problems.append(f"printed to stderr: {output.get('text', '').strip()[:500]}")
    return problems


def _describe(chapter: str, index: int, cell, problem: str) -> str:
    first_line = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f"{chapter}.ipynb, cell {index + 1} ({first_line[:88]!r}): {problem}"


def book() -> int:
    """Build the book; on failure, say which chapters and cells failed, after Sphinx's own output."""
    build = build_book()
    problems = [line for chapter in notebook_chapters() for line in chapter_problems(chapter)]
    if build.returncode == 0 and not problems:
        print(f"\nThe book is built: open {build.html / 'index.html'}")
        return 0
    print("\nThe book build FAILED.", file=sys.stderr)
    for line in problems or build.warnings():
        print("  " + line, file=sys.stderr)
    return build.returncode or 1


PDF_NAME = "vaebook.pdf"
# Chromium as the browser test starts it: headless, and no host but 127.0.0.1 resolves, so the PDF
# is made offline (a page that reached for the network would miss what it fetched).
PRINT_CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                       "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                       "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
# Run in the page before printing: wait for MathJax's typesetting and every image, open what a
# reader would click open (exercise solutions, collapsed notes), and say what is still wrong.
PREPARE_FOR_PRINT_JS = """async () => {
  if (window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
  // book.js draws a 3-D figure when the reader reaches it; on paper, every one now.
  if (window.vaebookPlotAll) { await window.vaebookPlotAll(); }
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(el => el.classList.remove('toggle-hidden'));
  document.querySelectorAll('img[loading="lazy"]').forEach(img => { img.loading = 'eager'; });
  await Promise.all(Array.from(document.images).map(img => img.complete ? null :
      new Promise(done => { img.onload = img.onerror = done; })));
  return {
    untypeset: Array.from(document.querySelectorAll('div.math, span.math'))
                 .filter(el => !el.querySelector('mjx-container')).length,
    math_errors: document.querySelectorAll('mjx-merror').length,
    broken_images: Array.from(document.images).filter(img => !(img.complete && img.naturalWidth > 0))
                     .map(img => img.getAttribute('src')),
  };
}"""
# Paper has no scroll bars: what scrolls sideways on screen (wide tables, long code lines) wraps or
# shrinks to the page, and a figure, an equation or a table row is not split across two pages.
PRINT_CSS = """@media print {
  pre, .highlight pre, .output pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }
  .pst-scrollable-table-container, .table-wrapper, div.cell_output, div.output, .highlight {
    overflow: visible !important; max-height: none !important; }
  table.table { width: 100% !important; font-size: 8pt; table-layout: auto; }
  table.table td, table.table th { padding: 0.2em 0.35em !important; }
  img, figure, .plotly-graph-div, tr, mjx-container[display="true"], div.math { break-inside: avoid; }
  h1, h2, h3, .caption { break-after: avoid; }
}"""
PDF_FOOTER = ('<div style="font-size: 8px; width: 100%; text-align: center; color: #555;">'
              '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')


def print_to_pdf(site: Path, page: str, target: Path, timeout_s: float = 600) -> dict:
    """Print the page ``page`` (a path under the folder ``site``) to an A4 PDF in Debian's Chromium
    (Playwright), the folder served from a local HTTP server; returns what ``PREPARE_FOR_PRINT_JS``
    found. Written to a temporary name first."""
    import concurrent.futures
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    partial = target.with_name(target.name + ".partial")

    def print_page() -> dict:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=PRINT_CHROMIUM_ARGS)
            try:
                tab = browser.new_page(viewport={"width": 1100, "height": 1400})
                tab.set_default_timeout(timeout_s * 1000)
                tab.goto(f"http://127.0.0.1:{server.server_address[1]}/{page}", wait_until="load")
                tab.add_style_tag(content=PRINT_CSS)
                found = tab.evaluate(PREPARE_FOR_PRINT_JS)
                tab.emulate_media(media="print")
                tab.pdf(path=str(partial), format="A4", print_background=True, display_header_footer=True,
                        header_template="<span></span>", footer_template=PDF_FOOTER,
                        margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"})
                return found
            finally:
                browser.close()

    try:
        # Playwright's sync API refuses a thread whose asyncio loop is running (a caller that drives
        # a browser of its own, as the test session does); a thread of its own has none.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            found = pool.submit(print_page).result()
    finally:
        server.shutdown()
        server.server_close()
    partial.replace(target)
    return found


def pdf(output: Path = BUILD_DIR, root: Path = ROOT) -> int:
    """The whole book as one PDF, offline: Jupyter Book's single-page HTML (from the same execution
    cache as the HTML book) printed by Chromium once MathJax has typeset every equation."""
    import time

    from pypdf import PdfReader

    started = time.monotonic()
    build = build_book(output, root, builder="singlehtml")
    site, page = output / "_build" / "singlehtml", f"{toc_files(root)[0]}.html"  # the root page holds them all
    if build.returncode != 0 or not (site / page).is_file():
        print("\nThe single-page build FAILED.", file=sys.stderr)
        for line in build.warnings():
            print("  " + line, file=sys.stderr)
        return build.returncode or 1
    built = time.monotonic()
    # The builder writes the root page in its folder (book/) with links relative to the site's top
    # (_static/, _images/): printed from there, MathJax and every figure would be missing.
    shutil.copyfile(site / page, site / "vaebook.html")
    target = output / PDF_NAME
    found = print_to_pdf(site, "vaebook.html", target)
    problems = [f"{found['untypeset']} formulas not typeset"] * bool(found["untypeset"]) + \
               [f"{found['math_errors']} MathJax errors"] * bool(found["math_errors"]) + \
               [f"image not loaded: {src}" for src in found["broken_images"]]
    pages = len(PdfReader(target).pages)
    print(f"\nThe PDF is built: {target} ({pages} pages, {target.stat().st_size / 1e6:.1f} MB; "
          f"single page {built - started:.0f} s, printing {time.monotonic() - built:.0f} s)")
    for line in problems:
        print("  " + line, file=sys.stderr)
    return 1 if problems else 0


def register_kernel() -> str:
    """Register .venv as the Jupyter kernel "vaelib" (display name "Python (vaelib)") inside .venv
    itself (nothing is written to the home folder); returns the kernel's name."""
    run(PYTHON, "-m", "ipykernel", "install", "--sys-prefix", "--name", LAB_KERNEL,
        "--display-name", "Python (vaelib)")
    return LAB_KERNEL


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_command(port: int, token: str, browser: bool, root: Path = ROOT) -> list[str]:
    """JupyterLab on book/, on localhost only, with the book's kernel as the default one and no
    request to the network of its own (no news feed, no update check, no extension manager)."""
    return [str(PYTHON), "-m", "jupyterlab", f"--ServerApp.root_dir={root / 'book'}",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.open_browser={browser}",
            f"--MappingKernelManager.default_kernel_name={LAB_KERNEL}",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            # Jupyter refuses to run as root (a container's user, or CI's) unless told it may.
            *(["--ServerApp.allow_root=True"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]


def has_display() -> bool:
    """Whether a browser can be opened here: a desktop session (macOS, Windows, X11 or Wayland)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def lab(port: int | None = None) -> int:
    """Open JupyterLab on book/ with .venv registered as its kernel; print the URL with its token.

    The server replaces this process (Ctrl-C stops it, and its kernels with it). Its kernels
    inherit PYTHONPATH, so the chapters import this checkout's vaelib. The token is JUPYTER_TOKEN
    when set, else a new random one.
    """
    import secrets

    register_kernel()
    port = port or free_port()
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    browser = has_display()
    print(f"JupyterLab on {ROOT / 'book'} with the kernel 'Python (vaelib)':\n"
          f"    http://127.0.0.1:{port}/lab?token={token}\n"
          f"{'' if browser else 'No display here: open that URL in a browser. '}Ctrl-C stops the server.",
          flush=True)
    command = lab_command(port, token, browser)
    os.execv(command[0], command)
    return 0  # not reached


COMMANDS = {
    "book": "execute the chapters that changed and build the HTML book (warnings are errors)",
    "test": "run the whole test suite: the library, every chapter's execution, the built book in a browser",
    "chapter": "execute one chapter (NAME, e.g. vae, or a notebook's path) as the build does: "
               "time, CPU, failing cells",
    "lab": "open the chapters in JupyterLab with .venv as their kernel; prints the URL with its token",
    "pdf": f"build the whole book as one PDF, offline (_build/{PDF_NAME}): figures, equations, tables",
}


def parse_arguments(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python3 tasks.py", description="The book's and vaelib's commands. Each one sets up .venv "
        "(the pinned requirements and vaelib) when requirements.txt or pyproject.toml changed, then runs in it.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        command = commands.add_parser(name, help=summary, description=summary)
        if name == "chapter":
            command.add_argument("name", metavar="NAME", help="a chapter's name (e.g. vae) or a notebook's path")
        if name == "lab":
            command.add_argument("--port", type=int, default=None, help="the port (default: a free one)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)  # --help and a wrong command stop here, before any setup
    ensure_venv()
    if Path(sys.prefix).resolve() != VENV.resolve():  # go on inside .venv: the build's results need it
        os.execv(PYTHON, [str(PYTHON), str(Path(__file__).resolve()), *argv])
    # The chapters, the tests and the commands they start import this checkout's vaelib, also where
    # .venv is shared with another checkout (a git worktree) whose editable install points there.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if arguments.command == "book":
        return book()
    if arguments.command == "chapter":
        return chapter(arguments.name)
    if arguments.command == "lab":
        return lab(arguments.port)
    if arguments.command == "pdf":
        ensure_chromium()
        return pdf()
    ensure_chromium()
    return subprocess.run([str(PYTHON), "-m", "pytest", *pytest_worker_arguments(), "tests"], cwd=ROOT).returncode


def pytest_worker_arguments() -> list[str]:
    """pytest-xdist's arguments: one worker per core, each test file whole on one worker (its module
    fixtures, such as the browser's page reports, are set up once). The book is built once for all
    workers (tests/conftest.py); the files that need it are collected last, so that the other
    worker runs the rest meanwhile."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    # --no-loadscope-reorder: in the order collected (tests/conftest.py), not the largest file first.
    return ["-n", str(cores), "--dist", "loadfile", "--no-loadscope-reorder"] if cores > 1 else []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

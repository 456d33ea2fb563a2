"""What a reader takes away from the built book (loaded by _config.yml, `sphinx: local_extensions`).

- **What a chapter needs.** Each executed chapter's page starts with a collapsed note, "Run this
  chapter yourself", with the one install that runs its notebook in a fresh virtual environment:
  vaelib from the book's repository with the extras the chapter uses. The extras are derived, not
  listed by hand: `python3 tasks.py` records the top-level modules each chapter's kernel imported
  (in the build's execution cache), and an extra of pyproject.toml is named when one of its
  distributions is among them (``extras_for``).
- **Executed notebooks.** After an HTML build, each chapter's notebook with its outputs (from the
  build's execution cache) and that note as its first cell is written to notebooks/NAME.ipynb, and
  all of them to notebooks/ARCHIVE_NAME. The page's download menu offers both; the role
  ``{executed-notebooks}`text``` links the archive from a page (the introduction).

The note and the links are for the HTML book only: other builders (singlehtml for the PDF) leave
them out.
"""
from __future__ import annotations

import copy
import importlib.metadata
import re
import tomllib
import zipfile
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.osutil import relative_uri

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
NOTEBOOKS_DIR = "notebooks"  # under the built HTML
ARCHIVE_NAME = "vaebook-notebooks.zip"
ALWAYS = "notebook"  # the extra every chapter's notebook needs in Jupyter (glue, widgets, JupyterLab)
NOTE_TITLE = "Run this chapter yourself"
HTML_BUILDERS = {"html", "dirhtml"}
# A fixed time for the archive's members, so the same notebooks give the same archive.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Which extras a chapter needs

def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(text: str) -> tuple[str, list[str]]:
    """A requirement's distribution name and its extras: "dask[distributed]>=1" -> ("dask", ["distributed"])."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", text)
    if match is None:
        raise ValueError(f"pyproject.toml: cannot read the requirement {text!r}")
    return _canonical(match.group(1)), [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]


def _requires_for_extra(distribution: str, extra: str) -> set[str]:
    """The distributions that ``distribution[extra]`` adds (from its installed metadata)."""
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    marker = re.compile(r"""extra\s*==\s*["']""" + re.escape(extra) + r"""["']""")
    return {_requirement(line.split(";")[0])[0] for line in requires if ";" in line and marker.search(line)}


def optional_dependencies(pyproject: Path = PYPROJECT) -> dict[str, set[str]]:
    """Each extra of vaelib and the distributions it installs beyond vaelib's own dependencies, in
    pyproject.toml's order: e.g. {"sweep": {"dask", "distributed"}, ...}."""
    project = tomllib.loads(pyproject.read_text())["project"]
    base = {_requirement(requirement)[0] for requirement in project.get("dependencies", [])}
    extras = {}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        distributions = set()
        for requirement in requirements:
            name, its_extras = _requirement(requirement)
            distributions.add(name)
            for its_extra in its_extras:
                distributions |= _requires_for_extra(name, its_extra)
        extras[extra] = distributions - base
    return extras


def extras_for(imported: list[str] | set[str], pyproject: Path = PYPROJECT,
               module_distributions: dict[str, list[str]] | None = None) -> list[str]:
    """The extras of vaelib that a chapter needs, given the top-level modules its kernel imported:
    those with a distribution that provides one of the modules, ALWAYS first, then in
    pyproject.toml's order. ``module_distributions`` maps a module to its distributions
    (default: what is installed here, importlib.metadata.packages_distributions())."""
    if module_distributions is None:
        module_distributions = importlib.metadata.packages_distributions()
    used = {_canonical(distribution) for module in imported for distribution in module_distributions.get(module, [])}
    needed = [extra for extra, distributions in optional_dependencies(pyproject).items() if distributions & used]
    return [ALWAYS] + [extra for extra in needed if extra != ALWAYS]


def install_command(extras: list[str]) -> str:
    """The one install, run in the repository's top folder: vaelib with ``extras``."""
    return f'python -m pip install ".[{",".join(extras)}]"'


def note_markdown(extras: list[str], *, downloaded: bool) -> str:
    """The note, as the first (Markdown) cell of a downloaded notebook."""
    others = [extra for extra in extras if extra != ALWAYS]
    uses = (f"the extras it uses ({', '.join(f'`{extra}`' for extra in others)}) and " if others else "")
    return (f"**{NOTE_TITLE}.** This notebook needs vaelib, the library beside the book, with {uses}"
            f"`{ALWAYS}` (Jupyter, widgets, glue). In a fresh virtual environment, run in the top folder "
            "of the book's repository:\n\n"
            f"```bash\n{install_command(extras)}\n```\n\n"
            + ("then open this notebook in JupyterLab (`jupyter lab`) and run all its cells. "
               if downloaded else "")
            + "It runs offline, on a CPU.")


# ------------------------------------------------------------------------------------------------
# The build's executions

def _cache(app):
    from jupyter_cache import get_cache

    path = Path(app.env.mystnb_config.execution_cache_path)
    return get_cache(path) if path.is_dir() else None


def executed_notebook(app, docname: str):
    """The chapter's notebook as the build executed it (outputs included), and the modules its
    kernel imported (None when the execution did not record them); (None, None) when the cache
    holds no execution of its current code."""
    import nbformat

    cache = _cache(app)
    if cache is None:
        return None, None
    source = nbformat.read(app.env.doc2path(docname), as_version=4)
    try:
        key, executed = cache.merge_match_into_notebook(source)
    except KeyError:
        return None, None
    data = cache.get_cache_record(key).data or {}
    return executed, data.get("imported")


def _chapter_extras(app, docname: str) -> list[str] | None:
    executed, imported = executed_notebook(app, docname)
    if executed is None:
        return None
    if imported is None:
        logger.warning(f"takeaway: {docname}'s execution did not record the modules it imported (it was not "
                       "executed by `python3 tasks.py`): its note names every extra", location=docname)
        return [ALWAYS] + [extra for extra in optional_dependencies() if extra != ALWAYS]
    return extras_for(imported)


def _is_notebook(app, docname: str) -> bool:
    return str(app.env.doc2path(docname)).endswith(".ipynb")


def notebook_file(docname: str) -> str:
    """Where a chapter's executed notebook lies in the built HTML: "book/vae" -> "notebooks/vae.ipynb"."""
    return f"{NOTEBOOKS_DIR}/{docname.rsplit('/', 1)[-1]}.ipynb"


# ------------------------------------------------------------------------------------------------
# The page: the note under the title, the download menu, the archive's link

class archive_link(nodes.Inline, nodes.TextElement):
    """A link to the archive of executed notebooks, resolved per builder (``_resolve_archive_links``)."""


def executed_notebooks_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    return [archive_link(rawtext, text)], []


def _uri(app, docname: str, target: str) -> str:
    return relative_uri(app.builder.get_target_uri(docname), target)


def _resolve_archive_links(app, doctree, docname: str) -> None:
    for link in list(doctree.findall(archive_link)):
        if app.builder.name in HTML_BUILDERS:
            link.replace_self(nodes.reference(link.rawsource, link.astext(),
                                              refuri=_uri(app, docname, f"{NOTEBOOKS_DIR}/{ARCHIVE_NAME}")))
        else:
            link.replace_self(nodes.inline(link.rawsource, link.astext()))


def _add_note(app, doctree, docname: str) -> None:
    """Put the collapsed note "Run this chapter yourself" under an executed chapter's title."""
    if app.builder.name not in HTML_BUILDERS or not _is_notebook(app, docname):
        return
    extras = _chapter_extras(app, docname)
    section = next(iter(doctree.findall(nodes.section)), None)
    if extras is None or section is None:
        return
    note = nodes.admonition(classes=["run-yourself", "dropdown"])
    note += nodes.title(NOTE_TITLE, NOTE_TITLE)
    others = [extra for extra in extras if extra != ALWAYS]
    intro = nodes.paragraph()
    intro += nodes.Text("This chapter needs vaelib, the library beside the book, with "
                        + (f"the extras it uses ({', '.join(others)}) and " if others else "")
                        + f"{ALWAYS} (Jupyter, widgets, glue). In a fresh virtual environment, run in the top "
                          "folder of the book's repository:")
    note += intro
    command = install_command(extras)
    note += nodes.literal_block(command, command, language="bash")
    then = nodes.paragraph()
    then += nodes.Text("Then open the chapter's ")
    then += nodes.reference("", "notebook with its outputs", refuri=_uri(app, docname, notebook_file(docname)))
    then += nodes.Text(" in JupyterLab and run all its cells; it runs offline, on a CPU. ")
    then += nodes.reference("", "Other ways to run it", refuri=_uri(app, docname, app.builder.get_target_uri(app.config.root_doc))
                            + "#sec-run-yourself")
    then += nodes.Text(".")
    note += then
    section.insert(section.first_child_matching_class(nodes.title) + 1, note)


def _add_downloads(app, pagename, templatename, context, doctree) -> None:
    """Offer the executed notebook and the archive in the page's download menu (after the theme's
    source .ipynb)."""
    if app.builder.name not in HTML_BUILDERS or pagename not in app.env.found_docs \
            or not _is_notebook(app, pagename):
        return
    pathto = context["pathto"]
    for group in context.get("header_buttons", []):
        if group.get("label") == "download-buttons":
            group["buttons"][1:1] = [  # after the source notebook, before .pdf
                {"type": "link", "url": pathto(notebook_file(pagename), 1), "text": ".ipynb with outputs",
                 "tooltip": "Download the executed notebook", "icon": "fas fa-code",
                 "label": "download-executed-notebook-button"},
                {"type": "link", "url": pathto(f"{NOTEBOOKS_DIR}/{ARCHIVE_NAME}", 1), "text": "all chapters (.zip)",
                 "tooltip": "Download every chapter as an executed notebook", "icon": "fas fa-file-archive",
                 "label": "download-all-notebooks-button"},
            ]


# ------------------------------------------------------------------------------------------------
# The files: executed notebooks and their archive

def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def downloadable(executed, extras: list[str]):
    """The executed notebook with the note as its first cell (a copy)."""
    import nbformat

    notebook = copy.deepcopy(executed)
    cell = nbformat.v4.new_markdown_cell(note_markdown(extras, downloaded=True))
    cell.metadata["tags"] = ["run-yourself"]
    notebook.cells.insert(0, cell)
    return notebook


def _write_notebooks(app, exception) -> None:
    import nbformat

    if exception is not None or app.builder.name not in HTML_BUILDERS:
        return
    outdir = Path(app.outdir)
    written = []
    for docname in sorted(app.env.found_docs):
        if not _is_notebook(app, docname):
            continue
        executed, _ = executed_notebook(app, docname)
        if executed is None:
            logger.warning(f"takeaway: no execution of {docname} in the build's cache: its executed notebook "
                           "is not offered for download", location=docname)
            continue
        notebook = downloadable(executed, _chapter_extras(app, docname))
        data = nbformat.writes(notebook).encode("utf-8")
        _write_bytes(outdir / notebook_file(docname), data)
        written.append((notebook_file(docname).rsplit("/", 1)[-1], data))
    archive = outdir / NOTEBOOKS_DIR / ARCHIVE_NAME
    partial = archive.with_name(archive.name + ".partial")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in written:
            bundle.writestr(zipfile.ZipInfo(name, date_time=ZIP_TIME), data, compress_type=zipfile.ZIP_DEFLATED)
    partial.replace(archive)
    logger.info(f"takeaway: {len(written)} executed notebooks and {ARCHIVE_NAME} in {outdir / NOTEBOOKS_DIR}")


def setup(app):
    app.add_node(archive_link)
    app.add_role("executed-notebooks", executed_notebooks_role)
    app.connect("doctree-resolved", _resolve_archive_links)
    app.connect("doctree-resolved", _add_note)
    app.connect("html-page-context", _add_downloads, priority=502)  # after the theme's buttons (501)
    app.connect("build-finished", _write_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


"""Each chapter ran cleanly in the book build: no cell raised an error or printed to stderr.

The book is built once per test session (the ``book_build`` fixture in conftest.py), executing
only the chapters its cache does not hold; these tests read what that build executed, so a
chapter runs once per change and never a second time for the tests. A failing test names the
chapter's cell (number and first line) and the error.
"""
import nbformat
import pytest
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import tasks


@pytest.mark.parametrize("chapter", tasks.notebook_chapters())
def test_chapter_runs_without_errors_or_stderr(book_build, chapter):
    problems = tasks.chapter_problems(chapter, book_build.output)
    assert not problems, "\n".join(problems)


# How the build's results are read, on a notebook made here and put where the build puts it.

CHAPTER = "book/demo"


def _notebook(outputs_of_cell_3=(), tags_of_cell_3=()):
    return new_notebook(cells=[
        new_markdown_cell("# Demo"),
        new_code_cell("import math\nx = 1", execution_count=1),
        new_code_cell("# the third cell\ny = x / 0", execution_count=2, outputs=list(outputs_of_cell_3),
                      metadata={"tags": list(tags_of_cell_3)}),
        new_code_cell("z = 2", execution_count=None),
    ])


def _project(tmp_path, executed=None, partial=None, tags_of_cell_3=()):
    """A source notebook in root/book, and the build's results for it in output: the cached
    executed notebook (a chapter that ran to the end) or the partial one (a chapter that did not)."""
    root, output = tmp_path / "root", tmp_path / "output"
    source = root / f"{CHAPTER}.ipynb"
    source.parent.mkdir(parents=True)
    clean = _notebook(tags_of_cell_3=tags_of_cell_3)
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(clean, source)
    tasks.cache_dir(output).mkdir(parents=True)
    if executed is not None:
        bundle = CacheBundleIn(executed, str(source))
        get_cache(tasks.cache_dir(output)).cache_notebook_bundle(bundle, check_validity=False)
    if partial is not None:
        path = output / "_build" / "jupyter_execute" / f"{CHAPTER}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(partial, path)
    return root, output


def test_a_chapter_that_ran_cleanly_has_no_problems(tmp_path):
    root, output = _project(tmp_path, executed=_notebook())
    assert tasks.chapter_problems(CHAPTER, output, root) == []


def test_stderr_names_the_chapter_and_the_cell(tmp_path):
    stderr = new_output("stream", name="stderr", text="UserWarning: something is off\n")
    root, output = _project(tmp_path, executed=_notebook([stderr]))
    assert tasks.chapter_problems(CHAPTER, output, root) == [
        "book/demo.ipynb, cell 3 ('# the third cell'): printed to stderr: UserWarning: something is off"]


def test_a_cell_tagged_remove_stderr_may_print_to_stderr(tmp_path):
    executed = _notebook([new_output("stream", name="stderr", text="progress 10%\n")], ["remove-stderr"])
    root, output = _project(tmp_path, executed=executed, tags_of_cell_3=["remove-stderr"])
    assert tasks.chapter_problems(CHAPTER, output, root) == []


def test_an_error_names_the_chapter_the_cell_and_the_error(tmp_path):
    error = new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])
    root, output = _project(tmp_path, partial=_notebook([error]))
    assert tasks.chapter_problems(CHAPTER, output, root) == [
        "book/demo.ipynb, cell 3 ('# the third cell'): ZeroDivisionError: division by zero"]


def test_a_cell_that_never_finished_is_named(tmp_path):
    root, output = _project(tmp_path, partial=_notebook())
    (problem,) = tasks.chapter_problems(CHAPTER, output, root)
    assert problem.startswith("book/demo.ipynb, cell 3 ('# the third cell'): did not finish")


def test_a_chapter_the_build_never_executed_is_a_problem(tmp_path):
    root, output = _project(tmp_path)
    (problem,) = tasks.chapter_problems(CHAPTER, output, root)
    assert "did not execute it to the end" in problem


def test_an_unexecuted_copy_of_the_chapter_is_not_taken_for_a_partial_run(tmp_path):
    unexecuted = _notebook()
    for cell in unexecuted.cells:
        if cell.cell_type == "code":
            cell.execution_count = None
    root, output = _project(tmp_path, partial=unexecuted)
    (problem,) = tasks.chapter_problems(CHAPTER, output, root)
    assert "did not execute it to the end" in problem and "cell" not in problem


def test_a_partial_notebook_of_other_code_is_not_trusted(tmp_path):
    error = new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])
    partial = _notebook([error])
    partial.cells[1].source = "import math\nx = 2"
    root, output = _project(tmp_path, partial=partial)
    (problem,) = tasks.chapter_problems(CHAPTER, output, root)
    assert "did not execute it to the end" in problem and "cell 3" not in problem


def test_the_cache_is_cleared_when_vaelib_changes_and_kept_otherwise(tmp_path):
    root, output = tmp_path / "root", tmp_path / "output"
    (root / "vaelib" / "engine").mkdir(parents=True)
    (root / "vaelib" / "engine" / "kernel.c").write_text("int f(void) { return 1; }\n")
    (root / "vaelib" / "train.py").write_text("EPOCHS = 1\n")
    cached = tasks.cache_dir(output) / "executed"

    def fill_and_clear():
        tasks.clear_cache_if_library_changed(output, root)
        kept = cached.is_dir()
        cached.mkdir(parents=True, exist_ok=True)
        return kept

    assert not fill_and_clear()
    assert fill_and_clear(), "nothing changed, yet the cache was cleared"
    (root / "vaelib" / "notes.txt").write_text("not a source file\n")
    assert fill_and_clear(), "a file that is not a source of vaelib cleared the cache"
    (root / "vaelib" / "engine" / "kernel.c").write_text("int f(void) { return 2; }\n")
    assert not fill_and_clear(), "the C kernel changed, yet the cache was kept"
    (root / "vaelib" / "train.py").write_text("EPOCHS = 2\n")
    assert not fill_and_clear(), "a module of vaelib changed, yet the cache was kept"

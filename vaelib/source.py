"""vaelib's own source on a book page: the code a chapter teaches, from its one definition.

``show_source(vaelib.VAE.reparameterize)`` in a notebook cell displays that method as it is in the
installed vaelib, with its file and line numbers, so a page and the library can never drift apart
(a copy pasted into a chapter would). In Jupyter and on the built page it renders as a highlighted
Python block (the object's ``_repr_markdown_``); ``str()`` gives the plain text.

Used by every chapter that teaches a model, a loss, an estimator or an update rule.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent  # vaelib/


@dataclass(frozen=True)
class Source:
    """A block of vaelib's source: the code, the qualified name and where it lives."""

    code: str
    qualname: str
    path: str      # relative to the folder that holds the vaelib package, e.g. "vaelib/models/vae.py"
    first_line: int
    last_line: int

    @property
    def caption(self) -> str:
        return f"{self.path}, lines {self.first_line}-{self.last_line}: {self.qualname}"

    def __str__(self) -> str:
        return f"# {self.caption}\n{self.code}"

    def _repr_markdown_(self) -> str:
        fence = "````" if "```" in self.code else "```"
        return f"`{self.caption}`\n\n{fence}python\n{self.code}\n{fence}\n"


def show_source(obj, *, docstring: bool = True) -> Source:
    """The source of a vaelib function, class or method, ready to display in a notebook cell.

    ``docstring=False`` leaves out the docstrings (of the object and of the methods of a class), to
    keep a long definition short on the page; the line numbers still name the whole definition.
    Raises ``TypeError`` for an object whose source is not in vaelib (a builtin, another package's
    function), since the page promises vaelib's own code.
    """
    target = inspect.unwrap(obj.fget if isinstance(obj, property) else obj)  # type: ignore[arg-type]
    try:
        file = Path(inspect.getsourcefile(target) or "").resolve()
        lines, first = inspect.getsourcelines(target)
    except (TypeError, OSError) as exc:
        raise TypeError(f"show_source needs a function, class or method defined in vaelib; "
                        f"{obj!r} has no Python source ({exc})") from None
    if _PACKAGE not in file.parents:
        raise TypeError(f"show_source shows vaelib's own code; {getattr(target, '__qualname__', obj)!r} is "
                        f"defined in {file}, outside {_PACKAGE}")
    code = textwrap.dedent("".join(lines)).rstrip("\n")
    if not docstring:
        code = _without_docstrings(code)
    return Source(code=code, qualname=getattr(target, "__qualname__", repr(target)),
                  path=file.relative_to(_PACKAGE.parent).as_posix(), first_line=first,
                  last_line=first + len(lines) - 1)


def _without_docstrings(code: str) -> str:
    """``code`` with the docstring of every function and class in it removed (whole lines only)."""
    tree = ast.parse(code)
    drop: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                drop.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    kept = [line for number, line in enumerate(code.splitlines(), start=1) if number not in drop]
    return "\n".join(kept)

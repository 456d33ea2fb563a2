"""The command line, one module per command: ``python -m vaelib COMMAND --help``.

Each command module defines ``add_parser(commands)`` (its argparse sub-parser, with a description
and an example) and ``run(args) -> int`` (the exit status). ``COMMANDS`` lists them in the order
``--help`` shows them. Shared here: a parser whose errors are one line with exit status 2, the
numeric argument types, and ``fail`` for one-line errors after parsing.

Exit statuses: 0 done, 1 training diverged, 2 bad input (arguments, files, data), 130 interrupted.

``--import MODULE`` (train, sample, encode, evaluate) imports a module of the user's before the
command runs, so that the model classes it registers (``vaelib.register_model``) can be trained,
loaded and scored by name. It runs that module's code: name only modules you trust.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ("train", "sample", "encode", "evaluate", "export", "reproduce", "sweep")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit with status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number_parser(convert, accepts, expected: str):
    """An argparse type: ``convert`` the text, then require ``accepts(value)``, else say ``expected``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


positive_int = number_parser(int, lambda v: v > 0, "a positive integer")
non_negative_int = number_parser(int, lambda v: v >= 0, "a non-negative integer")
positive_float = number_parser(float, lambda v: 0 < v < float("inf"), "a positive finite number")
seed = number_parser(int, lambda v: 0 <= v < 2**32, "a seed, an integer in [0, 2**32)")


def fail(command: str, exc: BaseException | str, status: int) -> int:
    """Print ``vaelib COMMAND: error: ...`` on one line to stderr and return ``status``."""
    message = " ".join(str(exc).split())
    print(f"vaelib {command}: error: {message}", file=sys.stderr)
    return status


def add_import_flag(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--import", action="append", default=[], dest="imports", metavar="MODULE",
                     help="import this module first (e.g. one that registers your model class with "
                          "vaelib.register_model; found on PYTHONPATH or in the current folder); repeatable")


def add_allow_large_flag(cmd: argparse.ArgumentParser, what: str) -> None:
    """``--allow-large``: lift vaelib.limits' refusals of work or memory beyond its limits for this
    command (``main`` runs the command inside ``limits.allow_large()``)."""
    cmd.add_argument("--allow-large", action="store_true",
                     help=f"{what} even when vaelib estimates more work or memory than its limits allow "
                          "(the refusal names the estimate and the limit)")


def import_user_modules(names: list[str]) -> None:
    """Import the modules given with ``--import``; a one-line ValueError for one that fails."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"--import {name}: {exc}; run from the module's folder or add it to PYTHONPATH") from exc
        except Exception as exc:  # the user's code: whatever it raises, one line
            raise ValueError(f"--import {name}: importing it raised {type(exc).__name__}: {exc}") from exc


def command_module(name: str):
    return importlib.import_module(f"vaelib.cli.{name}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m vaelib``, with every command's sub-parser, or only that of the
    command ``argv`` starts with: then only that command's imports run (a faster start)."""
    from vaelib import __version__

    parser = OneLineParser(prog="vaelib", description="vaelib's command line: train, evaluate and sample VAEs "
                                                      "on your own data, and reproduce the book's experiments.")
    parser.add_argument("--version", action="version", version=f"vaelib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser, metavar="COMMAND")
    for name in [argv[0]] if argv and argv[0] in COMMANDS else COMMANDS:
        command_module(name).add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]) and run the command; return the exit status.

    Nothing heavy is imported to parse: ``--help`` answers without torch or matplotlib (the
    commands import what they need in ``run``; the help's lists come from ``_catalogue``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        import_user_modules(getattr(args, "imports", []))
    except ValueError as exc:
        return fail(args.command, exc, status=2)
    try:
        if getattr(args, "allow_large", False):
            from vaelib import limits

            with limits.allow_large():
                return command_module(args.command).run(args)
        return command_module(args.command).run(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (a command may say more itself)
        return fail(args.command, "interrupted", status=130)

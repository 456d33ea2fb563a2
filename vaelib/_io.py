"""Writing files so that a reader never sees a half-written one: the one helper every vaelib writer uses.

``write_file(path, content)`` writes to a temporary file in the same folder, flushes it to disk
(fsync), renames it over ``path`` (``os.replace``, atomic on POSIX) and flushes the folder, so that
the rename itself survives a power cut. Until the rename, the old file (if any) stays whole; a crash
or an exception while writing leaves it untouched and removes the temporary file.

``write_files({path: content, ...})`` writes a group, e.g. a results table and its figure: every
temporary file is written and flushed first, then all are renamed. A failure or a Ctrl-C while the
temporaries are written leaves every old file in place. Ctrl-C and SIGTERM that arrive during the
renames are held back until the last rename is done (then delivered), so they cannot split the
group either. What remains: a process killed outright (SIGKILL, power loss) between two renames,
a window of a few microseconds, leaves the files renamed so far beside the old others; the renames
follow the order given, so put the file that marks a complete result last.

Content is ``bytes``, ``str`` (written as UTF-8) or a function ``write(temporary_path)`` for writers
that want a path (``figure.savefig``). Files get mode 0o666 minus the process's umask, like a file
that ``open`` creates.

A process killed while writing leaves its temporary file behind. Temporary files are named
``.<name>.<random>.vaelib-tmp``; a write removes those in its folder that are older than
``STALE_AFTER_SECONDS`` and belong to the current user, and nothing else (the folder is looked
through at most once per ``STALE_AFTER_SECONDS`` and process, so that many writes into a large
folder do not each list it).

Errors name the file: ``cannot write the checkpoint run.ckpt: no space left on device``.
``check_writable`` runs the path checks alone, to refuse a bad path before hours of training:
a missing folder, a folder or a special file (FIFO, device, socket) at the path, a folder that
cannot be written to. A special file is never replaced by a regular one.

Reading, the other way round: ``open_regular(path)`` opens a file for reading only when it is a
regular file (a FIFO would block for ever, a device may never end, a folder is no file); it asks
the open file itself (``fstat``), so that nothing can be swapped in between the check and the
read. ``read_document(path, what)`` reads a whole JSON or TOML file through it, at most
``MAX_DOCUMENT_BYTES`` long and nested at most ``MAX_NESTING`` levels (``check_nesting``): the
limits the checkpoint's metadata has, for every configuration, spec, settings and chunk file.
Their errors are ``DocumentError`` (a ``ValueError``), one line naming the file.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import tomllib

TEMPORARY_SUFFIX = ".vaelib-tmp"
STALE_AFTER_SECONDS = 15 * 60  # far longer than any write takes; a younger temporary may be in use
_TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMPORARY_SUFFIX) + "$")  # mkstemp's 8 characters
_KEEP_OF_NAME = 200  # characters of the target's name kept in a temporary name (names are at most 255)
_last_cleaned: dict[Path, float] = {}  # folder -> when this process last removed stale temporaries there

Content = bytes | str | Callable[[Path], object]
MAX_DOCUMENT_BYTES = 64 * 2**20  # a settings, spec or chunk file is kilobytes; a larger one is no such file
MAX_NESTING = 64  # levels of lists and tables; vaelib's own files use fewer than ten


class WriteError(OSError):
    """A file could not be written; the message names it and says why (``errno`` is kept)."""

    def __str__(self) -> str:
        return str(self.strerror)


def check_writable(path, what: str = "the file", *, argument: str | None = None, probe: bool = True) -> Path:
    """``path`` as a Path, after checking that a file can be written there (see the module's docstring).

    Messages start "cannot write <what> <path>: ", or "<argument>='<path>': " when ``argument`` names
    the parameter that gave the path. ``probe``: also create and remove a temporary file in the
    folder, the one test that cannot be wrong about permissions (root, read-only mounts, ACLs)."""
    label = f"{what} path" if argument is None else argument
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{label} must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    if os.fspath(path) in ("", b""):
        raise ValueError(f"{label} is empty; give a file name")
    path = Path(path)
    start = f"cannot write {what} {path}" if argument is None else f"{argument}={str(path)!r}"
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{start}: the folder {path.parent} does not exist; create it first")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise WriteError(exc.errno, f"{start}: {_reason(exc)}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{start}: it is a folder; give a file name")
    if mode is not None and not stat.S_ISREG(mode):
        raise FileExistsError(f"{start}: it is {_kind(mode)}, not a regular file, and writing would replace it "
                              "by one; choose another path")
    if probe:
        try:
            fd, name = _temporary(path)
        except OSError as exc:
            raise WriteError(exc.errno, f"{start}: the folder {path.parent} is not writable ({_reason(exc)})") from None
        os.close(fd)
        os.unlink(name)
    return path


def write_file(path, content: Content, what: str = "the file") -> Path:
    """Write ``content`` to ``path`` atomically (see the module's docstring); returns the path."""
    return write_files({path: content}, what=what)[0]


def write_files(contents: Mapping, what: str = "the file") -> list[Path]:
    """Write every ``path: content`` of ``contents`` as one group: all or, on failure, none (see the
    module's docstring). Returns the paths, in order."""
    targets = [(check_writable(path, what, probe=False), content) for path, content in contents.items()]
    if len({t.resolve() for t, _ in targets}) != len(targets):
        raise ValueError(f"write_files got the same file twice: {[str(t) for t, _ in targets]}")
    for folder in {t.parent for t, _ in targets}:
        if time.monotonic() - _last_cleaned.get(folder, -STALE_AFTER_SECONDS) >= STALE_AFTER_SECONDS:
            _last_cleaned[folder] = time.monotonic()
            remove_stale_temporaries(folder)
    written: list[tuple[Path, Path]] = []
    try:
        for target, content in targets:
            written.append((target, _write_temporary(target, content, what)))
        with _signals_held_back():
            for target, temporary in written:
                try:
                    os.replace(temporary, target)
                except OSError as exc:
                    raise _named(exc, target, what) from None
    except BaseException:
        for _, temporary in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        raise
    for folder in {t.parent for t, _ in targets}:
        _fsync_folder(folder, what)
    return [t for t, _ in targets]


def remove_stale_temporaries(folder, older_than: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove the temporary files that killed vaelib writers left in ``folder``: regular files named
    ``.<name>.<random>.vaelib-tmp``, owned by the current user and not modified for ``older_than``
    seconds. Anything else is left alone, and so is what cannot be removed. Returns what was removed."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TEMPORARY_NAME.match(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and now - info.st_mtime > older_than:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


# ----------------------------------------------------------------------------------------------


def _temporary(target: Path) -> tuple[int, str]:
    return tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:_KEEP_OF_NAME]}.", suffix=TEMPORARY_SUFFIX)


def _write_temporary(target: Path, content: Content, what: str) -> Path:
    """The content in a new temporary file beside ``target``, flushed to disk and given the usual mode."""
    try:
        fd, name = _temporary(target)
    except OSError as exc:
        raise _named(exc, target, what) from None
    temporary = Path(name)
    try:
        if callable(content):
            os.close(fd)
            fd = -1
            content(temporary)
            fd = os.open(temporary, os.O_RDONLY)
        else:
            view = memoryview(content.encode("utf-8") if isinstance(content, str) else content)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        os.fchmod(fd, 0o666 & ~_umask())
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise _named(exc, target, what) from None
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    return temporary


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path, what: str) -> None:
    """Make the renames themselves durable (POSIX); skipped where folders cannot be opened or synced."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise _named(exc, folder, what) from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def _signals_held_back() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM (Ctrl-C, a polite kill) until the block is done, then deliver the
    first one that came. Python handles signals in the main thread only, so elsewhere nothing is needed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(number)
        if handler not in (None, signal.SIG_IGN):
            previous[number] = signal.signal(number, lambda received, frame: arrived.append(received))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if arrived:
            signal.raise_signal(arrived[0])


def _reason(exc: OSError) -> str:
    if exc.errno is None:
        return str(exc)
    reason = os.strerror(exc.errno)
    reason = reason[0].lower() + reason[1:]
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += "; free some space or write elsewhere"
    return reason


def _named(exc: OSError, path: Path, what: str) -> WriteError:
    return WriteError(exc.errno, f"cannot write {what} {path}: {_reason(exc)}")


def _kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


# ----------------------------------------------------------------------------------------------
# Reading


class DocumentError(ValueError):
    """A JSON or TOML file that cannot be used: unreadable, too large, too deeply nested, not valid."""


def open_regular(path: str | os.PathLike[str], what: str = "the file") -> BinaryIO:
    """``path`` opened for reading in binary mode, after checking that it is a regular file.

    Raises ``FileNotFoundError`` ("no file at PATH"), ``IsADirectoryError`` for a folder and
    ``ValueError`` for a FIFO, device or socket, each one line. The file is opened without blocking
    (a FIFO with no writer would wait for ever) and checked through its descriptor."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the path of {what} must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    if os.fspath(path) in ("", b""):
        raise ValueError(f"the path of {what} is empty; give a file name")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"no file at {os.fspath(path)}") from None
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot read {what} {os.fspath(path)}: {_reason(exc)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{os.fspath(path)} is a folder, not {what}; give a file")
        raise ValueError(f"{os.fspath(path)} is {_kind(mode)}, not a regular file; vaelib reads {what} only "
                         "from a regular file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def file_size(file: BinaryIO) -> int:
    """The size in bytes of an open regular file."""
    return os.fstat(file.fileno()).st_size


def read_document(path: str | os.PathLike[str], what: str, *, kind: str | None = None) -> Any:
    """The content of a JSON or TOML file (``kind`` "json" or "toml"; by default from the suffix,
    ``.toml`` or else JSON), read through ``open_regular``, at most ``MAX_DOCUMENT_BYTES`` long and
    nested at most ``MAX_NESTING`` levels. Raises ``DocumentError`` naming the file and the problem
    (and ``FileNotFoundError``, ``IsADirectoryError`` as ``open_regular``)."""
    kind = kind or ("toml" if Path(path).suffix == ".toml" else "json")
    with open_regular(path, what) as f:
        size = file_size(f)
        if size > MAX_DOCUMENT_BYTES:
            raise DocumentError(f"{os.fspath(path)} holds {size:,} bytes, more than the {MAX_DOCUMENT_BYTES:,} of "
                                f"{_any(what)}; it is not one")
        raw = f.read(MAX_DOCUMENT_BYTES + 1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{os.fspath(path)} is not {what}: it is not UTF-8 text ({exc})") from None
    return parse_document(text, kind, f"{os.fspath(path)}", what)


def parse_document(text: str, kind: str, name: str, what: str) -> Any:
    """JSON or TOML text parsed with the limits of ``read_document``; ``name`` and ``what`` name it in errors."""
    try:
        value = json.loads(text) if kind == "json" else tomllib.loads(text)
    except RecursionError:
        raise DocumentError(f"{name} nests lists or tables more than {MAX_NESTING} levels deep, deeper than "
                            f"{_any(what)}") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DocumentError(f"{name} is not valid {kind.upper()}: {' '.join(str(exc).split())}") from None
    check_nesting(value, f"{name} nests lists or tables more than {MAX_NESTING} levels deep, deeper than {_any(what)}")
    return value


def _any(what: str) -> str:
    """"any sweep file" from "a sweep file" or "the sweep file": for messages that say "any"."""
    for article in ("a ", "an ", "the "):
        what = what.removeprefix(article)
    return f"any {what}"


def check_nesting(value: Any, message: str, limit: int = MAX_NESTING) -> None:
    """Raise ``DocumentError(message)`` when ``value`` nests lists, tuples or dicts more than
    ``limit`` levels deep; measured without recursion, so that any depth is safe to measure."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth > limit:
                raise DocumentError(message)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))

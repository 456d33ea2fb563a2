"""Compile a C source into a shared library once, cache it privately, and load it only after checking it.

Why: the batched engine's kernel (kernel.c) is built with the system's C compiler on first use and
kept on disk, so that later processes load it in milliseconds. Loading a library runs its code in
this process, so the cache is a place from which code is executed: it must be a folder nobody else
can write to, and nothing found in it is trusted until checked. A cache that is damaged, or that
cannot be made, costs a rebuild or the kernel; it never costs the run (the engine then takes its
PyTorch path) and never loads foreign code.

Where. ``$VAELIB_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/vaelib``, else ``~/.cache/vaelib``,
created with mode 0700. A folder owned by another user, or writable by group or others, is refused
with a ``KernelCacheWarning`` (someone else may have put files there). A folder that cannot be made
is replaced, quietly for the default location (a read-only home is normal in containers; the only
cost is a compile per process) and with a ``KernelCacheWarning`` for one the user named, by a folder
that ``tempfile.mkdtemp`` makes for this process alone (mode 0700, random name, removed at exit):
never a predictable name in a shared temporary folder.

What is trusted. The library is ``<source stem>-<key>.so``, the key hashing the source, the compiler
(its resolved path, its arguments and its ``--version`` output), the flags and the CPU (code built
with -march=native runs only on CPUs with the same instruction sets). A build writes beside it
``<library>.json``, which records the key, the size and the sha256 of the bytes built. Before a
library is loaded, it and its record must be regular files (not links, folders or devices) owned by
this user and writable by nobody else, and the library must have the recorded size and sha256. A
library that fails any check (random bytes, empty, truncated, a folder in its place, a file planted
or made writable by someone else, no record) is rebuilt once, and one that loads but lacks the
symbol likewise; quietly, except that a file another user owns or can write to is worth a
``KernelCacheWarning`` (someone may have tampered with the cache). If the rebuild fails too,
``load_library`` returns None after one ``KernelUnavailableWarning`` that says why. No compiler at
all (``$CC`` unset and no ``cc``) is normal, not a fault: None, without a warning (the caller
reports it where it matters). A truncated library must never reach dlopen: the dynamic loader maps
the file's segments as its headers describe them, and touching a page past the end of the file kills
the process with SIGBUS; the size and hash checks stop it first.

Time of check and time of use. The folder is opened once and checked through its descriptor; every
later step (opening the library and its record, renaming a build into place, removing files) is
relative to that descriptor, so swapping the folder's path after the check changes nothing. The
library is opened once (O_NOFOLLOW), checked with fstat and hashed from that descriptor, and dlopen
is given ``/proc/self/fd/N``, which names that same open file rather than the path again. Its bytes
cannot change between the hash and dlopen: only this user (or root) may write to it, and a rebuild
replaces the file by a rename, never by writing into it. The descriptor then stays open for the life
of the process, because glibc recognises an already loaded library by its name and would hand back
the old library for a ``/proc/self/fd/N`` reused for another file. Without /proc (macOS), the path
is loaded after checking that it still names the checked file (same device and inode); the race that
remains needs write access to the private folder, that is, this user. The compiler writes its output
to a path (``<library>.<pid>.<random>.partial`` in the folder), with umask 077; if the folder's path
were swapped during a build, the output would land elsewhere and opening it through the descriptor
would fail: a failed build, never a foreign file loaded.

Faults. The compiler runs in a session of its own with a time-out (``COMPILE_TIMEOUT_S``), and on
Linux is also stopped once its processes have used no CPU time for ``NO_PROGRESS_S`` (waiting on a
lock or a licence server). A compiler that hung is remembered in the cache folder
(``<library>.hung``, or ``<source stem>-<compiler>.version-hung`` for a ``--version`` that hung),
so that later processes fall back at once rather than wait again; the record names the cache key,
so a changed compiler, flags or source is tried afresh (removing the record retries). On the
time-out or any exception (KeyboardInterrupt included) the whole session is killed, the compiler
driver's children too (``subprocess.run``'s time-out kills only the driver: its cc1, as or ld would
run on and could write the output after it was cleaned up), and the partial file is removed. Partial
files left by processes killed outright are removed once older than ``STALE_PARTIAL_S``. Concurrent
builds write distinct partial names and rename atomically; each builder loads the file it built
through its own descriptor. The library and record on disk may then come from two different builds;
the next process sees the mismatch and rebuilds: a wasted compile, never a wrong load.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# A compile of kernel.c takes seconds; one that has not finished in a minute is stuck.
COMPILE_TIMEOUT_S = 60.0
# A compiler whose processes together use no CPU time for this long is waiting on something that
# will not come (a lock, a licence server, a terminal): stopped at once (Linux, from /proc).
NO_PROGRESS_S = 8.0
# ``cc --version`` answers in milliseconds; a compiler that does not answer in this time is unusable.
VERSION_TIMEOUT_S = 10.0
# Partial files older than this belong to a process that was killed (longer than any compile may take).
STALE_PARTIAL_S = 600.0
# More than any library this module builds; a larger file in the cache is not one of them.
MAX_LIBRARY_BYTES = 64 * 2**20
MAX_RECORD_BYTES = 4096

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_LOADED_DESCRIPTORS: list[int] = []  # kept open on purpose: see "Time of check and time of use" above


class KernelUnavailableWarning(RuntimeWarning):
    """The compiled kernel could not be built or loaded; the engine takes its PyTorch path instead."""


class KernelCacheWarning(RuntimeWarning):
    """The kernel's cache folder was refused or could not be made; a private temporary one is used."""


class _Unusable(Exception):
    """Why a library (cached or just built) cannot be loaded."""


class _NotBuilt(_Unusable):
    """The library is not in the cache yet: the normal first use, not a fault."""


class _Unsafe(_Unusable):
    """A file or folder that another user owns or can write to: it may hold someone else's code."""


def load_library(source: Path, flags: Sequence[str], symbol: str) -> ctypes.CDLL | None:
    """``source`` compiled with ``$CC`` (else ``cc``) and ``flags``, loaded, exposing ``symbol``.

    Built on first use and cached (see the module's docstring). Returns None when it cannot be:
    quietly when no compiler exists, else after one ``KernelUnavailableWarning`` that says why.
    """
    if os.name != "posix":  # the checks rely on POSIX owners, modes and descriptor-relative calls
        return None
    try:
        compiler = compiler_command()
        if compiler is None:
            return None
        return _load_or_build(Path(source), compiler, list(flags), symbol)
    except (_Unusable, OSError) as reason:  # OSError: a fault no check above foresaw; it costs the kernel, not the run
        warnings.warn(f"the engine's compiled kernel is unavailable: {reason}. It falls back to its PyTorch path "
                      "(same computation, slower).", KernelUnavailableWarning, stacklevel=2)
        return None


def compiler_command() -> list[str] | None:
    """``$CC`` split as a shell would (so that ``CC="ccache gcc"`` or ``CC="gcc -m64"`` work), its program
    resolved on PATH; ``cc`` if ``$CC`` is unset; None if that default does not exist."""
    named = os.environ.get("CC", "").strip()
    try:
        words = shlex.split(named) or ["cc"]
    except ValueError as error:
        raise _Unusable(f"CC={named!r} cannot be split into words ({error}); quote it as a shell would") from None
    program = shutil.which(words[0])
    if program is None and named:
        raise _Unusable(f"the compiler CC={named!r} was not found (PATH has no {words[0]!r}); set CC to a C compiler")
    return None if program is None else [program, *words[1:]]


def cache_key(source: bytes, compiler: Sequence[str], flags: Sequence[str]) -> str:
    """What the library depends on: the source, the compiler (path, arguments, version), the flags, the CPU."""
    parts = [source, "\0".join(compiler).encode(), _compiler_version(compiler), "\0".join(flags).encode(),
             cpu_signature().encode()]
    digest = hashlib.sha256()
    for part in parts:  # length-prefixed, so that no two different lists give the same bytes
        digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()[:32]


def cpu_signature() -> str:
    """Code built with -march=native runs only on CPUs with the same instruction sets."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def cache_dir() -> Path:
    """Where libraries are cached unless that folder is refused: $VAELIB_CACHE_DIR, else
    $XDG_CACHE_HOME/vaelib, else ~/.cache/vaelib."""
    if os.environ.get("VAELIB_CACHE_DIR"):
        return Path(os.environ["VAELIB_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "vaelib"  # XDG: relative is invalid


def _load_or_build(source: Path, compiler: list[str], flags: list[str], symbol: str) -> ctypes.CDLL:
    try:
        source_bytes = source.read_bytes()
    except OSError as error:
        raise _Unusable(f"its source {source} cannot be read ({error.strerror})") from None
    folder = _Folder.open_cache()
    try:
        identity = _compiler_identity(compiler)
        marker = f"{source.stem}-{identity}.version-hung"
        _refuse_if_hung(folder, marker, marker)
        try:
            key = cache_key(source_bytes, compiler, flags)
        except _Hung as hung:
            _remember_hung(folder, marker, marker, str(hung))
            raise
        name = f"{source.stem}-{key}.so"
        folder.remove_stale_partials()
        problem: _Unusable
        try:
            return _load_cached(folder, name, key, symbol)
        except _Unsafe as cached:
            problem = cached
            warnings.warn(f"{cached}, so it was not loaded; the engine's kernel is rebuilt in its place",
                          KernelCacheWarning, stacklevel=3)
        except _Unusable as cached:
            problem = cached
        _refuse_if_hung(folder, f"{name}.hung", f"{key}:{identity}")
        try:
            return _load_checked(folder, name, symbol, *_build(folder, name, key, compiler, flags, source))
        except _Hung as hung:
            _remember_hung(folder, f"{name}.hung", f"{key}:{identity}", str(hung))
            raise
        except _Unusable as built:
            before = "" if isinstance(problem, _NotBuilt) else f"{problem}; rebuilding it failed: "
            raise _Unusable(f"{before}{built}") from None
    finally:
        folder.close()


class _Folder:
    """A cache folder opened once and checked through its descriptor; every later step is relative to it."""

    def __init__(self, path: Path, descriptor: int):
        self.path, self.fd = path, descriptor

    @classmethod
    def open_cache(cls) -> _Folder:
        """The cache folder, or a private temporary one if it is refused or cannot be made."""
        named = bool(os.environ.get("VAELIB_CACHE_DIR"))
        try:
            return cls.open_private(cache_dir())
        except _Unsafe as refused:
            warnings.warn(f"{refused}, so another user could plant code in it; the engine's kernel is built in a "
                          "private temporary folder instead (make the folder yours, mode 0700)", KernelCacheWarning,
                          stacklevel=4)
        except (OSError, RuntimeError) as error:  # RuntimeError: no home folder to be found
            if named:
                warnings.warn(f"VAELIB_CACHE_DIR={os.environ['VAELIB_CACHE_DIR']!r} cannot be used ({error}); the "
                              "engine's kernel is built in a private temporary folder instead", KernelCacheWarning,
                              stacklevel=4)
        try:
            path = Path(tempfile.mkdtemp(prefix="vaelib-kernel-"))
        except OSError as error:
            raise _Unusable(f"no folder to build it in: the temporary folder cannot be used ({error})") from None
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        return cls.open_private(path)

    @classmethod
    def open_private(cls, path: Path) -> _Folder:
        """``path`` (created with mode 0700 if missing), refused unless it is ours and nobody else can write to it."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # parents get the usual mode; the leaf is what counts
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        try:
            _check_owned(os.fstat(descriptor), f"the cache folder {path}")
        except BaseException:
            os.close(descriptor)
            raise
        return cls(path, descriptor)

    def close(self) -> None:
        os.close(self.fd)

    def remove_stale_partials(self) -> None:
        """Remove partial files that processes killed during a build left behind."""
        now = time.time()
        with os.scandir(self.fd) as entries:
            for entry in entries:
                if not entry.name.endswith(".partial") or entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_PARTIAL_S:
                        os.unlink(entry.name, dir_fd=self.fd)
                except FileNotFoundError:  # another process removed it first
                    pass

    def replace(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target`` atomically, first removing a folder that stands in the way."""
        try:
            os.replace(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            return
        except OSError as error:
            try:
                folder_in_the_way = stat.S_ISDIR(os.stat(target, dir_fd=self.fd, follow_symlinks=False).st_mode)
            except FileNotFoundError:
                folder_in_the_way = False
            if not folder_in_the_way:
                raise _Unusable(f"{self.path / target} cannot be replaced ({error})") from None
        self._remove_folder(target)
        os.replace(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def _remove_folder(self, name: str) -> None:
        """Remove the folder ``name`` in this folder (shutil.rmtree refuses to follow links)."""
        here = os.stat(self.path)
        if (here.st_dev, here.st_ino) != (os.fstat(self.fd).st_dev, os.fstat(self.fd).st_ino):
            raise _Unusable(f"the cache folder {self.path} was replaced while in use")
        shutil.rmtree(self.path / name)

    def write_atomically(self, name: str, data: bytes) -> None:
        """Write ``name`` under a temporary name, then rename it, so that no reader sees half of it."""
        partial = _partial_name(name)
        try:
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=self.fd)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            self.replace(partial, name)
        finally:
            _unlink_quietly(partial, self.fd)


class _Hung(_Unusable):
    """The compiler did not finish in time or stopped making progress."""


def _compiler_identity(compiler: Sequence[str]) -> str:
    """The compiler as a file (path, arguments, size, modification time, inode), without running it:
    what a remembered hang of ``--version`` is keyed by."""
    try:
        info = os.stat(compiler[0])
        facts = [*compiler, str(info.st_size), str(info.st_mtime_ns), str(info.st_ino)]
    except OSError:
        facts = list(compiler)
    return hashlib.sha256("\0".join(facts).encode()).hexdigest()[:32]


def _refuse_if_hung(folder: _Folder, marker: str, key: str) -> None:
    """Raise ``_Unusable`` when ``marker`` records that this build (``key``) hung in an earlier
    process: the next processes fall back at once instead of waiting for the same compiler again.
    A changed compiler, flags, CPU or source gives another key, hence another try."""
    try:
        descriptor = _open_checked(folder, marker, folder.path / marker)
    except _Unusable:  # none (the normal case), or not ours: then it is not trusted, and the build is tried
        return
    with os.fdopen(descriptor, "rb") as file:
        data = file.read(MAX_RECORD_BYTES + 1)
    try:
        record = json.loads(data)
        if record["key"] != key or not isinstance(record["reason"], str):
            return
    except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: [[[[... planted
        return
    raise _Unusable(f"{record['reason']} when this process's compiler was last tried, so it is not tried again "
                    f"until the compiler, its flags or the kernel's source change (remove {folder.path / marker} "
                    "to try it now)")


def _remember_hung(folder: _Folder, marker: str, key: str, reason: str) -> None:
    try:
        folder.write_atomically(marker, json.dumps({"key": key, "reason": reason, "time": time.time()}).encode())
    except (OSError, _Unusable):
        pass  # not remembered: the next process waits once more, nothing worse


def _load_cached(folder: _Folder, name: str, key: str, symbol: str) -> ctypes.CDLL:
    """The cached library ``name`` if it and its build record pass every check, loaded."""
    descriptor = _open_checked(folder, name, folder.path / name)
    try:
        record = _read_record(folder, name, key)
    except BaseException:
        os.close(descriptor)
        raise
    return _load_checked(folder, name, symbol, descriptor, record)


def _load_checked(folder: _Folder, name: str, symbol: str, descriptor: int, record: dict[str, Any]) -> ctypes.CDLL:
    """The library open as ``descriptor``, loaded if it has the recorded size and sha256 and defines ``symbol``.

    A builder passes the record it made itself, not the one on disk, which a concurrent build may have replaced."""
    path = folder.path / name
    try:
        checked = os.fstat(descriptor)
        if checked.st_size != record["size"]:
            raise _Unusable(f"the cached library {path} has {checked.st_size} bytes, {record['size']} were built "
                            "(truncated or replaced)")
        if _sha256(descriptor, checked.st_size) != record["sha256"]:
            raise _Unusable(f"the cached library {path} differs from what was built (its sha256 does not match)")
        try:
            library = ctypes.CDLL(_loadable_path(folder, name, descriptor, checked))
        except OSError as error:
            raise _Unusable(f"{path} cannot be loaded ({error})") from None
    except BaseException:
        os.close(descriptor)
        raise
    _LOADED_DESCRIPTORS.append(descriptor)
    if not hasattr(library, symbol):
        raise _Unusable(f"{path} does not define {symbol}")
    return library


def _open_checked(folder: _Folder, name: str, path: Path) -> int:
    """``name`` opened without following links; refused unless a regular file of ours that nobody else can write."""
    try:
        descriptor = os.open(name, _OPEN_FLAGS, dir_fd=folder.fd)
    except FileNotFoundError:
        raise _NotBuilt(f"{path} is not built yet") from None
    except OSError as error:
        raise _Unusable(f"{path} cannot be opened ({error.strerror})") from None
    try:
        checked = os.fstat(descriptor)
        if not stat.S_ISREG(checked.st_mode):
            raise _Unusable(f"{path} is not a regular file")
        _check_owned(checked, str(path))
        if checked.st_size > MAX_LIBRARY_BYTES:
            raise _Unusable(f"{path} has {checked.st_size} bytes, more than any build")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _read_record(folder: _Folder, name: str, key: str) -> dict[str, Any]:
    """The build record of ``name``: its key, size and sha256, from a file that passes the same checks."""
    record_name = f"{name}.json"
    try:
        descriptor = _open_checked(folder, record_name, folder.path / record_name)
    except _Unusable as problem:
        raise type(problem)(f"the build record of {folder.path / name} is unusable ({problem})") from None
    with os.fdopen(descriptor, "rb") as file:
        data = file.read(MAX_RECORD_BYTES + 1)
    try:
        record: dict[str, Any] = json.loads(data)
        valid = (len(data) <= MAX_RECORD_BYTES and record["key"] == key and type(record["size"]) is int
                 and isinstance(record["sha256"], str) and len(record["sha256"]) == 64)
    except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: [[[[... planted
        valid = False
    if not valid:
        raise _Unusable(f"the build record {folder.path / record_name} is damaged")
    return record


def _loadable_path(folder: _Folder, name: str, descriptor: int, checked: os.stat_result) -> str:
    """A name under which dlopen opens exactly the checked file (see the module's docstring)."""
    if os.path.isdir("/proc/self/fd"):
        return f"/proc/self/fd/{descriptor}"
    now = os.stat(name, dir_fd=folder.fd, follow_symlinks=False)
    if (now.st_dev, now.st_ino) != (checked.st_dev, checked.st_ino):
        raise _Unusable(f"{folder.path / name} was replaced while it was checked")
    return str(folder.path / name)


def _build(folder: _Folder, name: str, key: str, compiler: list[str], flags: list[str],
           source: Path) -> tuple[int, dict[str, Any]]:
    """Compile ``source`` into ``name`` in ``folder``, atomically, and record its size and sha256 beside it.

    Returns the library, open, and its record."""
    partial = _partial_name(name)
    command = [*compiler, *flags, "-o", str(folder.path / partial), str(source)]
    try:
        returncode, _, errors = _run(command, COMPILE_TIMEOUT_S)
        if returncode != 0:
            raise _Unusable(f"{shlex.join(compiler)} failed (exit status {returncode}): {_tail(errors)}")
        try:
            descriptor = _open_checked(folder, partial, folder.path / partial)
        except _NotBuilt:
            raise _Unusable(f"{shlex.join(compiler)} reported success but wrote no library") from None
        try:
            size = os.fstat(descriptor).st_size
            digest = _sha256(descriptor, size)
            folder.replace(partial, name)
            record = {"key": key, "size": size, "sha256": digest, "compiler": compiler, "flags": flags}
            folder.write_atomically(f"{name}.json", json.dumps(record).encode())
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor, record
    except _Stalled:
        raise _Hung(f"{shlex.join(compiler)} made no progress for {NO_PROGRESS_S:g} s") from None
    except subprocess.TimeoutExpired:
        raise _Hung(f"{shlex.join(compiler)} did not finish within {COMPILE_TIMEOUT_S:g} s") from None
    except OSError as error:
        raise _Unusable(f"building it failed ({error})") from None
    finally:
        _unlink_quietly(partial, folder.fd)


def _compiler_version(compiler: Sequence[str]) -> bytes:
    """``compiler --version``'s output (empty if it has none); raises _Unusable if the compiler hangs."""
    try:
        returncode, output, _ = _run([*compiler, "--version"], VERSION_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise _Hung(f"{shlex.join(compiler)} --version did not answer within {VERSION_TIMEOUT_S:g} s") from None
    except OSError as error:
        raise _Unusable(f"{shlex.join(compiler)} cannot be run ({error})") from None
    return output if returncode == 0 else b""


def _run(command: list[str], timeout: float) -> tuple[int, bytes, bytes]:
    """Run ``command`` with umask 077 in a session of its own: its exit status, stdout and stderr.

    On the time-out or any exception the whole session is killed (a compiler driver's children too)."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True, umask=0o077) as process:
        try:
            cpu, progressed = _session_cpu(process.pid), time.monotonic()
            while True:
                try:
                    stdout, stderr = process.communicate(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        raise
                now = _session_cpu(process.pid)
                if now is None or cpu is None or now != cpu:
                    cpu, progressed = now, time.monotonic()
                elif time.monotonic() - progressed >= NO_PROGRESS_S:
                    raise _Stalled(command, timeout)
        except BaseException:
            try:  # the group outlives the driver while any of its children live; its id is not reused before
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            raise
    return process.returncode, stdout, stderr


class _Stalled(subprocess.TimeoutExpired):
    """The compiler's processes used no CPU time for ``NO_PROGRESS_S``."""


def _session_cpu(session: int) -> int | None:
    """The CPU time (clock ticks) of the processes of ``session`` (its leader's pid), and of its
    children that have exited and were waited for; None where /proc cannot tell (not Linux)."""
    if not os.path.isdir("/proc/self"):
        return None
    total = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if len(fields) > 14 and int(fields[3]) == session:  # fields from the state on: state ppid pgrp session
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total


def _check_owned(checked: os.stat_result, what: str) -> None:
    """Refuse a file or folder that another user owns or that group or others can write to."""
    if checked.st_uid != os.geteuid():
        raise _Unsafe(f"{what} belongs to user id {checked.st_uid}, not to this user ({os.geteuid()})")
    if checked.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _Unsafe(f"{what} can be written by other users (mode {stat.S_IMODE(checked.st_mode):o})")


def _sha256(descriptor: int, size: int) -> str:
    """The sha256 of the first ``size`` bytes read through ``descriptor`` (from its start)."""
    digest, offset = hashlib.sha256(), 0
    while offset < size:
        chunk = os.pread(descriptor, min(1 << 20, size - offset), offset)
        if not chunk:
            raise _Unusable("the library became shorter while it was read")
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _partial_name(name: str) -> str:
    """A name no other process or thread uses, that stale-file cleaning recognises."""
    return f"{name}.{os.getpid()}.{secrets.token_hex(4)}.partial"


def _unlink_quietly(name: str, folder_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=folder_fd)
    except FileNotFoundError:
        pass


def _tail(output: bytes, lines: int = 5) -> str:
    """The last lines of a compiler's messages, on one line."""
    text = output.decode(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "no message"

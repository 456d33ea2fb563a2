"""The compiled kernel's cache (vaelib.engine._build) under attack and under faults.

Each test runs in a temporary HOME, temporary folder and cache folder (never the real
~/.cache/vaelib) and builds a one-function library from a tiny C source, except the end-to-end
tests, which build the engine's own kernel. An "attacker" library runs code when it is loaded
(it writes a marker file); the tests check that it never runs and that a library built by
vaelib is loaded instead, or None returned with a warning that says why.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import pytest

import vaelib
from vaelib.data import cosine_surface
from vaelib.engine import _build, _kernel
from vaelib.engine._build import KernelCacheWarning, KernelUnavailableWarning, load_library

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) to build the test libraries")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user (os.chown) needs root")
pytestmark = needs_cc

SYMBOL = "vaelib_test_answer"
FLAGS = ["-O1", "-shared", "-fPIC"]
ANSWER_SOURCE = "#ifndef ANSWER\n#define ANSWER 42\n#endif\nint vaelib_test_answer(void) { return ANSWER; }\n"
ATTACKER_SOURCE = textwrap.dedent("""\
    #include <stdio.h>
    #include <stdlib.h>
    __attribute__((constructor)) static void attack(void) {
        FILE *f = fopen(getenv("VAELIB_TEST_MARKER"), "w");
        if (f) { fputs("attacker code ran", f); fclose(f); }
    }
    int vaelib_test_answer(void) { return 666; }
    """)
OTHER_USER = 12345


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """The cache folder VAELIB_CACHE_DIR names (not made yet), with HOME and the temporary folder in tmp_path."""
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VAELIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VAELIB_TEST_MARKER", str(tmp_path / "attacker-ran"))
    for name in ("XDG_CACHE_HOME", "CC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "answer.c"
    path.write_text(ANSWER_SOURCE)
    return path


@pytest.fixture
def attacker_library(tmp_path) -> Path:
    (tmp_path / "attacker.c").write_text(ATTACKER_SOURCE)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "attacker.so"), str(tmp_path / "attacker.c")],
                   check=True)
    return tmp_path / "attacker.so"


@pytest.fixture
def fresh_kernel_load():
    """``_kernel.load`` forgets what it loaded, before and after the test."""
    _kernel.load.cache_clear()
    yield
    _kernel.load.cache_clear()


def load_quietly(source: Path, flags=FLAGS):
    """load_library, failing the test on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_library(source, flags, SYMBOL)


def answer(library) -> int:
    return getattr(library, SYMBOL)()


def the_library(folder: Path) -> Path:
    (library,) = folder.glob("*.so")
    return library


def attacker_ran(tmp_path) -> bool:
    return (tmp_path / "attacker-ran").exists()


def forge_record(library: Path) -> None:
    """What an attacker who can write the folder would do: a build record that matches the planted bytes."""
    record = Path(f"{library}.json")
    key = json.loads(record.read_text())["key"]
    data = library.read_bytes()
    record.write_text(json.dumps({"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))


def plant(library: Path, replacement: Path) -> None:
    """Put ``replacement``'s bytes in place of the built ``library``, with a matching record."""
    library.unlink()
    shutil.copy(replacement, library)
    forge_record(library)


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def private_temporary_folders(tmp_path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob("vaelib-kernel-*"))


def partial_files(tmp_path) -> list[Path]:
    return sorted(tmp_path.rglob("*.partial"))


# ---------------------------------------------------------------- the normal path

def test_the_first_use_builds_into_a_private_folder_and_later_ones_load_without_compiling(cache, source, tmp_path,
                                                                                          monkeypatch):
    log = tmp_path / "compiler-calls"
    monkeypatch.setenv("CC", str(script(tmp_path / "bin" / "cc-logged", f'echo "$@" >> {log}\nexec cc "$@"\n')))
    assert answer(load_quietly(source)) == 42
    assert answer(load_quietly(source)) == 42
    compiles = [line for line in log.read_text().splitlines() if line != "--version"]
    assert len(compiles) == 1, compiles
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    for file in (the_library(cache), Path(f"{the_library(cache)}.json")):
        assert file.stat().st_uid == os.geteuid() and stat.S_IMODE(file.stat().st_mode) & 0o077 == 0, file


def test_the_cache_key_follows_the_source_the_flags_the_compiler_and_the_cpu(cache, source, monkeypatch):
    assert answer(load_quietly(source)) == 42
    source.write_text(ANSWER_SOURCE.replace("42", "43"))
    assert answer(load_quietly(source)) == 43
    assert answer(load_quietly(source, [*FLAGS, "-DANSWER=7"])) == 7
    monkeypatch.setenv("CC", "cc -DANSWER=5")
    assert answer(load_quietly(source)) == 5
    monkeypatch.delenv("CC")
    monkeypatch.setattr(_build, "cpu_signature", lambda: "another CPU")
    assert answer(load_quietly(source)) == 43
    monkeypatch.setattr(_build, "_compiler_version", lambda compiler: b"another compiler version")
    assert answer(load_quietly(source)) == 43
    assert len(list(cache.glob("*.so"))) == 6


def test_the_cache_folder_is_vaelib_cache_dir_else_xdg_cache_home_else_home(cache, tmp_path, monkeypatch):
    assert _build.cache_dir() == cache
    monkeypatch.delenv("VAELIB_CACHE_DIR")
    assert _build.cache_dir() == tmp_path / "home" / ".cache" / "vaelib"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _build.cache_dir() == tmp_path / "xdg" / "vaelib"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid by the XDG specification: ignored
    assert _build.cache_dir() == tmp_path / "home" / ".cache" / "vaelib"


# ---------------------------------------------------------------- attacks: code planted by someone else

@needs_root
def test_a_library_owned_by_another_user_is_never_loaded(cache, source, attacker_library, tmp_path):
    load_quietly(source)
    library = the_library(cache)
    plant(library, attacker_library)
    os.chown(library, OTHER_USER, OTHER_USER)
    os.chown(f"{library}.json", OTHER_USER, OTHER_USER)
    with pytest.warns(KernelCacheWarning, match=f"belongs to user id {OTHER_USER}.*not loaded.*rebuilt"):
        assert answer(load_library(source, FLAGS, SYMBOL)) == 42
    assert not attacker_ran(tmp_path)
    assert the_library(cache).stat().st_uid == os.geteuid()


@pytest.mark.parametrize("mode", [0o666, 0o620], ids=["world-writable", "group-writable"])
def test_a_library_others_can_write_is_never_loaded(cache, source, attacker_library, tmp_path, mode):
    load_quietly(source)
    library = the_library(cache)
    plant(library, attacker_library)
    library.chmod(mode)
    with pytest.warns(KernelCacheWarning, match=f"can be written by other users \\(mode {mode:o}\\).*rebuilt"):
        assert answer(load_library(source, FLAGS, SYMBOL)) == 42
    assert not attacker_ran(tmp_path)


@pytest.mark.parametrize("folder", ["world-writable", "group-writable", "sticky like /tmp",
                                    pytest.param("owned by another user", marks=needs_root)])
def test_a_cache_folder_others_can_write_is_refused_for_a_private_temporary_one(cache, source, attacker_library,
                                                                               tmp_path, folder):
    load_quietly(source)
    plant(the_library(cache), attacker_library)  # all files stay ours: only the folder check can catch this
    if folder == "owned by another user":
        os.chown(cache, OTHER_USER, OTHER_USER)
    else:
        cache.chmod({"world-writable": 0o777, "group-writable": 0o770, "sticky like /tmp": 0o1777}[folder])
    with pytest.warns(KernelCacheWarning, match=f"the cache folder {cache} .*private temporary folder instead"):
        assert answer(load_library(source, FLAGS, SYMBOL)) == 42
    assert not attacker_ran(tmp_path)
    (private,) = private_temporary_folders(tmp_path)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700 and the_library(private).is_file()


# ---------------------------------------------------------------- faults: a damaged cache
# The damage replaces the file rather than writing into it: this test process has the first build
# mapped, and shortening a mapped file would kill it with SIGBUS (the truncation test runs elsewhere).

def random_bytes(library: Path, tmp_path: Path) -> None:
    library.unlink()
    library.write_bytes(os.urandom(4096))


def empty(library: Path, tmp_path: Path) -> None:
    library.unlink()
    library.write_bytes(b"")


def missing_symbol(library: Path, tmp_path: Path) -> None:
    library.unlink()
    (tmp_path / "other.c").write_text("int something_else(void) { return 1; }\n")
    subprocess.run(["cc", *FLAGS, "-o", str(library), str(tmp_path / "other.c")], check=True)
    forge_record(library)  # so that the library is loaded and only the symbol check can catch it


def folder_in_place(library: Path, tmp_path: Path) -> None:
    library.unlink()
    library.mkdir()
    (library / "something").write_text("x")


def link_in_place(library: Path, tmp_path: Path) -> None:
    library.unlink()
    library.symlink_to(tmp_path / "attacker.so")  # a file of ours, outside the cache
    forge_record(library)


def damaged_record(library: Path, tmp_path: Path) -> None:
    Path(f"{library}.json").write_text('{"key": ')


def missing_record(library: Path, tmp_path: Path) -> None:
    Path(f"{library}.json").unlink()


def deeply_nested_record(library: Path, tmp_path: Path) -> None:
    Path(f"{library}.json").write_text("[" * 4000)  # within the size limit; too deep for json's recursion


@pytest.mark.parametrize("damage", [random_bytes, empty, missing_symbol, folder_in_place, link_in_place,
                                    damaged_record, missing_record, deeply_nested_record])
def test_a_damaged_library_is_rebuilt_quietly(cache, source, attacker_library, tmp_path, damage):
    load_quietly(source)
    damage(the_library(cache), tmp_path)
    assert answer(load_quietly(source)) == 42
    assert not attacker_ran(tmp_path)


def load_in_a_new_process(source: Path) -> subprocess.Popen:
    """A Python process with this test's environment that loads the library and prints its answer;
    a warning from vaelib's build is an error there."""
    code = textwrap.dedent(f"""\
        import warnings
        from vaelib.engine import _build
        warnings.simplefilter("error", _build.KernelUnavailableWarning)
        warnings.simplefilter("error", _build.KernelCacheWarning)
        print(_build.load_library({str(source)!r}, {FLAGS!r}, {SYMBOL!r}).{SYMBOL}())
        """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answered(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out.strip(), err[-2000:]


def test_a_truncated_library_is_rebuilt_never_loaded(cache, source):
    assert answered(load_in_a_new_process(source))[:2] == (0, "42")
    library = the_library(cache)
    library.write_bytes(library.read_bytes()[: library.stat().st_size // 2])  # dlopen would SIGBUS on this
    returncode, out, err = answered(load_in_a_new_process(source))
    assert (returncode, out) == (0, "42"), err


# ---------------------------------------------------------------- faults: the folder, the compiler

def test_an_uncreatable_cache_folder_named_by_the_user_falls_back_to_a_private_temporary_one(source, tmp_path,
                                                                                            monkeypatch, cache):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("VAELIB_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with pytest.warns(KernelCacheWarning, match="VAELIB_CACHE_DIR=.* cannot be used"):
        assert answer(load_library(source, FLAGS, SYMBOL)) == 42
    (private,) = private_temporary_folders(tmp_path)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_an_uncreatable_default_cache_folder_falls_back_quietly(source, tmp_path, monkeypatch, cache):
    monkeypatch.delenv("VAELIB_CACHE_DIR")
    (tmp_path / "home" / ".cache").write_text("not a folder")
    assert answer(load_quietly(source)) == 42
    assert len(private_temporary_folders(tmp_path)) == 1


def fake_compiler(tmp_path: Path, then: str) -> Path:
    """A compiler that answers --version, writes something to its -o file, then does ``then``."""
    return script(tmp_path / "bin" / "fake-cc", textwrap.dedent(f"""\
        [ "$1" = --version ] && {{ echo fake-cc 1.0; exit 0; }}
        while [ "$1" != -o ]; do shift; done
        echo half a library > "$2"
        {then}
        """))


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a dead child that no one has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_compiler_that_never_returns_is_stopped_with_its_children(cache, source, tmp_path, monkeypatch):
    child = tmp_path / "child-pid"  # like the driver's cc1 or ld: a child of the compiler
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path, then=f"sleep 30 & echo $! > {child}; wait")))
    monkeypatch.setattr(_build, "COMPILE_TIMEOUT_S", 0.5)
    with pytest.warns(KernelUnavailableWarning, match="did not finish within 0.5 s.*falls back to its PyTorch path"):
        assert load_library(source, FLAGS, SYMBOL) is None
    pid, deadline = int(child.read_text()), time.monotonic() + 10
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid), "the compiler's child was left running"
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize("form", ["a wrapper with arguments", "a launcher like ccache"])
def test_cc_with_arguments_is_split_and_used(cache, source, tmp_path, monkeypatch, form):
    log = tmp_path / "calls"
    if form == "a wrapper with arguments":
        wrapper = script(tmp_path / "bin dir" / "my cc", f'echo "$@" >> {log}\nexec cc "$@"\n')
        monkeypatch.setenv("CC", f"{shlex.quote(str(wrapper))} -DANSWER=7")
    else:
        launcher = script(tmp_path / "bin dir" / "launcher", f'echo "$@" >> {log}\nexec "$@"\n')
        monkeypatch.setenv("CC", f"{shlex.quote(str(launcher))} cc -DANSWER=7")
    assert answer(load_quietly(source)) == 7
    assert "-DANSWER=7" in log.read_text()


def test_a_missing_compiler_gives_none_quietly_unless_cc_names_one(cache, source, tmp_path, monkeypatch):
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert load_quietly(source) is None
    monkeypatch.setenv("CC", "no-such-compiler -O2")
    with pytest.warns(KernelUnavailableWarning, match="CC='no-such-compiler -O2' was not found"):
        assert load_library(source, FLAGS, SYMBOL) is None


def test_a_failing_compiler_gives_none_with_its_message(cache, source, tmp_path, monkeypatch):
    source.write_text("this is not C\n")
    with pytest.warns(KernelUnavailableWarning, match="failed \\(exit status 1\\): .*error"):
        assert load_library(source, FLAGS, SYMBOL) is None
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize("interruption", ["Ctrl-C", "time-out", "compiler error"])
def test_an_interrupted_build_leaves_no_partial_file(cache, source, tmp_path, monkeypatch, interruption):
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path, then="exit 1" if interruption == "compiler error"
                                               else "sleep 30")))
    monkeypatch.setattr(_build, "COMPILE_TIMEOUT_S", 0.5 if interruption == "time-out" else 60)
    communicate = subprocess.Popen.communicate

    def interrupted_once_the_partial_file_exists(process, *args, **kwargs):
        if process.args[-1] == "--version":
            return communicate(process, *args, **kwargs)
        deadline = time.monotonic() + 20
        while not partial_files(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert partial_files(tmp_path), "the fake compiler wrote no partial file"
        raise KeyboardInterrupt

    if interruption == "Ctrl-C":
        monkeypatch.setattr(subprocess.Popen, "communicate", interrupted_once_the_partial_file_exists)
        with pytest.raises(KeyboardInterrupt):
            load_library(source, FLAGS, SYMBOL)
    else:
        with pytest.warns(KernelUnavailableWarning):
            assert load_library(source, FLAGS, SYMBOL) is None
    assert partial_files(tmp_path) == []


def test_stale_partial_files_of_killed_processes_are_removed(cache, source):
    load_quietly(source)
    stale, recent = cache / "kernel-x.so.999.abcd.partial", cache / "kernel-x.so.998.abcd.partial"
    stale.write_bytes(b"left by a killed build")
    recent.write_bytes(b"a build in progress")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert answer(load_quietly(source)) == 42
    assert not stale.exists() and recent.exists()


def test_concurrent_builds_do_not_clash(cache, source, tmp_path):
    results = [answered(process) for process in [load_in_a_new_process(source) for _ in range(4)]]
    assert [result[:2] for result in results] == [(0, "42")] * 4, [result[2] for result in results]
    assert partial_files(tmp_path) == []
    assert answer(load_quietly(source)) == 42


# ---------------------------------------------------------------- end to end: the engine still trains

def train_two_runs():
    x = cosine_surface(n=64, seed=0)
    histories = vaelib.fit_batched([vaelib.VAE(3), vaelib.VAE(3)], [vaelib.ELBO(), vaelib.ELBO()], x, seeds=[0, 1],
                                   epochs=1, batch_size=32, progress=False, backend="auto")
    assert len(histories) == 2 and all(len(h["loss"]) == 1 and math.isfinite(h["loss"][0]) for h in histories)


def plant_random_bytes_as_the_kernel(cache: Path) -> Path:
    """Random bytes where the engine's kernel, built with the current $CC, would be cached."""
    compiler = _build.compiler_command()
    library = cache / f"kernel-{_build.cache_key(_kernel.SOURCE.read_bytes(), compiler, _kernel.FLAGS)}.so"
    cache.mkdir(mode=0o700)
    library.write_bytes(os.urandom(4096))
    return library


def test_fit_batched_trains_with_a_warning_when_the_cached_kernel_is_damaged_and_cannot_be_rebuilt(
        cache, tmp_path, monkeypatch, fresh_kernel_load):
    broken = tmp_path / "compiler-broken"
    monkeypatch.setenv("CC", str(script(tmp_path / "bin" / "cc", textwrap.dedent(f"""\
        [ "$1" = --version ] && exec cc --version
        [ -e {broken} ] && {{ echo "simulated compiler failure" >&2; exit 1; }}
        exec cc "$@"
        """))))
    plant_random_bytes_as_the_kernel(cache)
    broken.touch()
    with pytest.warns(KernelUnavailableWarning, match="simulated compiler failure.*falls back to its PyTorch path"):
        train_two_runs()
    assert _kernel.load() is None


def test_fit_batched_rebuilds_a_damaged_cached_kernel_quietly(cache, fresh_kernel_load):
    library = plant_random_bytes_as_the_kernel(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelUnavailableWarning)
        warnings.simplefilter("error", KernelCacheWarning)
        train_two_runs()
    assert _kernel.load() is not None and library.stat().st_size != 4096


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU times from /proc")
def test_a_hung_compiler_is_stopped_when_it_makes_no_progress_and_remembered(cache, source, tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path, then="sleep 30")))  # uses no CPU: waits on nothing
    monkeypatch.setattr(_build, "NO_PROGRESS_S", 0.6)
    started = time.monotonic()
    with pytest.warns(KernelUnavailableWarning, match="made no progress for 0.6 s"):
        assert load_library(source, FLAGS, SYMBOL) is None
    assert time.monotonic() - started < 20
    started = time.monotonic()  # the next process: no compiler run at all
    with pytest.warns(KernelUnavailableWarning, match="made no progress for 0.6 s when this process's compiler was "
                                                      "last tried, so it is not tried again until"):
        assert load_library(source, FLAGS, SYMBOL) is None
    assert time.monotonic() - started < 2
    monkeypatch.setenv("CC", str(fake_compiler(tmp_path, then="exit 3")))  # another compiler: tried again
    with pytest.warns(KernelUnavailableWarning, match="failed"):
        assert load_library(source, FLAGS, SYMBOL) is None
    assert partial_files(tmp_path) == []

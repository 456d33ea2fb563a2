"""The client side of a sweep: the runs not done yet go to a Dask cluster in chunks, each finished
chunk is written to ``OUT/chunks/`` at once, and the table is assembled from every run's result.

``run_sweep`` starts a ``local_cluster`` (or uses the cluster at ``scheduler``), reads the chunk
files already in ``OUT`` (``done_runs``: a file whose content does not match its name or its runs'
specs is ignored), trains the rest (``vaelib.sweep.worker.train_chunk`` on the workers) and writes
the result files (``vaelib.sweep.results``). A chunk that fails is reported after the others have
finished and been saved; running the sweep again retries it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vaelib import _checks, _io, threads
from vaelib.sweep.results import RESULT_FILES, SweepResult, json_text, summarise, table_row, write_results
from vaelib.sweep.spec import FORMAT, Run, Sweep, load_spec, spec_hash
from vaelib.sweep.worker import train_chunk

# Default chunking: about this many chunks per worker thread (for balance), at most this many runs each.
CHUNKS_PER_THREAD, MAX_DEFAULT_CHUNK = 4, 64


class SweepIncomplete(RuntimeError):
    """Some chunks failed; the others were saved, and running the sweep again retries the failed ones."""


def run_sweep(spec: str | os.PathLike[str] | Sweep, out: str | os.PathLike[str], *, scheduler: str | None = None,
              workers: int | None = None, chunk_size: int | None = None, progress: bool = True,
              on_chunk: Callable[[Path], object] | None = None, keep_models: bool = False) -> SweepResult:
    """Run the sweep ``spec`` (a sweep file, or a ``Sweep`` from ``load_spec``) into the folder ``out``.

    Runs already done in ``out`` are skipped; the others are trained in chunks of ``chunk_size`` runs
    (default: about four chunks per worker thread, at most 64 runs each) on a new ``LocalCluster`` of
    ``workers`` processes (default: one per core), or on the existing cluster at ``scheduler``. Each
    finished chunk is written to ``out/chunks/`` at once, then ``on_chunk(path)`` is called (progress
    reports, tests). Raises ``SpecError`` for a bad spec (before anything runs), ``SweepIncomplete``
    when chunks failed (the rest is saved). The files and what they promise: the book's section
    "The sweep file format" (label ``sec-sweep-format``).

    ``keep_models``: each finished run's weights and history are also saved as a checkpoint,
    ``out/models/RUN.ckpt`` (RUN: the table's ``run`` column), written atomically before its chunk
    file, so that ``vaelib.load_model`` rebuilds it; a done run whose checkpoint is missing is trained
    again (its results are the same: a run trains the same in any chunk).
    """
    started = time.perf_counter()
    sweep = spec if isinstance(spec, Sweep) else load_spec(spec)
    if scheduler is not None and workers is not None:
        raise ValueError("workers sizes the local cluster; with a scheduler address the cluster's own workers "
                         "run the sweep: give one or the other")
    if workers is not None:
        _checks.positive_int("workers", workers)
    if chunk_size is not None:
        _checks.positive_int("chunk_size", chunk_size)
    out = _prepare_output(out)
    chunk_dir = out / "chunks"
    done, ignored = done_runs(chunk_dir)
    model_dir = out / "models"
    if keep_models:
        model_dir.mkdir(exist_ok=True)
    pending = [run for run in sweep.runs
               if run.key not in done or keep_models and done[run.key]["status"] == "ok"
               and not model_path(model_dir, run).exists()]
    chunks_trained = 0
    if pending:
        with _dask_client(scheduler, workers) as client:
            size = chunk_size or _default_chunk_size(len(pending), sum(client.nthreads().values()) or 1)
            chunks = sweep.chunks(pending, size)
            # closing(): an error in on_chunk cancels the other chunks while the client is still open
            with contextlib.closing(_train_on_cluster(client, sweep, chunks, chunk_dir, progress,
                                                      model_dir if keep_models else None)) as finished:
                for path, results in finished:
                    done.update((result["key"], result) for result in results)
                    chunks_trained += 1
                    if on_chunk is not None:
                        on_chunk(path)
    rows = [table_row(run, done[run.key]) for run in sweep.runs]
    summary = summarise(rows, sweep.axes)
    paths = write_results(out, rows, summary)
    return SweepResult(sweep.axes, rows, summary, paths, len(pending), chunks_trained,
                       len(sweep.runs) - len(pending), time.perf_counter() - started, ignored)


def model_path(model_dir: Path, run: Run) -> Path:
    """Where ``keep_models`` saves a run's checkpoint: named as the table's ``run`` column."""
    return model_dir / f"{run.key[:12]}.ckpt"


def _save_models(model_dir: Path, chunk: list[Run], results: list[dict[str, Any]]) -> None:
    """Each finished run's weights as a checkpoint (atomic: vaelib.checkpoint.save_checkpoint),
    taken out of its result, which the chunk file then records without them."""
    from vaelib.checkpoint import save_checkpoint
    from vaelib.sweep.spec import build_run

    for run, result in zip(chunk, results):
        weights, history = result.pop("weights", None), result.pop("history", None)
        if weights is None:
            continue
        model, _ = build_run(run.spec)
        model.load_state_dict(weights)
        save_checkpoint(model_path(model_dir, run), model, history=history)


def _prepare_output(out: str | os.PathLike[str]) -> Path:
    """Create ``out/chunks`` if needed and check that the result files can be written, before any training."""
    if not isinstance(out, (str, os.PathLike)) or os.fspath(out) == "":
        raise ValueError(f"out must be a folder path (str or os.PathLike[str]) such as 'results/sweep', got {out!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out {str(out)!r} exists and is not a folder; give a folder path")
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        _io.check_writable(out / name, "the sweep's result file", probe=name == RESULT_FILES[0])
    return out


def _default_chunk_size(runs: int, worker_threads: int) -> int:
    return max(1, min(MAX_DEFAULT_CHUNK, math.ceil(runs / (CHUNKS_PER_THREAD * worker_threads))))


@contextlib.contextmanager
def local_cluster(workers: int | None = None) -> Iterator[Any]:
    """The ``distributed.LocalCluster`` that ``run_sweep`` starts when given no scheduler: ``workers``
    processes (default: one per core) of one thread each, ``VAELIB_THREADS=1`` in their environment,
    no dashboard, the cluster's own logs silenced (a failing chunk reaches the sweep as that chunk's
    error; what workers log while a cluster closes, such as a missed heartbeat after a Ctrl-C on a
    busy machine, is noise to the user), scratch space in a private temporary folder. Closed on
    exit. Hold one open to run several sweeps on it: ``run_sweep(..., scheduler=cluster.scheduler_address)``."""
    from distributed import LocalCluster

    if workers is not None:
        _checks.positive_int("workers", workers)
    with tempfile.TemporaryDirectory(prefix="vaelib-sweep-") as scratch:
        with _workers_ignore_ctrl_c():
            cluster = LocalCluster(n_workers=workers or threads.cores(), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.CRITICAL, local_directory=scratch,
                                   env={threads.ENVIRONMENT_VARIABLE: "1"},
                                   # the scheduler's HTTP routes (health, metrics) on a free local port, not 8787
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        with cluster:
            yield cluster


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """SIGINT ignored while the worker processes start, so that they inherit "ignore" (a handler
    would not survive their exec; an ignored signal does). A terminal's Ctrl-C reaches every process
    of its foreground group: the workers would each print a traceback; this process alone stops,
    says so in one line, and closes the cluster, which ends them. A Ctrl-C during these seconds is
    lost (press it again)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new ``local_cluster(workers)``."""
    from distributed import Client

    if scheduler is None:
        with local_cluster(workers) as cluster, Client(cluster) as client:
            yield client
        return
    probe_scheduler(scheduler)
    try:
        client = Client(scheduler, timeout=f"{HANDSHAKE_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError, MemoryError) as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); check the address "
                              "(tcp://HOST:PORT) and that the scheduler runs") from None
    with client:
        yield client


# A Dask scheduler greets a new connection at once; one that has said nothing after this long is none.
HANDSHAKE_TIMEOUT_S = 10.0
# Its greeting (the comm handshake: compression, Python and pickle versions) is a few hundred bytes.
_MAX_GREETING_BYTES = 2**16
_OTHER_SCHEMES = ("tls", "ucx", "ws", "wss", "inproc")


def probe_scheduler(address: str, timeout: float | None = None) -> None:
    """Check that a Dask scheduler listens at ``address`` before a client connects to it.

    A ``tcp://`` address (or a bare HOST:PORT) is opened and its greeting read within ``timeout``
    seconds in all (default ``HANDSHAKE_TIMEOUT_S``): a Dask server sends a small framed handshake as soon as it accepts. A service
    that accepts and says nothing (a client would wait for ever), or that says anything else (an
    HTTP server: a client would read its first bytes as a frame length and try to allocate
    exabytes), is refused with a ``ConnectionError`` naming the address. Other schemes (tls://,
    ucx://, inproc://) are left to ``distributed.Client``."""
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"scheduler must be an address such as 'tcp://HOST:8786', got {address!r}")
    scheme, _, location = address.rpartition("://")
    if scheme not in ("", "tcp"):
        if scheme not in _OTHER_SCHEMES:
            raise ValueError(f"scheduler address {address!r} is not a Dask address: it starts with {scheme}://, "
                             "a Dask scheduler's starts with tcp:// (or tls://, ucx://, ws://, wss://)")
        return
    host, separator, port_text = location.rpartition(":")
    host = host.strip("[]")
    if not separator or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"scheduler address {address!r} is not tcp://HOST:PORT (a port in 1-65535); "
                         "give the address the scheduler printed, such as tcp://10.0.0.5:8786")
    timeout = HANDSHAKE_TIMEOUT_S if timeout is None else timeout
    deadline = time.monotonic() + timeout
    failed = f"no Dask scheduler answers at {address!r}"
    advice = "check the address (tcp://HOST:PORT, the scheduler's port, not its dashboard's) and that it runs"
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout) as connection:
            size_bytes = _receive(connection, 8, deadline)
            (size,) = struct.unpack("<Q", size_bytes)
            if not 16 <= size <= _MAX_GREETING_BYTES:
                raise _NotDask(f"it answered {_shown(size_bytes)}, not a Dask handshake")
            greeting = _receive(connection, size, deadline)
    except _NotDask as exc:
        raise ConnectionError(f"{failed}: {exc}; {advice}") from None
    except TimeoutError:
        raise ConnectionError(f"{failed}: it said nothing within {timeout:g} s; {advice}") from None
    except OSError as exc:
        raise ConnectionError(f"{failed} ({exc.strerror or exc}); {advice}") from None
    (frames,) = struct.unpack_from("<Q", greeting)
    lengths = struct.unpack_from(f"<{frames}Q", greeting, 8) if 0 < frames <= 64 and 8 * (frames + 1) <= size else ()
    if not lengths or 8 * (frames + 1) + sum(lengths) > size or b"python" not in greeting:
        raise ConnectionError(f"{failed}: it answered {_shown(size_bytes + greeting)}, not a Dask handshake; {advice}")


class _NotDask(Exception):
    pass


def _receive(connection: socket.socket, count: int, deadline: float) -> bytes:
    """Exactly ``count`` bytes, all by ``deadline`` (TimeoutError), or _NotDask if the peer hangs up."""
    data = b""
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        connection.settimeout(remaining)
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise _NotDask(f"it closed the connection after {len(data)} bytes")
        data += chunk
    return data


def _shown(data: bytes) -> str:
    return repr(data[:24]) + ("..." if len(data) > 24 else "")


def _train_on_cluster(client: Any, sweep: Sweep, chunks: list[list[Run]], chunk_dir: Path, progress: bool,
                      model_dir: Path | None = None) -> Generator[tuple[Path, list[dict[str, Any]]], None, None]:
    """Submit every chunk, then yield (file, results) for each as it finishes, after writing it (and,
    given a ``model_dir``, each run's checkpoint before it)."""
    from distributed import as_completed

    used = {spec_hash(run.spec["data"]) for chunk in chunks for run in chunk}
    data = {key: client.scatter(x.numpy(), broadcast=True) for key, x in sweep.data.items() if key in used}
    futures = {}
    for chunk in chunks:
        name = spec_hash([run.key for run in chunk])
        payload = [{"key": run.key, "spec": run.spec} for run in chunk]
        future = client.submit(train_chunk, data[spec_hash(chunk[0].spec["data"])], payload, model_dir is not None,
                               key=f"vaelib-sweep-chunk-{name}", pure=False)
        futures[future] = (name, chunk)
    failures = []
    bar = tqdm(total=len(chunks), unit="chunk", disable=not progress,
               desc=f"sweep: {sum(map(len, chunks))} runs in {len(chunks)} chunks")
    try:
        for future in as_completed(futures):
            name, chunk = futures[future]
            try:
                results = future.result()
            except Exception as exc:  # a chunk's error is reported with the others', after the rest is saved
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if model_dir is not None:
                _save_models(model_dir, chunk, results)
            path = chunk_dir / f"{name}.json"
            entries = [{"key": run.key, "spec": run.spec, "result": result} for run, result in zip(chunk, results)]
            content = {"format": FORMAT, "chunk": name, "runs": entries}
            _io.write_file(path, json_text({**content, "digest": chunk_digest(content)}), what="the chunk")
            bar.update(1)
            yield path, results
    finally:
        bar.close()
        client.cancel(list(futures))
    if failures:
        raise SweepIncomplete(f"{len(failures)} of {len(chunks)} chunks failed (the others are saved; run the "
                              f"sweep again to retry): {failures[0]}")


def done_runs(chunk_dir: Path) -> tuple[dict[str, dict[str, Any]], list[Path]]:
    """Results in the chunk files that verify, by run key; and the files ignored.

    A chunk file verifies when it is a regular file read within ``vaelib._io.read_document``'s size
    and nesting limits, its name is the hash of its runs' keys, each key is the hash of its run's
    spec (which holds the data's spec, a data file by its SHA-256), and its ``digest`` is the
    SHA-256 of everything else in it, results included (``chunk_digest``). An edited value, a
    truncated or damaged file, or one from before digests were stored, does not verify: its runs
    are trained again. The digest detects edits and damage; it is no signature (whoever can write
    the folder can recompute it)."""
    done: dict[str, dict[str, Any]] = {}
    ignored: list[Path] = []
    for path in sorted(chunk_dir.glob("*.json")):
        try:
            content = _io.read_document(path, "a sweep's chunk file", kind="json")
            entries = content["runs"]
            valid = (content["format"] == FORMAT and path.stem == content["chunk"]
                     == spec_hash([entry["key"] for entry in entries])
                     and all(spec_hash(entry["spec"]) == entry["key"] == entry["result"]["key"] for entry in entries)
                     and content["digest"] == chunk_digest({k: v for k, v in content.items() if k != "digest"}))
        except (OSError, ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            ignored.append(path)
            continue
        done.update((entry["key"], entry["result"]) for entry in entries)
    return done, ignored


def chunk_digest(content: dict[str, Any]) -> str:
    """The SHA-256 of a chunk file's content (its format, name, and every run's key, spec and
    result), in canonical JSON: what ``done_runs`` checks before it trusts a stored result."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()

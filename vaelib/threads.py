"""How many CPU threads vaelib's training and estimators use, chosen by vaelib itself.

Why: the book's networks are tiny (hundreds to a few hundred thousand weights). PyTorch's default
of one thread per core makes every small matrix product wait for its helper threads, which spin
while they wait; on a busy 2-core machine a VAE epoch measured 11 s of CPU with two threads
against 0.57 s with one. So ``fit``, ``fit_batched`` and the estimators run PyTorch on
``torch_threads()`` threads (1 unless told otherwise) and give the caller's setting back when
they return, whether the caller is ``tasks.py``, a test or a reader's Jupyter kernel.

The batched engine's C kernel is different: it trains whole runs on threads of its own that never
wait for each other, so it uses ``kernel_threads(runs)``, up to one per core.

Override, in this order of precedence: ``vaelib.threads.set_threads(n)`` (``None`` to undo), or
the environment variable ``VAELIB_THREADS`` (a positive integer). Either sets both counts.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

ENVIRONMENT_VARIABLE = "VAELIB_THREADS"
_chosen: int | None = None


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in vaelib's training and estimators (``None``: vaelib's choice)."""
    global _chosen
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    _chosen = threads


def _override() -> int | None:
    if _chosen is not None:
        return _chosen
    text = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"the environment variable {ENVIRONMENT_VARIABLE} must be a positive integer, got "
                         f"{text!r}; unset it to let vaelib choose")
    return int(text)


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def torch_threads() -> int:
    """Threads for PyTorch's own operations on tiny networks: 1, unless overridden."""
    return _override() or 1


def kernel_threads(runs: int) -> int:
    """Threads for the engine's C kernel: one per core, at most one per run, unless overridden."""
    return _override() or max(1, min(cores(), runs))


@contextlib.contextmanager
def limited(threads: int | None = None) -> Iterator[int]:
    """Run the block with PyTorch on ``threads`` (default ``torch_threads()``) intra-op threads,
    then restore the caller's count. Yields the count in use."""
    threads = torch_threads() if threads is None else threads
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)

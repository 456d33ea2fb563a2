"""Work and memory estimated before the work starts, and refused when they cannot finish or fit.

A request (a model's size, a number of runs, k importance samples, a file's header) implies an
amount of memory and of computation. vaelib estimates both before it allocates or starts, and
refuses with ``TooLarge``, a ``ValueError`` whose one-line message gives the estimate, the limit and
what to change:

* **memory**, in bytes, against ``available_memory()``: what this process can still allocate
  (Linux's MemAvailable, within the cgroup's limit; no limit where neither can be read);
* **work**, in multiply-adds, against ``WORK_LIMIT`` (1e16: a day at 1e11 multiply-adds per
  second, more than a CPU core does; a request above it would not finish in a day on any machine
  this library targets).

The estimates are upper estimates of the order of magnitude (a model's parameters counted on
PyTorch's meta device, without allocating them; its activations from its layers' widths), made to
tell "a few minutes" from "never", not to predict a run time. Where an estimate may be wrong in
your favour (swap, a faster machine), proceed anyway with ``with vaelib.limits.allow_large():`` in
Python or ``--allow-large`` on the command line: checks that protect a file's consistency (a
header against the file's size) are not lifted by it.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

WORK_LIMIT = 1e16  # multiply-adds: a day at 1e11 per second
BYTES_PER_PARAMETER = 4 * 5  # float32 weights, gradients, Adam's two moments, one copy in flight
_LIFTED: contextvars.ContextVar[bool] = contextvars.ContextVar("vaelib_limits_lifted", default=False)
PROCEED = "to proceed anyway: --allow-large, or in Python `with vaelib.limits.allow_large():`"


class TooLarge(ValueError):
    """A request whose estimated memory or work exceeds the limit: ``estimate`` and ``limit`` in
    ``unit`` ("bytes" or "multiply-adds"); the message says both and what to change."""

    def __init__(self, message: str, estimate: float, limit: float, unit: str):
        super().__init__(message)
        self.estimate, self.limit, self.unit = estimate, limit, unit


@contextlib.contextmanager
def allow_large() -> Iterator[None]:
    """Within the block, estimates above a limit are not refused (see the module's docstring)."""
    token = _LIFTED.set(True)
    try:
        yield
    finally:
        _LIFTED.reset(token)


def lifted() -> bool:
    """Whether the limits are lifted here (inside ``allow_large()``)."""
    return _LIFTED.get()


def available_memory() -> int | None:
    """Bytes this process can still allocate: Linux's MemAvailable, within a cgroup's limit; None
    where neither can be read (then nothing is refused for memory)."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            line = next(line for line in f if line.startswith("MemAvailable:"))
        available = int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available if available is not None else 2**63, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def check_memory(needed: float, what: str, advice: str, *, liftable: bool = True) -> None:
    """Refuse (``TooLarge``) when ``what`` needs more than ``available_memory()`` bytes; ``advice``
    says what to change. ``liftable=False``: refused even inside ``allow_large()``."""
    available = available_memory()
    if available is None or needed <= available or (liftable and lifted()):
        return
    proceed = f"; {PROCEED}" if liftable else ""
    raise TooLarge(f"{what} needs about {format_bytes(needed)} of memory, more than the {format_bytes(available)} "
                   f"this machine has available; {advice}{proceed}", needed, available, "bytes")


def check_work(work: float, what: str, advice: str) -> None:
    """Refuse (``TooLarge``) when ``what`` takes more than ``WORK_LIMIT`` multiply-adds."""
    if work <= WORK_LIMIT or lifted():
        return
    raise TooLarge(f"{what} takes about {work:.2g} multiply-adds ({format_duration(work / 1e11)} at 1e11 a second), "
                   f"more than the limit of {WORK_LIMIT:.0e} (a day); {advice}; {PROCEED}", work, WORK_LIMIT,
                   "multiply-adds")


def check_count(count: int, limit: int, what: str, advice: str) -> None:
    """Refuse (``TooLarge``) ``count`` items of ``what`` (runs of a grid, say) above ``limit``,
    before any of them is made."""
    if count <= limit or lifted():
        return
    raise TooLarge(f"{what} has {count:,}, more than the limit of {limit:,}; {advice}; {PROCEED}", count, limit,
                   what)


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}" if n < 1e15 else f"{n:.2e} bytes"
    return f"{int(n)} bytes"


def format_duration(seconds: float) -> str:
    for unit, size in (("years", 3.15e7), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}" if seconds < 3.15e12 else f"{seconds / 3.15e7:.2g} years"
    return f"{seconds:.2g} seconds"


# ----------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelSize:
    """A model's ``parameters`` (numbers it trains) and ``widths`` (the values one row makes in a
    forward pass: the sum of its linear and convolutional layers' outputs per row, a lower bound)."""

    parameters: int
    widths: int

    @property
    def forward_work(self) -> int:
        """Multiply-adds of one row's forward pass: about one per parameter."""
        return self.parameters


def model_size(build: Callable[[], nn.Module]) -> ModelSize | None:
    """The size of the model ``build()`` makes, counted on PyTorch's meta device: nothing is
    allocated and no random number is drawn. None when the model cannot be built there (its
    constructor reads values); the constructor's own errors propagate."""
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            model = build()
    except (RuntimeError, NotImplementedError):
        return None
    if not isinstance(model, nn.Module):
        return None
    parameters = sum(p.numel() for p in model.parameters())
    widths = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            widths += module.out_features
        elif isinstance(module, nn.modules.conv._ConvNd):
            widths += module.out_channels
    return ModelSize(parameters, widths)


def check_model_memory(size: ModelSize | None, what: str, advice: str, *, copies: int = 1) -> None:
    """Refuse a model (``copies`` of it) whose weights alone cannot fit: 4 bytes a parameter."""
    if size is not None:
        check_memory(4 * size.parameters * copies, what, advice)


def check_training(size: ModelSize | None, *, runs: int, rows: int, batch_size: int, epochs: int, what: str,
                   advice: str) -> None:
    """Refuse training ``runs`` models of ``size`` on ``rows`` points when its memory (weights,
    gradients, optimiser state, a minibatch's activations, each run's data order) cannot fit or its
    work (about three multiply-adds per parameter, row and epoch: forward and backward) exceeds the
    limit."""
    if size is None:
        return
    batch = min(batch_size, rows)
    memory = runs * (BYTES_PER_PARAMETER * size.parameters + 4 * 3 * batch * size.widths + 8 * rows)
    check_memory(memory, what, advice)
    check_work(3.0 * runs * epochs * rows * size.forward_work, what, advice)


def element_count(shape: tuple[int, ...]) -> int:
    """The number of elements of ``shape``, in Python integers (no overflow)."""
    return math.prod(int(s) for s in shape)

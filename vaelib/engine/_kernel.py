"""The C kernel (kernel.c): one epoch of every run, each run's work kept in cache.

It is compiled on first use with the system's C compiler (``$CC``, else ``cc``), with
``-march=native``, and cached on disk under a name that hashes the source, the compiler, the flags
and the CPU, so that a later process loads it in milliseconds. Without a working compiler the
engine falls back to its PyTorch implementation.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from vaelib.engine._stacked import COLUMNS, Net, Runs

SOURCE = Path(__file__).with_name("kernel.c")
ACTIVATION_CODES = {"ptanh": 1, "tanh": 2, "relu": 3, "sigmoid": 4, "elu": 5, "identity": 6}
OPTIMIZER_CODES = {"adam": 0, "sgd": 1}
LIMITS = {"layers": 64, "pieces": 256}  # kernel.c's MAX_LAYERS and MAX_PIECES


def problem(net: Net, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why the kernel cannot train these runs, or None if it can."""
    if device.type != "cpu":
        return f"it runs on the CPU, not on {device}"
    if dtype != torch.float32:
        return f"it computes in float32, the models are {dtype}"
    if net.bernoulli:
        return "it implements the Gaussian decoder only"
    needs = {"layers": sum(layer.kind == "linear" for layer in (*net.encoder, *net.decoder)),
             "pieces": len(net.shapes)}
    if any(needs[name] > limit for name, limit in LIMITS.items()):
        return f"it handles at most {LIMITS} layers and parameter tensors, these runs need {needs}"
    if load() is None:
        return "no C compiler could build it (set CC to one)"
    return None


@functools.cache
def load():
    """The kernel's entry point (a ctypes function), built on first use; None if it cannot be built."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None or not SOURCE.is_file():
        return None
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), compiler.encode(), " ".join(FLAGS).encode(),
                                     _cpu_signature().encode()])).hexdigest()[:16]
    library = cache_dir() / f"engine-kernel-{key}.so"
    if not (library.is_file() or _build(compiler, library)):
        return None
    function = ctypes.CDLL(str(library)).vaelib_train_epoch
    i64, pointer = ctypes.c_int64, ctypes.c_void_p
    function.argtypes = ([i64] * 5 + [pointer, i64, i64, pointer, pointer, i64] + [pointer] * 9
                         + [i64, ctypes.c_float] + [pointer] * 3 + [i64])
    function.restype = ctypes.c_int
    return function


# -fno-trapping-math and -fno-math-errno let the compiler vectorise branch-free selections and
# divisions; neither changes a result.
FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-pthread", "-shared", "-fPIC"]


def _build(compiler: str, library: Path) -> bool:
    """Compile the kernel into ``library``, atomically, so that concurrent builds cannot clash."""
    library.parent.mkdir(parents=True, exist_ok=True)
    partial = library.with_name(f"{library.name}.{os.getpid()}.partial")
    done = subprocess.run([compiler, *FLAGS, "-o", str(partial), str(SOURCE)], capture_output=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        return False
    os.replace(partial, library)
    return True


def cache_dir() -> Path:
    """Where built kernels are kept: $VAELIB_CACHE_DIR, else ~/.cache/vaelib, else the temp folder."""
    if os.environ.get("VAELIB_CACHE_DIR"):
        return Path(os.environ["VAELIB_CACHE_DIR"])
    home_cache = Path.home() / ".cache"
    writable = os.access(home_cache if home_cache.is_dir() else Path.home(), os.W_OK)
    return (home_cache if writable else Path(tempfile.gettempdir())) / "vaelib"


def _cpu_signature() -> str:
    """Code built with -march=native runs only on CPUs with the same instruction sets."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


class EpochCall:
    """Everything the kernel needs that does not change from epoch to epoch, prepared once."""

    def __init__(self, net: Net, runs: Runs, n_runs: int, sizes: list[int], threads: int):
        self.function = load()
        self.n_runs, self.sizes, self.threads = n_runs, sizes, threads
        self.optimizer, self.lr, self.n_pieces = OPTIMIZER_CODES[net.optimizer], net.lr, len(net.shapes)
        self.batch_sizes = torch.tensor(sizes, dtype=torch.int64)
        self.layers, self.constants = _layer_spec(net)
        self.encoder_layers = sum(layer.kind == "linear" for layer in net.encoder)
        self.numel = torch.tensor([math.prod(shape) for shape in net.shapes], dtype=torch.int64)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), (self.numel * n_runs).cumsum(0)[:-1]])
        self.settings = _run_settings(net, runs)

    def __call__(self, state: list[torch.Tensor], x: torch.Tensor, order: torch.Tensor, eps: torch.Tensor,
                 step_size: torch.Tensor, bias_correction2_sqrt: torch.Tensor) -> torch.Tensor:
        """One epoch of every run: updates ``state`` in place, returns the terms (steps, runs, 6)."""
        x, order, eps = x.contiguous(), order.contiguous(), eps.contiguous()
        step_size, bias_correction2_sqrt = step_size.contiguous(), bias_correction2_sqrt.contiguous()
        terms = torch.empty(len(self.sizes), self.n_runs, len(COLUMNS))
        status = self.function(
            self.n_runs, x.shape[0], x.shape[1], eps.shape[2], len(self.sizes), self.batch_sizes.data_ptr(),
            len(self.layers), self.encoder_layers, self.layers.data_ptr(), self.constants.data_ptr(),
            self.n_pieces, self.offsets.data_ptr(), self.numel.data_ptr(), x.data_ptr(), order.data_ptr(),
            eps.data_ptr(), *(t.data_ptr() for t in state), self.settings.data_ptr(), self.optimizer, self.lr,
            step_size.data_ptr(), bias_correction2_sqrt.data_ptr(), terms.data_ptr(), self.threads)
        if status != 0:
            raise MemoryError(f"the engine's C kernel stopped with status {status} (2: out of memory)")
        return terms


def _layer_spec(net: Net) -> tuple[torch.Tensor, torch.Tensor]:
    """Per linear layer: in, out, the activation after it, its pieces (weight, bias, a, b); ELU's alpha."""
    spec, constants = [], []
    for stack in (net.encoder, net.decoder):
        for i, layer in enumerate(stack):
            if layer.kind != "linear":
                continue
            after = stack[i + 1] if i + 1 < len(stack) else None
            a, b = after.pieces if after is not None and after.kind == "ptanh" else (-1, -1)
            activation = ACTIVATION_CODES[after.kind] if after is not None else 0
            spec.append([*net.shapes[layer.pieces[0]], activation, *layer.pieces, a, b, 0])
            constants.append(after.elu_alpha if after is not None else 1.0)
    return torch.tensor(spec, dtype=torch.int64), torch.tensor(constants, dtype=torch.float32)


def _run_settings(net: Net, runs: Runs) -> torch.Tensor:
    """Per run: beta, delta, KL summed over the batch, alpha's gradient sign, and whether its alpha
    rule reflects a negative step ("reverse") or projects onto alpha >= 0 ("project", "ascent"),
    as vaelib.objectives.constrain_alpha does."""
    def uses(*rules):
        masks = [runs.rule_masks[net.rules.index(rule)] for rule in rules if rule in net.rules]
        return torch.stack(masks).any(0) if masks else torch.zeros_like(runs.kl_summed)

    columns = [runs.beta, runs.delta, runs.kl_summed, runs.gradient_sign, uses("reverse"), uses("project", "ascent")]
    return torch.stack([c.float().cpu() for c in columns], dim=1).contiguous()

"""The C kernel (kernel.c): one epoch of every run, each run's work kept in cache.

It is compiled on first use with the system's C compiler (``$CC``, else ``cc``), with
``-march=native``, and cached on disk under a name that hashes the source, the compiler, the flags
and the CPU, so that a later process loads it in milliseconds. Without a working compiler the
engine falls back to its generic PyTorch path.

The kernel implements the VAE family's one formula (``vaelib.objectives``, module docstring) for
the settings in ``_layout.SETTINGS``; ``kernel_net`` says when a set of runs is outside what it covers, and why.
"""
from __future__ import annotations

import ctypes
import functools
import math
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from vaelib import threads
from vaelib.engine import _build, _layout
from vaelib.engine._layout import (ACTIVATION_CODES, ADAM_BETAS, DECODER_CODES, LAYER_FIELDS, LIMITS, OPTIMIZER_CODES,
                                   Net, Unsupported)
from vaelib.engine._trainer import EpochTerms
from vaelib.models.vae import VAE
from vaelib.objectives import ConstrainedObjective, Objective, VAEObjective, objective_kind

SOURCE = Path(__file__).with_name("kernel.c")


def kernel_net(models: list[nn.Module], objectives: list[Objective], optimizer: str,
               device: torch.device) -> Net | Unsupported:
    """The layers the kernel would train, or ``Unsupported`` with the reason it cannot train these
    runs (then the engine takes its generic PyTorch path)."""
    if device.type != "cpu":
        return Unsupported(f"it runs on the CPU, not on {device}")
    net = _layout.describe(models[0])
    if isinstance(net, Unsupported):
        return net
    for i, model in enumerate(models):
        if any(p.dtype != torch.float32 for p in model.parameters()):
            return Unsupported(f"it computes in float32; models[{i}] is not float32")
        if not all(p.requires_grad for p in model.parameters()):
            return Unsupported(f"models[{i}] has frozen parameters; it trains every weight")
    for i, objective in enumerate(objectives):
        if not follows_the_family_formula(objective):
            return Unsupported(f"objectives[{i}] ({type(objective).__name__}) is not written as a "
                               "vaelib.objectives.Form (it overrides forward, combine or a hook)")
        if net.output == "bernoulli" and cast(VAEObjective, objective).form.likelihood == "calibrated":
            return Unsupported(f"objectives[{i}] scores a Gaussian likelihood, these models have a Bernoulli decoder")
    if optimizer not in OPTIMIZER_CODES:
        return Unsupported(f"it implements the optimisers {sorted(OPTIMIZER_CODES)}, not {optimizer!r}")
    needs = {"layers": sum(layer.kind == "linear" for layer in (*net.encoder, *net.decoder)),
             "pieces": len(net.shapes)}
    if any(needs[name] > limit for name, limit in LIMITS.items()):
        return Unsupported(f"it handles at most {LIMITS} layers and parameter tensors, these runs need {needs}")
    if load() is None:
        return Unsupported("it could not be built or loaded (no C compiler, or see the KernelUnavailableWarning; "
                           "set CC to one)")
    return net


def follows_the_family_formula(objective: Objective) -> bool:
    """Whether every method that shapes training is the family's own, so that its Form says it all."""
    cls = type(objective)
    if not isinstance(objective, VAEObjective):
        return False
    own = ConstrainedObjective if isinstance(objective, ConstrainedObjective) else VAEObjective
    return all(getattr(cls, name) is getattr(own, name)
               for name in ("forward", "combine", "before_step", "after_step", "trainer_parameters"))


@functools.cache
def load() -> Any:
    """The kernel's entry point (a ctypes function), built on first use and cached by ``_build``;
    None if it cannot be built or loaded (``_build`` warns why, unless there is simply no compiler)."""
    library = _build.load_library(SOURCE, FLAGS, "vaelib_train_epoch")
    if library is None:
        return None
    function = library.vaelib_train_epoch
    i64, pointer = ctypes.c_int64, ctypes.c_void_p
    argtypes: list[Any] = ([i64] * 5 + [pointer, i64, i64, pointer, pointer, i64] + [pointer] * 9
                           + [i64, pointer, i64, ctypes.c_float] + [pointer] * 3 + [i64, i64])
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


# -fno-trapping-math and -fno-math-errno let the compiler vectorise branch-free selections and
# divisions; neither changes a result. The contract with _layout.py comes last, as -D macros.
FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-pthread", "-shared", "-fPIC",
         *_layout.kernel_defines()]


class EpochCall:
    """Everything the kernel needs that does not change from epoch to epoch, prepared once."""

    def __init__(self, net: Net, objectives: list[VAEObjective], sizes: list[int], optimizer: str, lr: float,
                 threads: int):
        self.function = load()
        self.n_runs, self.sizes, self.threads = len(objectives), sizes, threads
        self.optimizer, self.lr, self.n_pieces = OPTIMIZER_CODES[optimizer], lr, len(net.shapes)
        self.batch_sizes = torch.tensor(sizes, dtype=torch.int64)
        self.layers, self.constants = _layer_spec(net)
        self.encoder_layers = sum(layer.kind == "linear" for layer in net.encoder)
        self.numel = torch.tensor([math.prod(shape) for shape in net.shapes], dtype=torch.int64)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), (self.numel * self.n_runs).cumsum(0)[:-1]])
        self.settings = _layout.run_settings(objectives).contiguous()
        self.decoder = DECODER_CODES[net.output]

    def __call__(self, state: list[torch.Tensor], multiplier_state: torch.Tensor, x: torch.Tensor,
                 order: torch.Tensor, eps: torch.Tensor, step_size: torch.Tensor,
                 bias_correction2_sqrt: torch.Tensor) -> torch.Tensor:
        """One epoch of every run: updates ``state`` (parameters, Adam's two moments) and
        ``multiplier_state`` in place; returns (steps, runs, len(_layout.STEP_COLUMNS))."""
        x, order, eps = x.contiguous(), order.contiguous(), eps.contiguous()
        step_size, bias_correction2_sqrt = step_size.contiguous(), bias_correction2_sqrt.contiguous()
        columns = torch.empty(len(self.sizes), self.n_runs, len(_layout.STEP_COLUMNS))
        status = self.function(
            self.n_runs, x.shape[0], x.shape[1], eps.shape[2], len(self.sizes), self.batch_sizes.data_ptr(),
            len(self.layers), self.encoder_layers, self.layers.data_ptr(), self.constants.data_ptr(),
            self.n_pieces, self.offsets.data_ptr(), self.numel.data_ptr(), x.data_ptr(), order.data_ptr(),
            eps.data_ptr(), *(t.data_ptr() for t in state), self.settings.data_ptr(), len(_layout.SETTINGS),
            multiplier_state.data_ptr(), self.optimizer, self.lr, step_size.data_ptr(),
            bias_correction2_sqrt.data_ptr(), columns.data_ptr(), self.decoder, self.threads)
        if status != 0:
            raise MemoryError(f"the engine's C kernel stopped with status {status} (1: sizes or codes beyond "
                              "its limits, 2: out of memory)")
        return columns


def _layer_spec(net: Net) -> tuple[torch.Tensor, torch.Tensor]:
    """Per linear layer, its ``_layout.LAYER_FIELDS`` (sizes, the activation after it, its pieces);
    and ELU's alpha."""
    spec, constants = [], []
    for stack in (net.encoder, net.decoder):
        for i, layer in enumerate(stack):
            if layer.kind != "linear":
                continue
            after = stack[i + 1] if i + 1 < len(stack) else None
            a, b = after.pieces if after is not None and after.kind == "ptanh" else (-1, -1)
            (size_in, size_out), (weight, bias) = net.shapes[layer.pieces[0]], layer.pieces
            fields = {"in": size_in, "out": size_out, "activation": ACTIVATION_CODES[after.kind] if after else 0,
                      "weight": weight, "bias": bias, "a": a, "b": b}
            spec.append([fields[name] for name in LAYER_FIELDS])
            constants.append(after.elu_alpha if after is not None else 1.0)
    return torch.tensor(spec, dtype=torch.int64), torch.tensor(constants, dtype=torch.float32)


class KernelTrainer:
    """The C kernel's side of the engine (its ``Trainer`` protocol, ``_trainer.py``): the flat
    parameter buffer, Adam's moments, the multipliers' state."""

    backend = "kernel"

    def __init__(self, net: _layout.Net, models: list[nn.Module], objectives: list[Objective], x: torch.Tensor,
                 sizes: list[int], optimizer: str, lr: float):
        # kernel_net has checked that these are vaelib.VAE models and objectives of the VAE family
        vaes, family = cast("list[VAE]", models), cast("list[VAEObjective]", objectives)
        self.net, self.objectives, self.features = net, family, x.shape[1]
        theta = _layout.gather(vaes, family, net)
        # The parameters and Adam's two moments are rows of one buffer, so that mark() is one copy.
        self.optimised = torch.zeros(3, theta.numel(), dtype=theta.dtype)
        self.optimised[0] = theta
        self.tensors = {"theta": self.optimised[0], "adam_m": self.optimised[1], "adam_v": self.optimised[2],
                        "multiplier": _layout.multiplier_state(family)}
        self.call = EpochCall(net, family, sizes, optimizer, lr, threads.kernel_threads(len(models)))
        self.lr = lr
        self.batch_sizes = torch.tensor(sizes)[:, None]
        # Runs whose objectives share a kind share one combine() call per epoch, on (steps, runs) tensors.
        kinds: dict[tuple[Any, ...], list[int]] = {}
        for r, objective in enumerate(objectives):
            kinds.setdefault(objective_kind(objective), []).append(r)
        self.groups = list(kinds.values())
        # Each group's columns of the kernel's (steps, runs) output: all of them when one group holds every run.
        self.group_columns = [slice(None) if runs == list(range(len(objectives))) else torch.tensor(runs)
                              for runs in self.groups]
        self.steps_done = 0
        self._mark: dict[str, Any] | None = None

    def state(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done, **{name: t.clone() for name, t in self.tensors.items()}}

    def mark(self) -> None:
        """Remember the state (into buffers kept for the purpose: an epoch allocates nothing)."""
        if self._mark is None:
            self._mark = {"optimised": self.optimised.clone(), "multiplier": self.tensors["multiplier"].clone()}
        else:
            self._mark["optimised"].copy_(self.optimised)
            self._mark["multiplier"].copy_(self.tensors["multiplier"])
        self._mark["steps_done"] = self.steps_done

    def rollback(self) -> None:
        """Go back to the state ``mark`` remembered."""
        assert self._mark is not None, "rollback() before mark()"
        self.steps_done = self._mark["steps_done"]
        self.optimised.copy_(self._mark["optimised"])
        self.tensors["multiplier"].copy_(self._mark["multiplier"])

    def all_finite(self) -> bool:
        return bool(torch.isfinite(self.tensors["theta"]).all())

    def restore(self, state: dict[str, Any]) -> None:
        self.steps_done = state["steps_done"]
        for name, tensor in self.tensors.items():
            tensor.copy_(state[name])

    def epoch(self, x: torch.Tensor, order: torch.Tensor, draws: dict[str, torch.Tensor],
              sizes: list[int]) -> EpochTerms:
        """One epoch; per group of runs, each term at every step of every run, (steps, runs)."""
        t = self.tensors
        columns = self.call([t["theta"], t["adam_m"], t["adam_v"]], t["multiplier"], x, order, draws["noise"],
                            *adam_schedule(self.lr, self.steps_done, len(sizes)))
        self.steps_done += len(sizes)
        recon, kl, alpha = columns.unbind(-1)  # _layout.STEP_COLUMNS
        # Each objective names its terms from the kernel's R, KL and alpha with its own combine().
        groups = []
        for runs, group in zip(self.groups, self.group_columns):
            objective = self.objectives[runs[0]]
            terms = objective.combine(recon[:, group], kl[:, group], batch_size=self.batch_sizes,
                                      features=self.features,
                                      alpha=alpha[:, group] if isinstance(objective, ConstrainedObjective) else None)
            groups.append((runs, terms))
        return groups

    def parameters_finite(self) -> list[bool]:
        runs = len(self.objectives)
        pieces = _layout.unflatten(self.tensors["theta"], self.net, runs)
        return torch.stack([torch.isfinite(p.reshape(runs, -1)).all(1) for p in pieces]).all(0).tolist()

    def write_back(self, models: list[nn.Module], objectives: list[Objective]) -> None:
        _layout.scatter(self.tensors["theta"], self.tensors["multiplier"], cast("list[VAE]", models),
                        cast("list[VAEObjective]", objectives), self.net)


def adam_schedule(lr: float, done: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's per-step scalars for t = done + 1 .. done + steps, -lr / (1 - beta1^t) and
    sqrt(1 - beta2^t), computed with Python floats as torch.optim.Adam computes them, then rounded
    to float32 as its kernels round them. One epoch at a time: memory does not grow with the epochs."""
    beta1, beta2 = ADAM_BETAS
    steps_taken = [float(t) for t in range(done + 1, done + steps + 1)]
    step_size = [-lr / (1 - beta1 ** t) for t in steps_taken]
    bias_correction2_sqrt = [(1 - beta2 ** t) ** 0.5 for t in steps_taken]
    return torch.tensor(step_size, dtype=torch.float32), torch.tensor(bias_correction2_sqrt, dtype=torch.float32)

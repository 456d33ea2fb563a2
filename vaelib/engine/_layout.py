"""How the C kernel sees R runs of one VAE: stacked parameters in one flat buffer, and per-run settings;
and the contract between this Python side and ``kernel.c``, written once, here.

Every parameter gets a leading run axis (a weight of shape (R, in, out)) and all of them live in
one flat buffer, piece after piece, alpha last, so that the kernel finds run r's copy of piece i at
a fixed offset. The per-run settings are each objective's ``Form`` (``vaelib.objectives``): the
kernel knows the VAE family's one formula, not the objectives by name, so an objective that is
written as a ``Form`` needs no change here or in ``kernel.c``. A constrained objective's multiplier
and its rule's state are read and written through the objective's own methods
(``VAEObjective.multiplier_tensors`` and ``load_multiplier_tensors``).

**The contract.** Everything both sides must agree on (the order of the per-run ``SETTINGS``, the
columns of a step's output, the fields of a layer's description, the codes of the activations,
optimisers and decoders, the size limits, the multiplier state's fields and Adam's constants) is defined here
and handed to the C compiler as macros (``kernel_defines``: ``-DS_RECON_WEIGHT=0``,
``-DACT_PTANH=1``, ``-DADAM_BETA2=0x1.ff7ceep-1f``, ...). The macros are part of the compiler's
flags and so of the build's cache key: a changed contract builds a new library. ``kernel.c``
defines none of them itself and names each where it uses it, so a name it needs that this side
does not define stops the build naming it, and tests/test_kernel_contract.py checks that the two
sides use the same names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vaelib.models.vae import VAE
from vaelib.nn import ParametricTanh
from vaelib.objectives import ALPHA_CEILING, ALPHA_FLOOR, ALPHA_GRADIENT_SIGN, VAEObjective

# --- the contract with kernel.c (see the module's docstring) ---------------------------------------
# Per run, in this order (kernel.c's S_<NAME>): the Form's numbers and the alpha rule's switches.
SETTINGS = ("recon_weight", "kl_weight", "constraint_recon", "constraint_kl", "bound", "kl_summed",
            "calibrated", "min_variance", "gradient_sign", "reflect", "project", "geco", "ema", "rate",
            "alpha_floor", "alpha_ceiling")
# What the kernel records for every step of every run (STEP_<NAME>); the objective's own
# ``combine`` makes the named terms from them.
STEP_COLUMNS = ("recon", "kl", "alpha")
# Per linear layer, int64 (LAYER_<NAME>): its sizes, the activation after it, and the indices of its
# pieces in the flat buffer (weight, bias, and a parametric tanh's a and b, -1 where there is none).
LAYER_FIELDS = ("in", "out", "activation", "weight", "bias", "a", "b")
# The activations the kernel computes (ACT_<NAME>: 1, 2, ...; ACT_NONE = 0 after a layer without one).
ACTIVATIONS = ("ptanh", "tanh", "relu", "sigmoid", "elu", "identity")
ACTIVATION_KINDS = {ParametricTanh: "ptanh", nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid",
                    nn.ELU: "elu", nn.Identity: "identity"}
# The optimisers the kernel implements (OPT_<NAME>), with the numbers of vaelib.runs.OPTIMIZERS.
OPTIMIZERS = ("adam", "sgd")
# The decoders the kernel implements (DECODER_<NAME>): a VAE's ``decoder_kind``, which makes R the
# squared error of the decoder's mean or the Bernoulli NLL of its logits (vaelib.objectives.reconstruction_term).
DECODERS = ("gaussian", "bernoulli")
# The most linear layers and parameter tensors of one run (MAX_LAYERS, MAX_PIECES): fixed-size arrays.
LIMITS = {"layers": 64, "pieces": 256}
# Per run, float32 (MULTIPLIER_<NAME>): the state a multiplier's rule keeps besides alpha.
MULTIPLIER_STATE = ("average", "updates")
# torch.optim.Adam's defaults, which vaelib.fit uses; the kernel's update repeats its arithmetic,
# with the constants rounded to float32 as PyTorch's kernels round them (ADAM_*).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def _float32_literal(value: float) -> str:
    """``value`` rounded to float32, as an exact C hexadecimal constant of type float."""
    return float(np.float32(value)).hex() + "f"


def kernel_defines() -> list[str]:
    """The contract as the C compiler's -D flags (see the module's docstring)."""
    names: dict[str, int | str] = {}
    names.update({f"S_{name.upper()}": i for i, name in enumerate(SETTINGS)})
    names["N_SETTINGS"] = len(SETTINGS)
    names.update({f"STEP_{name.upper()}": i for i, name in enumerate(STEP_COLUMNS)})
    names["N_STEP_COLUMNS"] = len(STEP_COLUMNS)
    names.update({f"LAYER_{name.upper()}": i for i, name in enumerate(LAYER_FIELDS)})
    names["N_LAYER_FIELDS"] = len(LAYER_FIELDS)
    names["ACT_NONE"] = 0
    names.update({f"ACT_{name.upper()}": code for name, code in ACTIVATION_CODES.items()})
    names.update({f"OPT_{name.upper()}": code for name, code in OPTIMIZER_CODES.items()})
    names.update({f"DECODER_{name.upper()}": code for name, code in DECODER_CODES.items()})
    names.update({f"MAX_{name.upper()}": limit for name, limit in LIMITS.items()})
    names.update({f"MULTIPLIER_{name.upper()}": i for i, name in enumerate(MULTIPLIER_STATE)})
    names["N_MULTIPLIER_STATE"] = len(MULTIPLIER_STATE)
    beta1, beta2 = ADAM_BETAS
    # exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2); + eps
    names.update(ADAM_AVERAGE_WEIGHT=_float32_literal(1 - beta1), ADAM_BETA2=_float32_literal(beta2),
                 ADAM_SQUARE_WEIGHT=_float32_literal(1 - beta2), ADAM_EPS=_float32_literal(ADAM_EPS))
    return [f"-D{name}={value}" for name, value in names.items()]


ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS, start=1)}
OPTIMIZER_CODES = {name: code for code, name in enumerate(OPTIMIZERS)}
DECODER_CODES = {name: code for code, name in enumerate(DECODERS)}
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unsupported:
    """Why the kernel cannot train a set of runs (the engine then takes its generic path)."""

    reason: str


@dataclass(frozen=True)
class Layer:
    """One module of an MLP: ``kind`` is "linear" or an activation; ``pieces`` index its stacked
    parameters ((weight, bias) for linear, (a, b) for ptanh); ``elu_alpha`` is ELU's constant."""

    kind: str
    pieces: tuple[int, ...] = ()
    elu_alpha: float = 1.0


@dataclass(frozen=True)
class Net:
    """What every run shares: the layers, the per-run shapes of the stacked parameters in buffer
    order (alpha last) and what the decoder's output is (``output``, one of ``DECODERS``)."""

    encoder: tuple[Layer, ...]
    decoder: tuple[Layer, ...]
    shapes: tuple[tuple[int, ...], ...]
    output: str = "gaussian"

    @property
    def alpha(self) -> int:
        return len(self.shapes) - 1


def describe(model: nn.Module) -> Net | Unsupported:
    """The layers of a VAE as the kernel needs them, or why the kernel cannot train it."""
    if type(model) is not VAE:
        return Unsupported(f"it trains vaelib.VAE models, not {type(model).__name__}")
    if model.decoder_kind not in DECODERS:
        return Unsupported(f"it implements the decoders {list(DECODERS)}, not {model.decoder_kind!r}")
    shapes: list[tuple[int, ...]] = []
    layers = []
    for stack in (model.encoder, model.decoder):
        part = []
        for module in stack:
            if isinstance(module, nn.Linear) and module.bias is not None:
                part.append(Layer("linear", (len(shapes), len(shapes) + 1)))
                shapes += [(module.in_features, module.out_features), (module.out_features, 1)]
            elif type(module) is ParametricTanh:
                part.append(Layer("ptanh", (len(shapes), len(shapes) + 1)))
                shapes += [(1, 1), (1, 1)]
            elif type(module) in ACTIVATION_KINDS:
                part.append(Layer(ACTIVATION_KINDS[type(module)], elu_alpha=float(getattr(module, "alpha", 1.0))))
            else:
                return Unsupported(f"it has no code for the layer {type(module).__name__}")
        layers.append(tuple(part))
    return Net(layers[0], layers[1], (*shapes, ()), model.decoder_kind)


def model_tensors(model: VAE) -> list[torch.Tensor]:
    """One model's parameters in buffer order, as views (weights transposed to (in, out))."""
    tensors = []
    for module in (*model.encoder, *model.decoder):
        if isinstance(module, nn.Linear):
            tensors += [module.weight.detach().T, module.bias.detach()]
        elif isinstance(module, ParametricTanh):
            tensors += [module.a.detach(), module.b.detach()]
    return tensors


def gather(models: list[VAE], objectives: list[VAEObjective], net: Net) -> torch.Tensor:
    """The flat buffer: piece by piece, each stacked over the runs; alpha last (0, which no rule
    moves, for an objective without a multiplier)."""
    per_run = [[*model_tensors(m), o.multiplier_tensors()[0]] for m, o in zip(models, objectives)]
    return torch.cat([torch.stack([run[i].cpu().float().reshape(shape) for run in per_run]).reshape(-1)
                      for i, shape in enumerate(net.shapes)])


def unflatten(theta: torch.Tensor, net: Net, runs: int) -> list[torch.Tensor]:
    """Views of the flat buffer: piece i has shape (runs, *net.shapes[i])."""
    sizes = [runs * math.prod(shape) for shape in net.shapes]
    return [part.view(runs, *shape) for part, shape in zip(theta.split(sizes), net.shapes)]


@torch.no_grad()
def scatter(theta: torch.Tensor, multiplier_state: torch.Tensor, models: list[VAE],
            objectives: list[VAEObjective], net: Net) -> None:
    """Write the stacked parameters, and each objective's multiplier with its rule's state, back into
    the models and objectives."""
    stacked = unflatten(theta, net, len(models))
    for r, (model, objective) in enumerate(zip(models, objectives)):
        for target, value in zip(model_tensors(model), stacked):
            target.copy_(value[r].reshape(target.shape))
        objective.load_multiplier_tensors(stacked[net.alpha][r], multiplier_state[r])


def multiplier_state(objectives: list[VAEObjective]) -> torch.Tensor:
    """(runs, len(MULTIPLIER_STATE)) float32: the state each objective's multiplier rule keeps besides
    alpha (zeros where it keeps none)."""
    return torch.stack([o.multiplier_tensors()[1].detach().cpu().float() for o in objectives])


def run_settings(objectives: list[VAEObjective]) -> torch.Tensor:
    """(runs, len(SETTINGS)) float32: each objective's Form, with its alpha rule as switches."""
    rows = []
    for objective in objectives:
        form = objective.form
        rule = form.rule or "fixed"
        learned = objective.multiplier_trained()
        rows.append([form.recon_weight, form.kl_weight, form.constraint_recon, form.constraint_kl, form.bound,
                     form.kl_reduction == "sum", form.likelihood == "calibrated", form.min_variance,
                     ALPHA_GRADIENT_SIGN[rule] if learned else 0.0, rule == "reverse",
                     rule in ("project", "ascent"), rule == "geco", form.ema, form.rate, ALPHA_FLOOR,
                     ALPHA_CEILING])
    return torch.tensor(rows, dtype=torch.float32)

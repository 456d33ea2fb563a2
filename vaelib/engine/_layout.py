"""How the C kernel sees R runs of one VAE: stacked parameters in one flat buffer, and per-run settings.

Every parameter gets a leading run axis (a weight of shape (R, in, out)) and all of them live in
one flat buffer, piece after piece, alpha last, so that the kernel finds run r's copy of piece i at
a fixed offset. The per-run settings are each objective's ``Form`` (``vaelib.objectives``): the
kernel knows the VAE family's one formula, not the objectives by name, so an objective that is
written as a ``Form`` needs no change here or in ``kernel.c``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vaelib.models.vae import VAE
from vaelib.nn import ParametricTanh
from vaelib.objectives import ALPHA_CEILING, ALPHA_FLOOR, ALPHA_GRADIENT_SIGN, ConstrainedObjective, VAEObjective

ACTIVATION_KINDS = {ParametricTanh: "ptanh", nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid",
                    nn.ELU: "elu", nn.Identity: "identity"}
# Per run, in this order (kernel.c's run_settings): the Form's numbers and the alpha rule's switches.
SETTINGS = ("recon_weight", "kl_weight", "constraint_recon", "constraint_kl", "bound", "kl_summed",
            "calibrated", "min_variance", "gradient_sign", "reflect", "project", "geco", "ema", "rate",
            "alpha_floor", "alpha_ceiling")
# What the kernel records for every step of every run; the objective's own ``combine`` makes the
# named terms from them.
STEP_COLUMNS = ("recon", "kl", "alpha")


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
    """What every run shares: the layers and the per-run shapes of the stacked parameters in
    buffer order (alpha last)."""

    encoder: tuple[Layer, ...]
    decoder: tuple[Layer, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def alpha(self) -> int:
        return len(self.shapes) - 1


def describe(model: nn.Module) -> Net | Unsupported:
    """The layers of a VAE as the kernel needs them, or why the kernel cannot train it."""
    if type(model) is not VAE:
        return Unsupported(f"it trains vaelib.VAE models, not {type(model).__name__}")
    if model.decoder_kind != "gaussian":
        return Unsupported("it implements the Gaussian decoder only")
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
    return Net(layers[0], layers[1], (*shapes, ()))


def model_tensors(model: VAE) -> list[torch.Tensor]:
    """One model's parameters in buffer order, as views (weights transposed to (in, out))."""
    tensors = []
    for module in (*model.encoder, *model.decoder):
        if isinstance(module, nn.Linear):
            tensors += [module.weight.detach().T, module.bias.detach()]
        elif isinstance(module, ParametricTanh):
            tensors += [module.a.detach(), module.b.detach()]
    return tensors


def multiplier(objective: VAEObjective) -> torch.Tensor:
    """The objective's alpha, or a 0 that no rule moves for an objective without one."""
    return objective.alpha.detach() if isinstance(objective, ConstrainedObjective) else torch.zeros(())


def gather(models: list[VAE], objectives: list[VAEObjective], net: Net) -> torch.Tensor:
    """The flat buffer: piece by piece, each stacked over the runs; alpha last."""
    per_run = [[*model_tensors(m), multiplier(o)] for m, o in zip(models, objectives)]
    return torch.cat([torch.stack([run[i].cpu().float().reshape(shape) for run in per_run]).reshape(-1)
                      for i, shape in enumerate(net.shapes)])


def unflatten(theta: torch.Tensor, net: Net, runs: int) -> list[torch.Tensor]:
    """Views of the flat buffer: piece i has shape (runs, *net.shapes[i])."""
    sizes = [runs * math.prod(shape) for shape in net.shapes]
    return [part.view(runs, *shape) for part, shape in zip(theta.split(sizes), net.shapes)]


@torch.no_grad()
def scatter(theta: torch.Tensor, multiplier_state: torch.Tensor, models: list[VAE],
            objectives: list[VAEObjective], net: Net) -> None:
    """Write the stacked parameters (and GECO's moving averages) back into the models and objectives."""
    stacked = unflatten(theta, net, len(models))
    for r, (model, objective) in enumerate(zip(models, objectives)):
        for target, value in zip(model_tensors(model), stacked):
            target.copy_(value[r].reshape(target.shape))
        if isinstance(objective, ConstrainedObjective):
            objective.alpha.detach().copy_(stacked[net.alpha][r])
            if objective.alpha_rule == "geco":
                objective.constraint_average.copy_(multiplier_state[r, 0])
                objective.updates.copy_(multiplier_state[r, 1])


def multiplier_state(objectives: list[VAEObjective]) -> torch.Tensor:
    """(runs, 2): GECO's moving average of the constraint and its count of updates (0 for other runs)."""
    rows = [[float(o.constraint_average), float(o.updates)]
            if isinstance(o, ConstrainedObjective) and o.alpha_rule == "geco" else [0.0, 0.0] for o in objectives]
    return torch.tensor(rows, dtype=torch.float32)


def run_settings(objectives: list[VAEObjective]) -> torch.Tensor:
    """(runs, len(SETTINGS)) float32: each objective's Form, with its alpha rule as switches."""
    rows = []
    for objective in objectives:
        form = objective.form
        rule = form.rule or "fixed"
        learned = isinstance(objective, ConstrainedObjective) and objective.alpha.requires_grad
        rows.append([form.recon_weight, form.kl_weight, form.constraint_recon, form.constraint_kl, form.bound,
                     form.kl_reduction == "sum", form.likelihood == "calibrated", form.min_variance,
                     ALPHA_GRADIENT_SIGN[rule] if learned else 0.0, rule == "reverse",
                     rule in ("project", "ascent"), rule == "geco", form.ema, form.rate, ALPHA_FLOOR,
                     ALPHA_CEILING])
    return torch.tensor(rows, dtype=torch.float32)

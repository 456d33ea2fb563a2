"""R runs of one VAE architecture as stacked tensors, and one training step of all of them in PyTorch.

Every parameter gets a leading run axis (a weight of shape (R, in, out)) and all of them live in
one flat buffer, piece after piece, so that the optimiser update is a few operations on one
tensor. Activations are laid out (R, features, batch): the batch axis is the long, contiguous one.
The gradients are written out by hand (no autograd graph); each run's gradient comes from its own
activations and its own loss only, so the runs cannot influence each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vaelib.models.vae import VAE
from vaelib.nn import ParametricTanh
from vaelib.objectives import ALPHA_GRADIENT_SIGN, ALPHA_RULES, KoLagrangian, constrain_alpha

# torch.optim.Adam's defaults, which vaelib.fit uses.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

# What every step records for every run, in this order.
COLUMNS = ("loss", "recon", "kl", "weighted_recon", "weighted_kl", "alpha")

ACTIVATION_KINDS = {ParametricTanh: "ptanh", nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid",
                    nn.ELU: "elu", nn.Identity: "identity"}


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
    order (alpha last), the decoder, the optimiser and the alpha rules in use."""

    encoder: tuple[Layer, ...]
    decoder: tuple[Layer, ...]
    shapes: tuple[tuple[int, ...], ...]
    bernoulli: bool
    optimizer: str
    lr: float
    rules: tuple[str, ...]

    @property
    def alpha(self) -> int:
        return len(self.shapes) - 1

    @property
    def latent(self) -> int:
        return self.shapes[self.encoder[-1].pieces[0]][1] // 2


class Runs(NamedTuple):
    """Per-run settings, tensors of shape (R,): loss = (1 + alpha)·R + alpha·(KL - delta) + beta·KL.

    An ELBO run has alpha = 0 (frozen: gradient sign 0), delta = 0 and beta its beta; a KoLagrangian
    run has beta = 0. ``kl_summed`` marks a KL summed over the batch; ``rule_masks[i]`` the runs
    that follow ``net.rules[i]``."""

    beta: torch.Tensor
    delta: torch.Tensor
    kl_summed: torch.Tensor
    gradient_sign: torch.Tensor
    rule_masks: torch.Tensor


def architecture(models: list[VAE], objectives: list, optimizer: str, lr: float) -> Net:
    """The shared architecture of ``models``; ValueError or TypeError if they do not share one."""
    shapes: list[tuple[int, ...]] = []
    encoder = _module_layers(models[0].encoder, shapes, "models[0].encoder")
    decoder = _module_layers(models[0].decoder, shapes, "models[0].decoder")
    for i, model in enumerate(models):
        if _signature(model) != _signature(models[0]):
            raise ValueError(f"models[{i}] differs from models[0] in its layers, sizes or decoder; batched runs "
                             "must share one architecture (train other architectures in another call)")
        frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
        if frozen:
            raise ValueError(f"models[{i}] has frozen parameters {frozen}; the batched engine trains every "
                             "parameter (use vaelib.fit for partly frozen models)")
        if model.encoder[0].weight.dtype != models[0].encoder[0].weight.dtype:
            raise TypeError(f"models[{i}] has dtype {model.encoder[0].weight.dtype}, models[0] has "
                            f"{models[0].encoder[0].weight.dtype}; batched runs must share one dtype")
    rules = tuple(rule for rule in ALPHA_RULES if rule in {alpha_rule(o) for o in objectives})
    return Net(encoder, decoder, (*shapes, ()), models[0].decoder_kind == "bernoulli", optimizer, lr, rules)


def _module_layers(stack: nn.Sequential, shapes: list[tuple[int, ...]], where: str) -> tuple[Layer, ...]:
    layers = []
    for i, module in enumerate(stack):
        if isinstance(module, nn.Linear) and module.bias is not None:
            layers.append(Layer("linear", (len(shapes), len(shapes) + 1)))
            shapes += [(module.in_features, module.out_features), (module.out_features, 1)]
        elif type(module) is ParametricTanh:
            layers.append(Layer("ptanh", (len(shapes), len(shapes) + 1)))
            shapes += [(1, 1), (1, 1)]
        elif type(module) in ACTIVATION_KINDS:
            layers.append(Layer(ACTIVATION_KINDS[type(module)], elu_alpha=float(getattr(module, "alpha", 1.0))))
        else:
            raise ValueError(f"the batched engine cannot train {where}[{i}] ({type(module).__name__}); it supports "
                             f"linear layers with a bias and the activations of vaelib.nn.ACTIVATIONS")
    return tuple(layers)


def _signature(model: VAE) -> list:
    return [(type(m), tuple(p.shape for p in m.parameters())) for m in model.modules()] + [model.decoder_kind]


def alpha_rule(objective) -> str:
    """The alpha rule a run follows; an ELBO run's alpha is a frozen 0."""
    return objective.alpha_rule if isinstance(objective, KoLagrangian) else "fixed"


def run_settings(objectives: list, net: Net, dtype: torch.dtype, device: torch.device) -> Runs:
    def vector(values):
        return torch.tensor(values, dtype=dtype, device=device)

    ko = [isinstance(o, KoLagrangian) for o in objectives]
    return Runs(
        beta=vector([0.0 if is_ko else o.beta for is_ko, o in zip(ko, objectives)]),
        delta=vector([o.delta if is_ko else 0.0 for is_ko, o in zip(ko, objectives)]),
        kl_summed=torch.tensor([is_ko and o.kl_reduction == "sum" for is_ko, o in zip(ko, objectives)], device=device),
        gradient_sign=vector([ALPHA_GRADIENT_SIGN[alpha_rule(o)] for o in objectives]),
        rule_masks=torch.tensor([[alpha_rule(o) == rule for o in objectives] for rule in net.rules], device=device))


def unflatten(theta: torch.Tensor, net: Net, runs: int) -> list[torch.Tensor]:
    """Views of the flat buffer: parameter i has shape (runs, *net.shapes[i])."""
    sizes = [runs * math.prod(shape) for shape in net.shapes]
    return [part.view(runs, *shape) for part, shape in zip(theta.split(sizes), net.shapes)]


def _model_tensors(model: VAE) -> list[torch.Tensor]:
    """One model's parameters in buffer order, as views (weights transposed to (in, out))."""
    tensors = []
    for module in (*model.encoder, *model.decoder):
        if isinstance(module, nn.Linear):
            tensors += [module.weight.detach().T, module.bias.detach()]
        elif isinstance(module, ParametricTanh):
            tensors += [module.a.detach(), module.b.detach()]
    return tensors


def gather_parameters(models: list[VAE], objectives: list, net: Net) -> torch.Tensor:
    """The flat buffer: parameter by parameter, each stacked over the runs; alpha last (0 for ELBO runs)."""
    dtype = models[0].encoder[0].weight.dtype
    per_run = [[*_model_tensors(m), o.alpha.detach() if isinstance(o, KoLagrangian) else torch.zeros(())]
               for m, o in zip(models, objectives)]
    return torch.cat([torch.stack([run[i].cpu().to(dtype).reshape(shape) for run in per_run]).reshape(-1)
                      for i, shape in enumerate(net.shapes)])


@torch.no_grad()
def scatter_parameters(theta: torch.Tensor, models: list[VAE], objectives: list, net: Net) -> None:
    """Write the stacked parameters back into the ordinary models and objectives (on theta's device)."""
    stacked = unflatten(theta, net, len(models))
    for r, (model, objective) in enumerate(zip(models, objectives)):
        model.to(theta.device)
        objective.to(theta.device)
        for target, value in zip(_model_tensors(model), stacked):
            target.copy_(value[r].reshape(target.shape))
        if isinstance(objective, KoLagrangian):
            objective.alpha.detach().copy_(stacked[net.alpha][r])


# ----------------------------------------------------------------------------------------------
# One training step for all runs: forward, hand-written gradients, optimiser update
# ----------------------------------------------------------------------------------------------

def _activate(layer: Layer, u: torch.Tensor, params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The activation's output and what its gradient needs (tanh(b·u) for ptanh, else the output)."""
    if layer.kind == "ptanh":
        a, b = (params[i] for i in layer.pieces)
        t = torch.tanh(b * u)
        return a * t, t
    y = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda v: v,
         "elu": lambda v: F.elu(v, layer.elu_alpha)}[layer.kind](u)
    return y, y


def _activation_gradient(layer: Layer, dy: torch.Tensor, u: torch.Tensor, saved: torch.Tensor,
                         params: list[torch.Tensor], grads: list) -> torch.Tensor:
    """dL/du from dL/dy; for ptanh also fills dL/da and dL/db (summed over each run's batch)."""
    if layer.kind == "ptanh":
        a, b = (params[i] for i in layer.pieces)
        grads[layer.pieces[0]] = (dy * saved).sum((1, 2), keepdim=True)
        dv = dy * a * (1 - saved * saved)
        grads[layer.pieces[1]] = (dv * u).sum((1, 2), keepdim=True)
        return dv * b
    if layer.kind == "tanh":
        return dy * (1 - saved * saved)
    if layer.kind == "relu":
        return torch.where(saved > 0, dy, 0.0)
    if layer.kind == "sigmoid":
        return dy * (1 - saved) * saved
    if layer.kind == "elu":
        return torch.where(u > 0, dy, dy * (saved + layer.elu_alpha))
    return dy


def _mlp_forward(layers: tuple[Layer, ...], params: list[torch.Tensor], h: torch.Tensor):
    """The stacked MLP's output (runs, out, batch) and, per layer, its input and saved tensor."""
    tape = []
    for layer in layers:
        if layer.kind == "linear":
            weight, bias = (params[i] for i in layer.pieces)
            tape.append((h, None))
            h = torch.baddbmm(bias, weight.transpose(1, 2), h)
        else:
            out, saved = _activate(layer, h, params)
            tape.append((h, saved))
            h = out
    return h, tape


def _mlp_gradient(layers: tuple[Layer, ...], params: list[torch.Tensor], tape: list, dh: torch.Tensor,
                  grads: list, input_gradient: bool) -> torch.Tensor | None:
    """Back-propagate dL/d(output) through the MLP, filling ``grads``; return dL/d(input) if asked."""
    for index in range(len(layers) - 1, -1, -1):
        layer, (h, saved) = layers[index], tape[index]
        if layer.kind == "linear":
            weight_index, bias_index = layer.pieces
            grads[weight_index] = torch.bmm(h, dh.transpose(1, 2))
            grads[bias_index] = dh.sum(-1, keepdim=True)
            if index == 0 and not input_gradient:
                return None
            dh = torch.bmm(params[weight_index], dh)
        else:
            dh = _activation_gradient(layer, dh, h, saved, params, grads)
    return dh


def _terms_and_gradients(net: Net, runs: Runs, params: list[torch.Tensor], x: torch.Tensor, eps: torch.Tensor):
    """Every run's loss terms (runs, len(COLUMNS)) and the gradient of each run's loss with respect
    to its own parameters, in buffer order. x is (runs, features, batch), eps (runs, latent, batch).
    The formulas are those of vaelib.objectives."""
    batch = x.shape[-1]
    alpha = params[net.alpha]
    encoded, encoder_tape = _mlp_forward(net.encoder, params, x)
    mu, logvar = encoded.chunk(2, dim=1)
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps
    decoded, decoder_tape = _mlp_forward(net.decoder, params, z)
    if net.bernoulli:
        recon = F.binary_cross_entropy_with_logits(decoded, x, reduction="none").sum(1).mean(-1)
        d_decoded = torch.sigmoid(decoded) - x
    else:
        recon = (x - decoded).pow(2).sum(1).mean(-1)
        d_decoded = 2.0 * (decoded - x)
    var = logvar.exp()
    kl_scale = torch.where(runs.kl_summed, float(batch), 1.0).to(x.dtype)
    kl = (0.5 * (mu.pow(2) + var - 1.0 - logvar).sum(1)).mean(-1) * kl_scale
    weighted_recon = (1 + alpha) * recon
    loss = weighted_recon + alpha * (kl - runs.delta) + runs.beta * kl
    terms = torch.stack([loss, recon, kl, weighted_recon, alpha * kl, alpha], dim=1)

    grads: list = [None] * len(net.shapes)
    d_recon = ((1 + alpha) / batch)[:, None, None]
    dz = _mlp_gradient(net.decoder, params, decoder_tape, d_decoded * d_recon, grads, input_gradient=True)
    d_kl = ((alpha + runs.beta) * kl_scale / batch)[:, None, None]
    d_mu = dz + d_kl * mu
    d_logvar = dz * eps * std * 0.5 + d_kl * 0.5 * (var - 1.0)
    _mlp_gradient(net.encoder, params, encoder_tape, torch.cat([d_mu, d_logvar], 1), grads, input_gradient=False)
    grads[net.alpha] = runs.gradient_sign * (recon + (kl - runs.delta))
    return terms, grads


def train_step(net: Net, runs: Runs, theta: torch.Tensor, adam_m: torch.Tensor, adam_v: torch.Tensor,
               x: torch.Tensor, eps: torch.Tensor, step_size: torch.Tensor, bias_correction2_sqrt: torch.Tensor):
    """One minibatch step of every run: returns the new (theta, adam_m, adam_v) and the terms.

    The update is torch.optim.Adam's (or SGD's) arithmetic, in the same order, on the flat buffer;
    ``step_size`` is -lr / (1 - beta1^t) and ``bias_correction2_sqrt`` sqrt(1 - beta2^t) (Adam)."""
    n_runs = x.shape[0]
    params = unflatten(theta, net, n_runs)
    terms, grads = _terms_and_gradients(net, runs, params, x, eps)
    grad = torch.cat([g.reshape(-1) for g in grads])
    if net.optimizer == "adam":
        adam_m = torch.lerp(adam_m, grad, 1 - ADAM_BETAS[0])
        adam_v = torch.addcmul(adam_v * ADAM_BETAS[1], grad, grad, value=1 - ADAM_BETAS[1])
        theta = theta + step_size * adam_m / (adam_v.sqrt() / bias_correction2_sqrt + ADAM_EPS)
    else:
        theta = theta.add(grad, alpha=-net.lr)
    alpha_before, alpha = params[net.alpha], theta[-n_runs:]
    constrained = alpha
    for i, rule in enumerate(net.rules):
        constrained = torch.where(runs.rule_masks[i], constrain_alpha(rule, alpha, alpha_before), constrained)
    return torch.cat([theta[:-n_runs], constrained]), adam_m, adam_v, terms


def adam_schedule(lr: float, steps: int, dtype: torch.dtype, device: torch.device):
    """Adam's per-step scalars for t = 1..steps, computed in double precision as torch.optim.Adam
    does, then rounded to the parameters' dtype as its kernels round them."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    step_size = -lr / (1 - ADAM_BETAS[0] ** t)
    bias_correction2_sqrt = (1 - ADAM_BETAS[1] ** t) ** 0.5
    return step_size.to(dtype).to(device), bias_correction2_sqrt.to(dtype).to(device)


def torch_epoch(net: Net, runs: Runs, state: list[torch.Tensor], x: torch.Tensor, order: torch.Tensor,
                eps: torch.Tensor, sizes: list[int], step_size: torch.Tensor,
                bias_correction2_sqrt: torch.Tensor) -> torch.Tensor:
    """One epoch of every run with PyTorch operations (any device): updates ``state`` (parameters,
    Adam's two moments) and returns the terms of every step, (steps, runs, len(COLUMNS))."""
    xs = x[order].transpose(1, 2).contiguous()  # (runs, features, n): each minibatch is a slice
    eps = eps.transpose(1, 2).contiguous()
    records, first = [], 0
    for k, size in enumerate(sizes):
        *new_state, terms = train_step(net, runs, *state, xs[..., first:first + size], eps[..., first:first + size],
                                       step_size[k], bias_correction2_sqrt[k])
        state[:] = new_state
        records.append(terms)
        first += size
    return torch.stack(records)

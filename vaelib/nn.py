"""Building blocks shared by the models: activations and multi-layer perceptrons."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelib import _checks


class ParametricTanh(nn.Module):
    """a * tanh(b * x) with learnable scalars a and b (Ko & Ko's "parametric tanh").

    A learnable amplitude lets a tanh layer reach outputs beyond [-1, 1]; a learnable slope lets
    it choose how linear it is near zero. One (a, b) pair per layer, shared by its units.
    """

    def __init__(self, a: float = 1.0, b: float = 1.0):
        super().__init__()
        _checks.finite_float("a", a)
        _checks.finite_float("b", b)
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.tanh(self.b * x)

    def extra_repr(self) -> str:
        return f"a={self.a.item():.3g}, b={self.b.item():.3g}"


ACTIVATIONS = {
    "ptanh": ParametricTanh,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name: one of ``ACTIVATIONS``."""
    _checks.one_of("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], activation_name: str = "ptanh", final_activation: str | None = None) -> nn.Sequential:
    """Linear layers of the given sizes with an activation between them.

    ``mlp([3, 32, 4])`` is Linear(3, 32) -> activation -> Linear(32, 4). ``final_activation``
    (a name, or None) is applied after the last layer.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size, got {sizes}")
    for i, s in enumerate(sizes):
        _checks.positive_int(f"sizes[{i}]", s)
    _checks.one_of("activation_name", activation_name, ACTIVATIONS)
    if final_activation is not None:
        _checks.one_of("final_activation", final_activation, ACTIVATIONS)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation(activation_name))
    if final_activation is not None:
        layers.append(activation(final_activation))
    return nn.Sequential(*layers)


class TiedLinear(nn.Module):
    """A linear layer that reuses the transposed weight of another: y = x W + b.

    ``TiedLinear(source)``, with ``source = nn.Linear(d_in, d_out)`` of weight W (d_out, d_in) that
    computes x Wᵀ + c, maps d_out features back to d_in. It holds the *same* parameter W, not a
    copy, plus a bias of its own, so a decoder built from tied layers adds only biases: this is how
    a tied autoencoder halves its weights. Gradients from both uses of W add up in W.grad. (In a
    state dict W appears under both layers' names with the same values; ``parameter_count`` and
    ``Module.parameters`` count it once.)
    """

    def __init__(self, source: nn.Linear, bias: bool = True):
        super().__init__()
        if not isinstance(source, nn.Linear):
            raise TypeError(f"source must be a torch.nn.Linear, got {type(source).__name__}")
        self.weight = source.weight
        self.in_features, self.out_features = source.out_features, source.in_features
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight.t(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def parameter_count(module: nn.Module) -> int:
    """The number of trainable scalars in ``module``, a shared (tied) parameter counted once."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def corrupt(x: torch.Tensor, noise_std: float = 0.0, mask_prob: float = 0.0,
            generator: torch.Generator | None = None, *, uniform: torch.Tensor | None = None,
            normal: torch.Tensor | None = None) -> torch.Tensor:
    """A corrupted copy of x: additive Gaussian noise, masking noise, or both (masking first).

    Masking noise sets each entry to 0 with probability ``mask_prob`` (Vincent et al., 2008);
    Gaussian noise adds N(0, noise_std²) to every entry. A denoising autoencoder sees this copy and
    is trained to reconstruct the clean x. ``generator`` makes the corruption reproducible.

    The random numbers are drawn in this order: ``rand(x.shape)`` for the mask (entry kept where it
    is >= mask_prob), then ``randn(x.shape)`` for the Gaussian noise, each only when its kind is on.
    A caller that has drawn them already (from generators of its own) passes them as ``uniform`` and
    ``normal`` (shape of x); nothing is drawn then.
    """
    _checks.non_negative_float("noise_std", noise_std)
    _checks.non_negative_float("mask_prob", mask_prob)
    if mask_prob >= 1:
        raise ValueError(f"mask_prob must be < 1 (1 would erase every input), got {mask_prob}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    for name, given in (("uniform", uniform), ("normal", normal)):
        if given is not None and given.shape != x.shape:
            raise ValueError(f"{name} must have the shape of x, {tuple(x.shape)}, got {tuple(given.shape)}")
    out = x
    if mask_prob > 0:
        if uniform is None:
            uniform = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        out = out * (uniform >= mask_prob)
    if noise_std > 0:
        if normal is None:
            normal = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        out = out + noise_std * normal
    return out

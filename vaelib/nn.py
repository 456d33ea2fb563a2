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
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation(activation_name))
    if final_activation is not None:
        layers.append(activation(final_activation))
    return nn.Sequential(*layers)

"""The contractive autoencoder (Rifai et al., 2011): a code that changes little when the input does."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelib import _checks
from vaelib.losses import jacobian_penalty, sigmoid_jacobian_penalty
from vaelib.models.base import ModelOutput, register_model
from vaelib.nn import ACTIVATIONS, mlp


@register_model
class ContractiveAutoencoder(nn.Module):
    """x -> z = f_e(x) -> x_hat = f_d(z), whose forward also returns ||J_f_e(x)||_F^2 per point.

    The encoder is ``mlp([in_dim, *hidden, code_dim])`` with ``activation`` after every layer, the
    last one included, so the code is bounded like the hidden units (sigmoid: z in (0, 1)); the
    decoder mirrors the hidden layers and ends linear. With ``hidden=()`` this is Rifai et al.'s
    one-layer encoder and the architecture of ``vaelib.SparseAutoencoder`` (same weights from the
    same seed). ``out.contraction`` holds the squared Frobenius norm of the encoder's Jacobian at
    every input, in closed form for one sigmoid layer (``vaelib.losses.sigmoid_jacobian_penalty``)
    and by automatic differentiation otherwise (``vaelib.losses.jacobian_penalty``);
    ``vaelib.ContractiveReconstruction`` adds it to the loss with a weight. The model computes it
    because an objective sees only the model's output, not its encoder.
    """

    def __init__(self, in_dim: int, code_dim: int = 128, hidden: Sequence[int] = (),
                 activation: str = "sigmoid"):
        super().__init__()
        _checks.positive_int("in_dim", in_dim)
        _checks.positive_int("code_dim", code_dim)
        hidden = _checks.positive_int_sequence("hidden", hidden)
        _checks.one_of("activation", activation, ACTIVATIONS)
        self.in_dim, self.code_dim = in_dim, code_dim
        self.activation = activation
        self.encoder = mlp([in_dim, *hidden, code_dim], activation, final_activation=activation)
        self.decoder = mlp([code_dim, *reversed(list(hidden)), in_dim], activation)
        self.closed_form = not hidden and activation == "sigmoid"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _checks.model_input("x", x, self.in_dim)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        _checks.model_input("z", z, self.code_dim)
        return self.decoder(z)

    def contraction(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """||J_f_e(x_i)||_F^2 for every row of x (``z``: its code, if already computed)."""
        if self.closed_form:
            return sigmoid_jacobian_penalty(self.encode(x) if z is None else z, self.encoder[0].weight)  # type: ignore[arg-type]
        return jacobian_penalty(self.encoder, x)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        return ModelOutput(recon=self.decoder(z), z=z, contraction=self.contraction(x, z))

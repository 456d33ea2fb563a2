"""The deterministic autoencoder: x -> code -> reconstruction."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vaelib import _checks
from vaelib.checkpoint import rebuildable
from vaelib.nn import ACTIVATIONS, mlp


@dataclass
class ModelOutput:
    """What a model's forward pass hands to an objective.

    ``recon`` is the reconstruction on the data scale (or the decoder's logits when
    ``recon_is_logits``); ``z`` is the code that was decoded. VAEs also fill ``mu`` and ``logvar``.
    """

    recon: torch.Tensor
    z: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    recon_is_logits: bool = False


@rebuildable
class Autoencoder(nn.Module):
    """An MLP encoder f_e and decoder f_d with x_hat = f_d(f_e(x)) (Ko & Ko, eq. 1).

    ``hidden`` lists the hidden layer sizes of the encoder; the decoder mirrors them.
    """

    def __init__(self, in_dim: int, latent_dim: int = 2, hidden: Sequence[int] = (32,),
                 activation: str = "ptanh"):
        super().__init__()
        _checks.positive_int("in_dim", in_dim)
        _checks.positive_int("latent_dim", latent_dim)
        hidden = _checks.positive_int_sequence("hidden", hidden)
        _checks.one_of("activation", activation, ACTIVATIONS)
        self.in_dim, self.latent_dim = in_dim, latent_dim
        self.encoder = mlp([in_dim, *hidden, latent_dim], activation)
        self.decoder = mlp([latent_dim, *reversed(list(hidden)), in_dim], activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _checks.data_matrix("x", x, self.in_dim)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        _checks.data_matrix("z", z, self.latent_dim)
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        return ModelOutput(recon=self.decoder(z), z=z)

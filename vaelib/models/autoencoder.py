"""The deterministic autoencoder: x -> code -> reconstruction."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelib import _checks
from vaelib.models.base import ModelOutput, register_model
from vaelib.nn import ACTIVATIONS, mlp

DECODERS = ("gaussian", "bernoulli")


@register_model
class Autoencoder(nn.Module):
    """An MLP encoder f_e and decoder f_d with x_hat = f_d(f_e(x)) (Ko & Ko, eq. 1).

    ``hidden`` lists the hidden layer sizes of the encoder; the decoder mirrors them.
    ``decoder="gaussian"`` (the default): the decoder outputs x_hat itself, scored by squared error.
    ``decoder="bernoulli"``: it outputs logits of pixels in [0, 1], scored by the binary
    cross-entropy (``forward`` sets ``recon_is_logits``; ``decode`` returns probabilities), the loss
    of a VAE's Bernoulli decoder without the VAE's prior and noise.
    """

    def __init__(self, in_dim: int, latent_dim: int = 2, hidden: Sequence[int] = (32,),
                 activation: str = "ptanh", decoder: str = "gaussian"):
        super().__init__()
        _checks.positive_int("in_dim", in_dim)
        _checks.positive_int("latent_dim", latent_dim)
        hidden = _checks.positive_int_sequence("hidden", hidden)
        _checks.one_of("activation", activation, ACTIVATIONS)
        _checks.one_of("decoder", decoder, DECODERS)
        self.in_dim, self.latent_dim, self.decoder_kind = in_dim, latent_dim, decoder
        self.encoder = mlp([in_dim, *hidden, latent_dim], activation)
        self.decoder = mlp([latent_dim, *reversed(list(hidden)), in_dim], activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _checks.model_input("x", x, self.in_dim)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction of codes z (probabilities for the Bernoulli decoder)."""
        _checks.model_input("z", z, self.latent_dim)
        out = self.decoder(z)
        return torch.sigmoid(out) if self.decoder_kind == "bernoulli" else out

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        return ModelOutput(recon=self.decoder(z), z=z, recon_is_logits=self.decoder_kind == "bernoulli")

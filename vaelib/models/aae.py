"""The adversarial autoencoder's networks (Makhzani et al. 2016): a deterministic autoencoder with
a prior N(0, I) on its code.

The model is an autoencoder; what makes it adversarial is what it is trained with,
``vaelib.adversarial.AdversarialRegularizer``: a discriminator on the code pushes the aggregate
posterior q(z) (the codes of all the data) towards the prior, so that codes drawn from the prior
decode to data-like points (``sample``). Taught in the chapter "Conditional and adversarial
autoencoders".
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelib import _checks
from vaelib.models.base import ModelOutput, register_model
from vaelib.models.vae import DECODERS
from vaelib.nn import ACTIVATIONS, mlp


@register_model
class AAE(nn.Module):
    """An MLP encoder z = f_e(x) and decoder f_d(z) with the prior N(0, I) to sample codes from.

    ``hidden`` lists the encoder's hidden layer sizes; the decoder mirrors them. ``decoder`` as in
    ``vaelib.VAE``: ``"gaussian"`` outputs the mean of x (squared error), ``"bernoulli"`` pixel
    logits in ``forward`` and probabilities in ``decode`` and ``sample``.
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
        """The code z = f_e(x), shape (n, latent_dim)."""
        _checks.model_input("x", x, self.in_dim)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean of x given z (probabilities for the Bernoulli decoder)."""
        _checks.model_input("z", z, self.latent_dim)
        out = self.decoder(z)
        return torch.sigmoid(out) if self.decoder_kind == "bernoulli" else out

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        return ModelOutput(recon=self.decoder(z), z=z, recon_is_logits=self.decoder_kind == "bernoulli")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points decoded from z ~ N(0, I), the prior the regulariser matched the codes to."""
        _checks.positive_int("n", n)
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype,
                        device=p.device if generator is None else generator.device)
        return self.decode(z.to(p.device))

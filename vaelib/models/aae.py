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

from vaelib import _checks
from vaelib.models.base import ModelOutput, register_model
from vaelib.models.vae import LatentMLP


@register_model
class AAE(LatentMLP):
    """An MLP encoder z = f_e(x) and decoder f_d(z) with the prior N(0, I) to sample codes from.

    ``hidden`` lists the encoder's hidden layer sizes; the decoder mirrors them. ``decoder`` as in
    ``vaelib.VAE``: ``"gaussian"`` outputs the mean of x (squared error), ``"bernoulli"`` pixel
    logits in ``forward`` and probabilities in ``decode`` and ``sample``.
    """

    def __init__(self, in_dim: int, latent_dim: int = 2, hidden: Sequence[int] = (32,),
                 activation: str = "ptanh", decoder: str = "gaussian"):
        super().__init__(in_dim, latent_dim, hidden, activation, decoder, code_width=latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code z = f_e(x), shape (n, latent_dim)."""
        _checks.model_input("x", x, self.in_dim)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        return ModelOutput(recon=self.decoder(z), z=z, recon_is_logits=self.decoder_kind == "bernoulli")

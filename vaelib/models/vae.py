"""The variational autoencoder (Kingma & Welling, 2014) with a diagonal Gaussian encoder."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelib import _checks
from vaelib.models.autoencoder import DECODERS
from vaelib.models.base import STANDARD_NORMAL_PRIOR, ModelOutput, register_model
from vaelib.nn import ACTIVATIONS, mlp


class LatentMLP(nn.Module):
    """What the VAE and the adversarial autoencoder share: an MLP encoder to ``code_width`` outputs,
    an MLP decoder from a ``latent_dim`` code, a Gaussian or Bernoulli decoder, and samples decoded
    from the prior N(0, I). ``hidden`` lists the encoder's hidden sizes; the decoder mirrors them."""

    def __init__(self, in_dim: int, latent_dim: int, hidden: Sequence[int], activation: str, decoder: str,
                 code_width: int):
        super().__init__()
        _checks.positive_int("in_dim", in_dim)
        _checks.positive_int("latent_dim", latent_dim)
        hidden = _checks.positive_int_sequence("hidden", hidden)
        _checks.one_of("activation", activation, ACTIVATIONS)
        _checks.one_of("decoder", decoder, DECODERS)
        self.in_dim, self.latent_dim, self.decoder_kind = in_dim, latent_dim, decoder
        self.encoder = mlp([in_dim, *hidden, code_width], activation)
        self.decoder = mlp([latent_dim, *reversed(list(hidden)), in_dim], activation)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean of x given z (probabilities for the Bernoulli decoder)."""
        _checks.model_input("z", z, self.latent_dim)
        out = self.decoder(z)
        return torch.sigmoid(out) if self.decoder_kind == "bernoulli" else out

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points decoded from z ~ N(0, I): the generative model's samples (decoder means)."""
        _checks.positive_int("n", n)
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype,
                        device=p.device if generator is None else generator.device)
        return self.decode(z.to(p.device))


@register_model
class VAE(LatentMLP):
    """Encoder q(z|x) = N(mu(x), diag(exp(logvar(x)))), prior N(0, I), and a decoder p(x|z).

    ``decoder="gaussian"``: the decoder outputs the mean of x (trained with squared error).
    ``decoder="bernoulli"``: it outputs logits of independent pixels in [0, 1] (binary cross-entropy);
    ``decode`` then returns probabilities and ``forward`` returns logits with ``recon_is_logits``.
    """

    prior = STANDARD_NORMAL_PRIOR  # an unconditional latent-variable model (vaelib.models.base)

    def __init__(self, in_dim: int, latent_dim: int = 2, hidden: Sequence[int] = (32,),
                 activation: str = "ptanh", decoder: str = "gaussian"):
        super().__init__(in_dim, latent_dim, hidden, activation, decoder, code_width=2 * latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-variance, each of shape (n, latent_dim)."""
        _checks.model_input("x", x, self.in_dim)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): a sample that gradients can flow through.

        ``noise`` is eps when the caller draws it (from a generator of its own); by default it is
        drawn here from PyTorch's global generator."""
        if noise is None:
            noise = torch.randn_like(mu)
        elif noise.shape != mu.shape:
            raise ValueError(f"noise must have the shape of the code, {tuple(mu.shape)}, got {tuple(noise.shape)}")
        return mu + torch.exp(0.5 * logvar) * noise

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        """Encode, draw z = mu + sigma * noise (noise ~ N(0, I) of shape (len(x), latent_dim),
        drawn here unless given), decode."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, noise)
        return ModelOutput(recon=self.decoder(z), z=z, mu=mu, logvar=logvar,
                           recon_is_logits=self.decoder_kind == "bernoulli")

"""The denoising autoencoder: it sees a corrupted input and is scored on the clean one."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from vaelib import _checks
from vaelib.models.autoencoder import Autoencoder
from vaelib.models.base import ModelOutput, register_model
from vaelib.nn import corrupt


@register_model
class DenoisingAutoencoder(Autoencoder):
    """An ``Autoencoder`` that corrupts its input in training mode (Vincent et al., 2008).

    In training mode (``model.train()``, the default) ``forward(x)`` encodes ``corrupt(x)``; the
    objective still compares the reconstruction with the clean x it was given, so
    ``vaelib.fit(model, vaelib.Reconstruction(), x)`` minimises L(x, g(f(x̃))). In evaluation mode
    (``model.eval()``) the input passes unchanged, like dropout: corrupt test inputs yourself with
    ``vaelib.nn.corrupt`` to measure denoising. The corruption lives in the model, not in the
    objective, because the trainer hands the objective an output computed from the batch it holds.
    """

    def __init__(self, in_dim: int, latent_dim: int = 2, hidden: Sequence[int] = (32,),
                 activation: str = "ptanh", noise_std: float = 0.0, mask_prob: float = 0.0):
        super().__init__(in_dim, latent_dim, hidden, activation)
        self.noise_std = _checks.non_negative_float("noise_std", noise_std)
        self.mask_prob = _checks.non_negative_float("mask_prob", mask_prob)
        if self.mask_prob >= 1:
            raise ValueError(f"mask_prob must be < 1 (1 would erase every input), got {mask_prob}")
        if self.noise_std == 0 and self.mask_prob == 0:
            raise ValueError("a denoising autoencoder needs some corruption: set noise_std > 0 or "
                             "mask_prob > 0 (with neither it is a plain vaelib.Autoencoder)")

    def random_draws(self) -> tuple[tuple[str, str, int], ...]:
        """What ``forward`` draws in training mode, in the order ``vaelib.nn.corrupt`` draws it, as
        (keyword of forward, distribution, width per point): the mask's uniform numbers, then the
        Gaussian noise, each when its kind of corruption is on. A trainer that draws them itself, from
        a generator per run, hands them to ``forward`` (``vaelib.fit_batched`` does; see
        ``vaelib.models.base``)."""
        draws = []
        if self.mask_prob > 0:
            draws.append(("mask_uniform", "uniform", self.in_dim))
        if self.noise_std > 0:
            draws.append(("gaussian", "normal", self.in_dim))
        return tuple(draws)

    def forward(self, x: torch.Tensor, mask_uniform: torch.Tensor | None = None,
                gaussian: torch.Tensor | None = None) -> ModelOutput:
        """In training mode, encode ``corrupt(x)``: with the numbers ``mask_uniform`` and ``gaussian``
        (shape of x) when given, else drawn here from PyTorch's global generator."""
        _checks.model_input("x", x, self.in_dim)
        if self.training:
            needed = [keyword for keyword, _, _ in self.random_draws()]
            given = {"mask_uniform": mask_uniform, "gaussian": gaussian}
            if _checks.inside_transform(x) and any(given[keyword] is None for keyword in needed):
                raise ValueError("a DenoisingAutoencoder inside a torch.func transform needs its corruption's "
                                 f"random numbers passed in ({', '.join(needed)}); vaelib.fit_batched passes them")
            seen = corrupt(x, self.noise_std, self.mask_prob, uniform=mask_uniform, normal=gaussian)
        else:
            seen = x
        z = self.encode(seen)
        return ModelOutput(recon=self.decoder(z), z=z)

    def extra_repr(self) -> str:
        return f"noise_std={self.noise_std}, mask_prob={self.mask_prob}"

"""The tied autoencoder: the decoder reuses the encoder's weight matrices, transposed."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vaelib.models.autoencoder import Autoencoder
from vaelib.models.base import register_model
from vaelib.nn import TiedLinear, activation as make_activation


@register_model
class TiedAutoencoder(Autoencoder):
    """An MLP autoencoder whose decoder layer k uses Wᵀ of the mirrored encoder layer.

    The encoder is that of ``Autoencoder`` with the same arguments (and, for the same seed, the same
    initial weights); the decoder holds only biases and activations of its own. A symmetric network
    with shared weights has about half the parameters, a constraint that acts as a regulariser and,
    for a linear network, ties the decoder to the encoder's subspace as in PCA.
    """

    def __init__(self, in_dim: int, latent_dim: int = 2, hidden: Sequence[int] = (32,),
                 activation: str = "ptanh"):
        super().__init__(in_dim, latent_dim, hidden, activation)
        self.decoder = tied_decoder(self.encoder, activation)


def tied_decoder(encoder: nn.Sequential, activation: str) -> nn.Sequential:
    """The mirror image of an MLP encoder built from ``TiedLinear`` layers.

    Encoder Linear layers L_1, ..., L_m become TiedLinear(L_m), act, ..., act, TiedLinear(L_1): an
    activation between layers, none after the last, as in ``vaelib.nn.mlp``.
    """
    linears = [m for m in encoder if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("encoder holds no nn.Linear layer to tie a decoder to")
    layers: list[nn.Module] = []
    for i, linear in enumerate(reversed(linears)):
        layers.append(TiedLinear(linear))
        if i < len(linears) - 1:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)

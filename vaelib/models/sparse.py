"""The sparse autoencoder's architecture: one hidden layer, possibly wider than the input."""
from __future__ import annotations

import torch
from torch import nn

from vaelib import _checks
from vaelib.models.base import ModelOutput, register_model
from vaelib.nn import ACTIVATIONS, activation as make_activation


@register_model
class SparseAutoencoder(nn.Module):
    """x -> h = act(W x + b) -> x_hat = V h + c, with h of any size (over-complete allowed).

    The code ``z`` of the output *is* the hidden activation h, so a sparsity objective
    (``vaelib.objectives.SparseReconstruction``) penalises it directly. Sigmoid units (the default)
    keep h in (0, 1), which the KL sparsity penalty needs: it reads the mean of h_j over a batch as
    unit j's firing rate. Without a penalty a hidden layer wider than the input can learn to copy.
    """

    def __init__(self, in_dim: int, code_dim: int = 128, activation: str = "sigmoid"):
        super().__init__()
        _checks.positive_int("in_dim", in_dim)
        _checks.positive_int("code_dim", code_dim)
        _checks.one_of("activation", activation, ACTIVATIONS)
        self.in_dim, self.code_dim = in_dim, code_dim
        self.encoder = nn.Sequential(nn.Linear(in_dim, code_dim), make_activation(activation))
        self.decoder = nn.Linear(code_dim, in_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _checks.model_input("x", x, self.in_dim)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        _checks.model_input("z", z, self.code_dim)
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.encode(x)
        return ModelOutput(recon=self.decoder(h), z=h)

    @property
    def atoms(self) -> torch.Tensor:
        """The decoder's weights, one row per hidden unit: shape (code_dim, in_dim).

        Row j is the image that unit j adds to the reconstruction per unit of activation, so a
        reconstruction is the decoder bias plus the atoms weighted by the code. Shown as images,
        the atoms are the "dictionary" the code is written in; with a sparse code a few atoms
        make up each input.
        """
        return self.decoder.weight.detach().T

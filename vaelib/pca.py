"""Principal component analysis: the linear baseline every autoencoder is measured against.

Bourlard & Kamp (1988) showed that a linear autoencoder trained with squared error learns the
same subspace as PCA, so PCA's reconstruction error is what a linear code of size k can reach.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelib import _checks


@dataclass
class PCA:
    """A fitted PCA: the data mean, the top-k principal directions (k, d) and all variances."""

    mean: torch.Tensor
    components: torch.Tensor
    explained_variance: torch.Tensor

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.components.T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.components + self.mean

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def fit_pca(x: torch.Tensor, k: int) -> PCA:
    """PCA of the rows of x with k components (population covariance, divisor n)."""
    x = _checks.data_matrix("x", x)
    _checks.positive_int("k", k)
    if k > x.shape[1]:
        raise ValueError(f"k must be at most the number of features ({x.shape[1]}), got {k}")
    x64 = x.double()
    mean = x64.mean(dim=0)
    _, s, vh = torch.linalg.svd(x64 - mean, full_matrices=False)
    variances = s.pow(2) / x.shape[0]
    return PCA(mean=mean.to(x.dtype), components=vh[:k].to(x.dtype), explained_variance=variances.to(x.dtype))

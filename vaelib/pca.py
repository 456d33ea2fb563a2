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
        _checks.data_matrix("x", x, self.components.shape[1])
        return (x - self.mean) @ self.components.T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        _checks.data_matrix("z", z, self.components.shape[0])
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


@dataclass
class PPCA:
    """A fitted probabilistic PCA (Tipping & Bishop, 1999): x = W z + mean + noise.

    z ~ N(0, I_k) and noise ~ N(0, noise_variance · I_d), so x ~ N(mean, W Wᵀ + noise_variance · I).
    ``weight`` has shape (d, k). It is the linear-Gaussian model whose likelihood is known exactly,
    which makes it the yardstick for the likelihood estimators in ``vaelib.estimators``.
    """

    mean: torch.Tensor
    weight: torch.Tensor
    noise_variance: float

    @property
    def covariance(self) -> torch.Tensor:
        """The marginal covariance W Wᵀ + noise_variance · I of x, shape (d, d)."""
        eye = torch.eye(self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device)
        return self.weight @ self.weight.T + self.noise_variance * eye


def fit_ppca(x: torch.Tensor, k: int) -> PPCA:
    """Maximum-likelihood probabilistic PCA with a k-dimensional latent, in closed form.

    With the eigenvalues lambda_1 >= ... >= lambda_d of the sample covariance (divisor n) and the
    top-k eigenvectors U_k, the maximum is at noise_variance = the mean of the d - k discarded
    eigenvalues and W = U_k (Lambda_k - noise_variance · I)^(1/2) (Tipping & Bishop, 1999, taking
    the rotation R = I). W's columns are then orthogonal, so the exact posterior of z is diagonal.
    k must be smaller than d: with k = d the noise variance would be zero and the density singular.
    """
    x = _checks.data_matrix("x", x)
    _checks.positive_int("k", k)
    if k >= x.shape[1]:
        raise ValueError(f"k must be smaller than the number of features ({x.shape[1]}), got {k}: "
                         "pPCA needs at least one discarded direction to estimate the noise variance")
    pca = fit_pca(x.double(), k)
    missing = x.shape[1] - len(pca.explained_variance)  # n < d: the covariance has d - n zero eigenvalues
    eigenvalues = torch.cat([pca.explained_variance, pca.explained_variance.new_zeros(missing)])
    noise_variance = eigenvalues[k:].mean()
    if noise_variance <= 1e-10 * eigenvalues[0]:  # zero up to rounding
        raise ValueError(f"the data lie in a subspace of dimension <= k = {k}: the discarded variance is "
                         "zero, so pPCA's noise variance would be zero; use a smaller k or add noise")
    weight = pca.components.T * (eigenvalues[:k] - noise_variance).clamp(min=0).sqrt()
    return PPCA(mean=pca.mean.to(x.dtype), weight=weight.to(x.dtype), noise_variance=float(noise_variance))


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The principal angles, in degrees and ascending, between the column spaces of a (d, p) and b (d, q).

    Why: two bases of one subspace can look nothing alike (a linear autoencoder's decoder against
    PCA's directions), so "the same subspace" is checked by these angles, all zero when the spaces
    agree. There are min(p, q) of them; each column set must have full rank. Computed in float64
    as Knyazev & Argentati (2002) do (and ``scipy.linalg.subspace_angles``): cosines for the large
    angles, sines for the small ones, which the cosine alone resolves only to about 1e-6 degrees.
    """
    qa, qb = _orthonormal_basis("a", a), _orthonormal_basis("b", b)
    if qa.shape[0] != qb.shape[0]:
        raise ValueError(f"a and b must have the same number of rows (the dimension of the space), "
                         f"got a of shape {tuple(a.shape)} and b of shape {tuple(b.shape)}")
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa  # the sine formula below needs the wider basis first
    angles = torch.arccos(torch.linalg.svdvals(qa.T @ qb).clamp(max=1.0))  # descending cosines
    sines = torch.linalg.svdvals(qb - qa @ (qa.T @ qb)).clamp(max=1.0).flip(0)  # now ascending
    small = angles < torch.pi / 4  # where the sine is the better-conditioned of the two
    angles[small] = torch.arcsin(sines[small])
    return torch.rad2deg(angles)


def _orthonormal_basis(name: str, matrix: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (float64) of the column space of a full-rank (d, p) matrix, p <= d."""
    if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2 or not matrix.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor of shape (d, p) whose columns span "
                         f"the subspace, got {type(matrix).__name__} {tuple(getattr(matrix, 'shape', ()))}")
    rows, columns = matrix.shape
    if columns == 0 or columns > rows:
        raise ValueError(f"{name} has shape {tuple(matrix.shape)}: it needs 1 to d columns in d rows; "
                         "pass the basis vectors as columns (transpose PCA's components)")
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    u, s, _ = torch.linalg.svd(matrix.double(), full_matrices=False)
    if s[-1] <= s[0] * max(rows, columns) * torch.finfo(torch.float64).eps:
        raise ValueError(f"the columns of {name} are linearly dependent (rank < {columns}): they do not "
                         "span a subspace of that dimension")
    return u

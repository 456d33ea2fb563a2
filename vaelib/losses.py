"""Loss terms. Each returns a per-point tensor of shape (n,) or its mean: a scalar.

Convention (Ko & Ko, eq. 5): the reconstruction error of a data set Z with reconstruction Z~ is
(1/n)·||Z - Z~||_F^2: squared error summed over the features of a point, averaged over points.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}; "
                         "a silent broadcast here would compute the wrong error")


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """||x_i - x_hat_i||^2 for every point i: shape (..., n) from inputs (..., n, d)."""
    _same_shape(x, x_hat, "x and x_hat")
    return (x - x_hat).pow(2).sum(dim=-1)


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """(1/n)·||X - X_hat||_F^2: squared error summed over features, averaged over the n points."""
    return squared_error(x, x_hat).mean(dim=-1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x | logits) under independent Bernoulli pixels, summed over features: shape (..., n).

    Takes logits (not probabilities) for numerical stability; x may be any value in [0, 1].
    """
    _same_shape(logits, x, "logits and x")
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=-1)


def binary_cross_entropy(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over points of ``bernoulli_nll``: the Bernoulli decoder's reconstruction term."""
    return bernoulli_nll(logits, x).mean(dim=-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form, per point: shape (..., n).

    0.5 · sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j), summed over the latent dimensions.
    """
    _same_shape(mu, logvar, "mu and logvar")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor | float) -> torch.Tensor:
    """log N(x; mean, diag(exp(logvar))), summed over the last dimension: shape (..., n)."""
    _same_shape(x, mean, "x and mean")
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device).expand_as(x)
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean).pow(2) / logvar.exp()).sum(dim=-1)


def l1_activity(h: torch.Tensor) -> torch.Tensor:
    """Mean over points of sum_j |h_j|: the L1 sparsity penalty on hidden activations."""
    return h.abs().sum(dim=-1).mean(dim=-1)


def kl_sparsity(h: torch.Tensor, rho: float) -> torch.Tensor:
    """sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), rho_hat_j the mean activation of unit j.

    h must lie in (0, 1) (e.g. sigmoid units); rho is the target firing rate.
    """
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 < rho < 1:
        raise ValueError(f"rho must lie strictly between 0 and 1, got {rho}")
    rho_hat = h.mean(dim=-2).clamp(1e-6, 1 - 1e-6)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum(dim=-1)


def encoder_jacobian(encode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The Jacobian dz/dx of ``encode`` at every row of x: shape (n, k, d).

    ``encode`` maps rows to rows, each row on its own ((n, d) -> (n, k); no batch statistics), so
    the gradient of sum_i z_ij with respect to x holds dz_j/dx at every row at once: k
    vector-Jacobian products (``torch.func.jacrev``) give every row's Jacobian. Differentiable in
    the encoder's weights, in ``vaelib.fit`` and inside ``fit_batched``'s vmap.
    """
    return torch.func.jacrev(lambda rows: encode(rows).sum(dim=0))(x).movedim(0, -2)


def jacobian_penalty(encode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """||J(x_i)||_F^2 = sum_{j,l} (dz_j/dx_l)^2 at every row x_i of x, for any encoder: shape (n,).

    The contractive autoencoder's penalty (Rifai et al., 2011), from ``encoder_jacobian``;
    ``sigmoid_jacobian_penalty`` is its closed form for one sigmoid layer.
    """
    return encoder_jacobian(encode, x).pow(2).sum(dim=(-2, -1))


def sigmoid_jacobian_penalty(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``jacobian_penalty`` of one sigmoid layer z = sigmoid(W x + b), in closed form: shape (n,).

    dz_j/dx = z_j (1 - z_j) W_j (W_j the j-th row of W, shape (k, d)), so
    ||J(x)||_F^2 = sum_j (z_j (1 - z_j))^2 ||W_j||^2: one matrix product instead of k backward
    passes (Rifai et al., 2011).

    A weight with a leading run axis, (R, k, d), is R layers: z's rows are then R blocks, block r
    from layer r (how ``vaelib.fit_batched`` computes many runs' layers at once).
    """
    if z.shape[-1] != weight.shape[-2]:
        raise ValueError(f"z has {z.shape[-1]} units but weight has {weight.shape[-2]} rows; pass the "
                         "encoder layer's weight W of shape (code units, inputs)")
    squared_norms = weight.pow(2).sum(dim=-1)
    if weight.dim() == 3:
        runs = weight.shape[0]
        blocks = (z * (1 - z)).pow(2).reshape(runs, -1, z.shape[-1])
        return torch.bmm(blocks, squared_norms.unsqueeze(-1)).reshape(z.shape[:-1])
    return (z * (1 - z)).pow(2) @ squared_norms

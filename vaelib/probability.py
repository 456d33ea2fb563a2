"""Probability tools for Part II: the quantities the ELBO is built from, small enough to check by hand.

* Discrete information measures: ``self_information``, ``entropy``, ``cross_entropy`` and
  ``kl_divergence`` of probability vectors, in nats (or bits with ``base=2``).
* Regression as likelihood: ``legendre_features``, ``fit_linear_regression`` (least squares and
  ridge in closed form) and ``fit_regression_numerically``, which minimises the negative log-likelihood
  (MLE) or the negative log-posterior with a Gaussian prior (MAP) by optimisation instead, so that
  a chapter can show that the two routes meet.
* The KL divergence of continuous densities: ``kl_on_grid`` and ``fit_gaussian_by_kl`` (fit one
  Gaussian to a 1-D density by forward or reverse KL), and ``gaussian_kl_monte_carlo``, a sampling
  estimate of the closed-form ``vaelib.losses.gaussian_kl``.
* ``expectation_gradient_samples``: single-sample gradient estimates of a Gaussian expectation, by the
  reparameterisation trick or the score function, to compare their variances.
* ``GaussianToyModel``: the latent-variable model z ~ N(0, 1), x | z ~ N(z, s^2), whose evidence,
  posterior and ELBO are all known in closed form.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vaelib import _checks
from vaelib.losses import gaussian_kl, gaussian_log_density

DIRECTIONS = ("forward", "reverse")
ESTIMATORS = ("reparameterisation", "score")
PROBABILITY_TOLERANCE = 1e-6


# --- discrete information measures -------------------------------------------------------------

def _probabilities(name: str, p) -> torch.Tensor:
    """A floating-point tensor of probability vectors along the last dimension."""
    p = torch.as_tensor(p, dtype=torch.float64) if not isinstance(p, torch.Tensor) else p
    if not p.is_floating_point():
        p = p.double()
    if p.dim() == 0 or p.shape[-1] == 0:
        raise ValueError(f"{name} must hold probability vectors along its last dimension, got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative probabilities; its smallest entry is {p.min().item()}")
    total = p.sum(dim=-1)
    worst = (total - 1).abs().max().item()
    if worst > PROBABILITY_TOLERANCE * p.shape[-1]:
        raise ValueError(f"each vector in {name} must sum to 1 along the last dimension; one sums to "
                         f"{total.flatten()[(total - 1).abs().flatten().argmax()].item():.6g}. "
                         "Normalise with p / p.sum(-1, keepdim=True)")
    return p


def _log_base(base: float) -> float:
    base = _checks.positive_float("base", base)
    if base == 1:
        raise ValueError("base must be > 0 and != 1 (e.g. math.e for nats, 2 for bits), got 1")
    return math.log(base)


def self_information(p, base: float = math.e) -> torch.Tensor:
    """-log p of each probability: the surprise of an outcome, large for rare outcomes.

    Shannon's measure: it is 0 for a certain outcome, and the information of independent outcomes
    adds up because their probabilities multiply. Any shape; entries must lie in [0, 1].
    """
    p = torch.as_tensor(p, dtype=torch.float64) if not isinstance(p, torch.Tensor) else p
    if not torch.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p must hold probabilities in [0, 1]; got values from {p.min().item()} to {p.max().item()}")
    return -torch.log(p) / _log_base(base)


def entropy(p, base: float = math.e) -> torch.Tensor:
    """H(p) = -sum_k p_k log p_k: the expected self-information of one draw from p.

    ``p`` holds probability vectors along its last dimension; returns one value per vector
    (0 log 0 counts as 0). In nats by default, in bits with ``base=2``.
    """
    p = _probabilities("p", p)
    return -torch.xlogy(p, p).sum(dim=-1) / _log_base(base)


def cross_entropy(p, q, base: float = math.e) -> torch.Tensor:
    """H(p, q) = -sum_k p_k log q_k: the expected surprise when outcomes from p are scored with q.

    Infinite when q gives probability 0 to an outcome that p can produce.
    """
    p, q = _probabilities("p", p), _probabilities("q", q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return -torch.xlogy(p, q).sum(dim=-1) / _log_base(base)


def kl_divergence(p, q, base: float = math.e) -> torch.Tensor:
    """KL(p || q) = H(p, q) - H(p): the extra surprise paid for scoring p's outcomes with q.

    Never negative (Gibbs' inequality), zero only when p = q, and not symmetric in p and q.
    """
    return cross_entropy(p, q, base) - entropy(p, base)


# --- regression as maximum likelihood and maximum a posteriori ---------------------------------

def legendre_features(x: torch.Tensor, degree: int) -> torch.Tensor:
    """The Legendre polynomials P_0(x), ..., P_degree(x) of inputs x in [-1, 1]: shape (n, degree + 1).

    A polynomial basis that, unlike the powers 1, x, x^2, ..., stays well conditioned at high
    degree, so that closed-form and numerical fits can be compared to many digits.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 1:
        raise ValueError(f"x must be a 1-D tensor of inputs, got {type(x).__name__} "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 0:
        raise ValueError(f"degree must be a non-negative int, got {degree!r}")
    if (x.abs() > 1).any():
        raise ValueError(f"x must lie in [-1, 1] (the Legendre polynomials' interval); got values up to "
                         f"{x.abs().max().item():.4g} in absolute value. Rescale x first")
    columns = [torch.ones_like(x), x]
    for k in range(1, degree):  # Bonnet's recursion: (k+1) P_{k+1} = (2k+1) x P_k - k P_{k-1}
        columns.append(((2 * k + 1) * x * columns[k] - k * columns[k - 1]) / (k + 1))
    return torch.stack(columns[:degree + 1], dim=1)


def _regression_inputs(features: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = _checks.data_matrix("features", features)
    if not isinstance(y, torch.Tensor) or y.shape != (features.shape[0],):
        raise ValueError(f"y must be a 1-D tensor with one target per row of features ({features.shape[0]}), "
                         f"got {tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    return features, y


def fit_linear_regression(features: torch.Tensor, y: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """The weights w minimising ||y - X w||^2 + ridge * ||w||^2, in closed form.

    ``ridge = 0`` is least squares (the MLE under Gaussian noise); ``ridge = sigma^2 / tau^2`` is the
    MAP estimate under Gaussian noise of standard deviation sigma and a N(0, tau^2 I) prior on w.
    Solves (X^T X + ridge I) w = X^T y in float64; returns w with the dtype of ``features``.
    """
    features, y = _regression_inputs(features, y)
    ridge = _checks.non_negative_float("ridge", ridge)
    x64, y64 = features.double(), y.double()
    gram = x64.T @ x64 + ridge * torch.eye(x64.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, x64.T @ y64).to(features.dtype)


def regression_neg_log_posterior(w: torch.Tensor, features: torch.Tensor, y: torch.Tensor, noise_std: float,
                                 prior_std: float | None = None) -> torch.Tensor:
    """-log p(y | X, w) - log p(w) in nats, with every constant included.

    The likelihood is y ~ N(X w, noise_std^2 I); the prior is N(0, prior_std^2 I), or none (a flat
    prior, i.e. the negative log-likelihood alone) when ``prior_std`` is None.
    """
    features, y = _regression_inputs(features, y)
    noise_std = _checks.positive_float("noise_std", noise_std)
    nll = -gaussian_log_density(y[None], (features @ w)[None], 2 * math.log(noise_std))[0]
    if prior_std is None:
        return nll
    prior_std = _checks.positive_float("prior_std", prior_std)
    return nll - gaussian_log_density(w[None], torch.zeros_like(w)[None], 2 * math.log(prior_std))[0]


def fit_regression_numerically(features: torch.Tensor, y: torch.Tensor, noise_std: float,
                               prior_std: float | None = None, max_iter: int = 500) -> torch.Tensor:
    """Minimise ``regression_neg_log_posterior`` over w with L-BFGS, starting from w = 0.

    The numerical counterpart of ``fit_linear_regression``: with ``prior_std=None`` it finds the
    MLE, with a prior the MAP estimate. Works in float64; returns w with the dtype of ``features``.
    """
    features, y = _regression_inputs(features, y)
    _checks.positive_int("max_iter", max_iter)
    x64, y64 = features.double(), y.double()
    w = torch.zeros(x64.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-14,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = regression_neg_log_posterior(w, x64, y64, noise_std, prior_std)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().to(features.dtype)


# --- the KL divergence of continuous densities ------------------------------------------------

def _grid(grid: torch.Tensor) -> torch.Tensor:
    if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or grid.numel() < 3:
        raise ValueError("grid must be a 1-D tensor of at least 3 increasing points, got "
                         f"{tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__}")
    if not (grid.diff() > 0).all():
        raise ValueError("grid must be strictly increasing")
    return grid.double()


def kl_on_grid(log_p: torch.Tensor, log_q: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = integral of p (log p - log q) for 1-D densities given as log-values on a grid.

    The trapezoidal rule on ``grid``; the grid must cover where p has its mass. Differentiable, so
    that a density can be fitted by minimising it.
    """
    grid = _grid(grid)
    if log_p.shape != grid.shape or log_q.shape != grid.shape:
        raise ValueError(f"log_p and log_q must have the grid's shape {tuple(grid.shape)}, got "
                         f"{tuple(log_p.shape)} and {tuple(log_q.shape)}")
    integrand = torch.where(log_p > -math.inf, log_p.exp() * (log_p - log_q), torch.zeros_like(log_p))
    return torch.trapezoid(integrand, grid)


@dataclass
class GaussianFit:
    """The Gaussian N(mean, std^2) that a KL fit found, and the KL divergence it reached (nats)."""

    mean: float
    std: float
    kl: float


def fit_gaussian_by_kl(target_log_density: torch.Tensor, grid: torch.Tensor, direction: str,
                       init_mean: float = 0.0, init_std: float = 1.0, max_iter: int = 200) -> GaussianFit:
    """Fit one Gaussian q to a 1-D target density p by minimising a KL divergence (L-BFGS).

    ``direction="forward"`` minimises KL(p || q): q must put mass wherever p has it (mode covering;
    the optimum matches p's mean and variance). ``direction="reverse"`` minimises KL(q || p): q is
    penalised for mass where p has little, so it can settle on one mode (mode seeking) -- the
    direction the ELBO uses. The reverse problem can have several local optima; which one the fit
    finds depends on ``init_mean`` and ``init_std``. ``target_log_density`` holds log p at the grid
    points, and the grid must cover where both p and q have their mass.
    """
    grid = _grid(grid)
    _checks.one_of("direction", direction, DIRECTIONS)
    _checks.finite_float("init_mean", init_mean)
    _checks.positive_float("init_std", init_std)
    _checks.positive_int("max_iter", max_iter)
    log_p = target_log_density.double()
    mean = torch.tensor(float(init_mean), dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor(math.log(init_std), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([mean, log_std], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def divergence() -> torch.Tensor:
        log_q = torch.distributions.Normal(mean, log_std.exp()).log_prob(grid)
        return kl_on_grid(log_p, log_q, grid) if direction == "forward" else kl_on_grid(log_q, log_p, grid)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = divergence()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        q_mass = torch.trapezoid(torch.distributions.Normal(mean, log_std.exp()).log_prob(grid).exp(), grid).item()
        if abs(q_mass - 1) > 1e-3:
            raise ValueError(f"the fitted Gaussian N({mean.item():.4g}, {log_std.exp().item():.4g}^2) has only "
                             f"{q_mass:.4f} of its mass on the grid [{grid[0].item():.4g}, {grid[-1].item():.4g}] "
                             "with its spacing; widen or refine the grid, or start closer to the target's mass")
        return GaussianFit(mean=mean.item(), std=log_std.exp().item(), kl=divergence().item())


def gaussian_kl_monte_carlo(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A sampling estimate of KL(N(mu, diag(exp(logvar))) || N(0, I)) and its standard error, per point.

    Averages log q(z) - log p(z) over ``n_samples`` draws z ~ q: the definition of the KL
    divergence as an expectation, with no closed form used. Returns ``(estimate, standard_error)``,
    each of shape (n,), to be compared with ``vaelib.losses.gaussian_kl``.
    """
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"mu and logvar must have the same shape (n, latent_dim), got {tuple(mu.shape)} "
                         f"and {tuple(logvar.shape)}")
    _checks.positive_int("n_samples", n_samples)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 to estimate a standard error, got {n_samples}")
    eps = torch.randn(n_samples, *mu.shape, generator=generator, dtype=mu.dtype)
    z = mu + (0.5 * logvar).exp() * eps
    log_ratio = gaussian_log_density(z, mu.expand_as(z), logvar.expand_as(z)) \
        - gaussian_log_density(z, torch.zeros_like(z), 0.0)
    return log_ratio.mean(dim=0), log_ratio.std(dim=0) / math.sqrt(n_samples)


# --- gradients of expectations ----------------------------------------------------------------

def expectation_gradient_samples(f: Callable[[torch.Tensor], torch.Tensor], mean: float, std: float,
                                 n_samples: int, estimator: str,
                                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_samples`` single-sample estimates of d/d(mean) E_{z ~ N(mean, std^2)}[f(z)].

    ``"reparameterisation"``: write z = mean + std * eps and differentiate f through it, f'(z).
    ``"score"``: f(z) * d/d(mean) log N(z; mean, std^2) = f(z) (z - mean) / std^2, which needs no
    derivative of f. Both are unbiased; their variances differ, and that decides how many samples
    (or how small a step) a stochastic gradient method needs. ``f`` maps a tensor elementwise.
    """
    _checks.finite_float("mean", mean)
    std = _checks.positive_float("std", std)
    _checks.positive_int("n_samples", n_samples)
    _checks.one_of("estimator", estimator, ESTIMATORS)
    eps = torch.randn(n_samples, generator=generator, dtype=torch.float64)
    if estimator == "score":
        z = mean + std * eps
        return f(z).detach() * (z - mean) / std**2
    mean_t = torch.full((n_samples,), float(mean), dtype=torch.float64, requires_grad=True)
    f(mean_t + std * eps).sum().backward()
    assert mean_t.grad is not None
    return mean_t.grad.detach()


# --- a latent-variable model with everything in closed form ------------------------------------

@dataclass
class GaussianToyModel:
    """z ~ N(0, 1) and x | z ~ N(z, noise_std^2): a one-dimensional latent-variable model.

    Its evidence p(x) = N(x; 0, 1 + noise_std^2) and its posterior p(z | x) are Gaussian and known,
    so the ELBO of any Gaussian q(z) = N(q_mean, exp(q_logvar)) can be set beside the exact
    log p(x) and the exact KL(q || p(z | x)). All methods take tensors that broadcast together.
    """

    noise_std: float = 0.5

    def __post_init__(self):
        self.noise_std = _checks.positive_float("noise_std", self.noise_std)

    @property
    def _noise_var(self) -> float:
        return self.noise_std**2

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; 0, 1 + noise_std^2)."""
        var = 1.0 + self._noise_var
        return -0.5 * (math.log(2 * math.pi * var) + x**2 / var)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean x / (1 + s^2) and log-variance log(s^2 / (1 + s^2))."""
        var = self._noise_var / (1.0 + self._noise_var)
        return x / (1.0 + self._noise_var), torch.full_like(x, math.log(var))

    def elbo(self, x: torch.Tensor, q_mean: torch.Tensor, q_logvar: torch.Tensor) -> torch.Tensor:
        """E_q[log p(x | z)] - KL(q || p(z)), both terms in closed form."""
        q_mean, q_logvar = torch.broadcast_tensors(q_mean, q_logvar)
        expected_log_lik = -0.5 * (math.log(2 * math.pi * self._noise_var)
                                   + ((x - q_mean)**2 + q_logvar.exp()) / self._noise_var)
        return expected_log_lik - gaussian_kl(q_mean[..., None], q_logvar[..., None])

    def kl_to_posterior(self, x: torch.Tensor, q_mean: torch.Tensor, q_logvar: torch.Tensor) -> torch.Tensor:
        """KL(q || p(z | x)): ``gaussian_kl`` after standardising z by the posterior's mean and scale."""
        post_mean, post_logvar = self.posterior(x)
        standardised_mean, log_variance_ratio = torch.broadcast_tensors(
            (q_mean - post_mean) / (0.5 * post_logvar).exp(), q_logvar - post_logvar)
        return gaussian_kl(standardised_mean[..., None], log_variance_ratio[..., None])

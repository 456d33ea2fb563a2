"""How good is a VAE? Estimates of the log-likelihood log p(x) that the ELBO only bounds.

The estimators take any unconditional latent-variable model that follows the protocol in
``vaelib.models.base`` (``vaelib.VAE``, or a user's own class that declares ``prior =
"standard_normal"`` and exposes ``encode``, ``decoder``, ``decoder_kind``, ``in_dim`` and
``latent_dim``); a model that does not is refused with one line naming what it lacks.

* ``iwae_bound``: the importance-weighted bound of Burda et al. (2016) with k samples per point;
  k = 1 is the ELBO, and the bound rises towards log p(x) as k grows.
* ``marginal_log_likelihood``: that bound with a large k, used as an estimate of log p(x).
* ``iwae_curve``: the bound averaged over the data, for a list of k (the curve that shows the gap);
  ``iwae_points``: the same bounds point by point, so that each mean can carry its standard error.
* ``mean_with_error``: the mean of per-point values with its standard error (``MeanEstimate``): how
  the book prints every Monte Carlo bound.
* ``kl_decomposition``: the ELBO's mean KL term split into the information the code carries about
  the data and the KL of the aggregate posterior from the prior (Hoffman & Johnson, 2016).
* ``decoder_log_likelihood``: log p(x | z), the one definition the estimators, wake-sleep
  (``vaelib.wake_sleep``) and the gradient estimators (``vaelib.gradients``) share.
* ``BoundMonitor``: the mean bound on named data sets, recorded during training (``fit``'s
  ``on_epoch_end``): training and held-out curves against training progress.
* ``ppca_log_likelihood``: the exact log-likelihood of probabilistic PCA, and ``ppca_as_vae``, the
  same model written as a linear-Gaussian VAE, so that the estimators can be checked where the
  answer is known.

All values are in nats, per point, with every constant included. The estimators run PyTorch on
vaelib's own thread count (``vaelib.threads``) and give the caller's setting back.

The decoder variance. ``vaelib.ELBO`` scores a Gaussian decoder with the squared error
||x - x_hat||^2 and no 1/(2·sigma^2) factor. That is the negative log-density of a Gaussian decoder
with variance sigma^2 = 1/2, up to an additive constant; with ``ELBO(beta)`` it is, after dividing
the loss by beta, a decoder with variance beta/2. A likelihood needs the normalised density, so the
estimators take the decoder variance as an argument, ``decoder_variance=0.5`` by default: the value
consistent with the training objective ``ELBO()``. Pass ``beta / 2`` for a model trained with
``ELBO(beta)``, or any other value you want to evaluate.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from vaelib import _checks, limits
from vaelib.losses import bernoulli_nll, gaussian_kl, gaussian_log_density
from vaelib.models import VAE
from vaelib.models.base import LatentVariableModel, latent_variable_problem
from vaelib.pca import PPCA
from vaelib.threads import limited

# Rows (samples x points) pushed through the decoder at once: bounds memory to a few tens of MB
# for the book's models, whatever k and the number of points are.
MAX_ROWS_PER_CHUNK = 2**16
DEFAULT_DECODER_VARIANCE = 0.5


@limited()
def iwae_bound(model: LatentVariableModel, x: torch.Tensor, k: int, *,
               decoder_variance: float = DEFAULT_DECODER_VARIANCE,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The importance-weighted bound L_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i | x), per point.

    z_1, ..., z_k are drawn from the encoder q(z | x). Its expectation is a lower bound on log p(x)
    that never decreases with k and tends to log p(x) as k grows (Burda et al., 2016); for k = 1 it
    is a one-sample estimate of the ELBO. Computed with logsumexp in chunks of samples and points,
    without gradients. Returns a tensor of shape (n,) in nats.

    ``decoder_variance`` is the variance of the Gaussian decoder p(x | z) = N(decoder(z),
    decoder_variance · I); the default 0.5 is what ``vaelib.ELBO()``'s squared error implies (see the
    module docstring). Bernoulli decoders ignore it. ``generator`` makes the samples reproducible.
    """
    x = _validated(model, x, k, decoder_variance)
    chunks = [_iwae_bound_of_chunk(model, rows, k, decoder_variance, generator)
              for rows in x.split(MAX_ROWS_PER_CHUNK)]
    bound = torch.cat(chunks)
    if torch.isnan(bound).any():
        raise ValueError(f"the IWAE bound is NaN for {int(torch.isnan(bound).sum())} of {len(bound)} points: the "
                         "model's weights or outputs are not finite (a diverged run?); check "
                         "all(p.isfinite().all() for p in model.parameters())")
    return bound


def marginal_log_likelihood(model: LatentVariableModel, x: torch.Tensor, k: int = 1000, *,
                            decoder_variance: float = DEFAULT_DECODER_VARIANCE,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """The importance-sampled estimate of log p(x) per point: ``iwae_bound`` with a large k.

    The estimate is consistent (it converges to log p(x) as k grows) but biased low for finite k,
    by roughly half the relative variance of the importance weights divided by k; compare two
    values of k to see whether it has settled. Memory stays bounded for any k (samples are
    processed in chunks). Returns a tensor of shape (n,) in nats.
    """
    return iwae_bound(model, x, k, decoder_variance=decoder_variance, generator=generator)


@limited()
def iwae_curve(model: LatentVariableModel, x: torch.Tensor, ks: Sequence[int], *,
               decoder_variance: float = DEFAULT_DECODER_VARIANCE,
               generator: torch.Generator | None = None) -> dict[int, float]:
    """The IWAE bound averaged over the points of x, for each k in ``ks``: ``{k: mean bound}``.

    Its rise with k shows how far the ELBO (k = 1) lies below log p(x) and whether the estimate has
    settled: where the curve is flat, more samples would not change it. The means of ``iwae_points``
    (the same draws for the same generator); use that to give each mean its standard error.
    """
    points = iwae_points(model, x, ks, decoder_variance=decoder_variance, generator=generator)
    return {k: values.mean().item() for k, values in points.items()}


@limited()
def iwae_points(model: LatentVariableModel, x: torch.Tensor, ks: Sequence[int], *,
                decoder_variance: float = DEFAULT_DECODER_VARIANCE,
                generator: torch.Generator | None = None) -> dict[int, torch.Tensor]:
    """``{k: iwae_bound(model, x, k)}`` for each k in ``ks``, in that order from one generator: the
    bound of every point, shape (n,), so that ``mean_with_error`` can give each mean its standard
    error and two bounds on the same points can be compared point by point."""
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise TypeError(f"ks must be a non-empty list or tuple of positive ints, got {ks!r}")
    return {k: iwae_bound(model, x, k, decoder_variance=decoder_variance, generator=generator) for k in ks}


@dataclass(frozen=True)
class MeanEstimate:
    """The mean of n per-point values and its standard error, std / sqrt(n) (std with ddof = 1).

    For a Monte Carlo bound evaluated once per data point, the error covers both the sampling noise
    of each point's estimate and the choice of the points: it says how far the mean could move on
    another draw of both. Two bounds on the same points are compared through their per-point
    differences (``mean_with_error(a - b)``), whose error leaves out what the two share.
    Formats as ``mean ± standard error``: ``f"{estimate:.4f}"`` gives ``-3.2441 ± 0.0012``.
    """

    mean: float
    standard_error: float
    n: int

    def __format__(self, spec: str) -> str:
        spec = spec or ".4g"
        return f"{self.mean:{spec}} ± {self.standard_error:{spec}}"

    def __str__(self) -> str:
        return format(self, "")


def mean_with_error(values: torch.Tensor) -> MeanEstimate:
    """The mean of ``values`` (one number per point, shape (n,)) with its standard error."""
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or len(values) < 2:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"values must be a 1-D tensor of at least 2 per-point values, got {shape}")
    values = values.detach().double()
    if not torch.isfinite(values).all():
        raise ValueError("values holds non-finite numbers: a mean of them has no standard error")
    return MeanEstimate(values.mean().item(), (values.std() / math.sqrt(len(values))).item(), len(values))


@dataclass(frozen=True)
class KLDecomposition:
    """The ELBO's KL term averaged over n data points, split in two (Hoffman & Johnson, 2016):

        (1/n) sum_i KL(q(z | x_i) || p(z)) = I(x; z) + KL(q(z) || p(z)),

    with q(z) = (1/n) sum_i q(z | x_i) the aggregate posterior and I(x; z) the mutual information
    between the code and the index of the point under q, the data uniform over the n points. So the
    mean KL is an upper bound on the information the code carries, not the information itself.
    ``mean_kl`` is exact (closed form); ``mutual_information`` is a Monte Carlo estimate with its
    standard error, and ``marginal_kl`` = ``mean_kl`` - ``mutual_information`` carries the same error.
    ``information_limit`` = log n: no code can say more than which of the n points it came from.
    All in nats.
    """

    mean_kl: float
    marginal_kl: MeanEstimate
    mutual_information: MeanEstimate
    information_limit: float


# Codes whose log q(z) is evaluated at once (each against every one of the n posteriors).
MAX_CODES_PER_CHUNK = 2**22


@torch.no_grad()
def kl_decomposition(mu: torch.Tensor, logvar: torch.Tensor, *, samples_per_point: int = 1,
                     generator: torch.Generator | None = None) -> KLDecomposition:
    """Split the mean KL of the posteriors N(mu_i, diag(exp(logvar_i))) from N(0, I) (see
    ``KLDecomposition``), e.g. of ``mu, logvar = vae.encode(x)`` for a VAE's training data.

    The information is estimated as I(x; z) = E_i E_{q(z | x_i)}[log q(z | x_i) - log q(z)] from
    ``samples_per_point`` draws z ~ q(z | x_i) for every point, with log q(z) exact (the log of the
    mixture's density, a logsumexp over all n posteriors): each term lies below log n, so the
    Monte Carlo average is well behaved. KL(q(z) || p(z)) is then ``mean_kl`` minus it, with the
    same standard error. Computed in float64, in chunks; ``generator`` makes the draws reproducible.
    """
    if not isinstance(mu, torch.Tensor) or not isinstance(logvar, torch.Tensor) or mu.dim() != 2 \
            or mu.shape != logvar.shape or len(mu) < 2:
        raise ValueError("mu and logvar must be tensors of one shape (n, k) with n >= 2 points, got "
                         f"{_shape(mu)} and {_shape(logvar)}")
    _checks.positive_int("samples_per_point", samples_per_point)
    mu, logvar = mu.detach().double(), logvar.detach().double()
    n, k = mu.shape
    eps = torch.randn((samples_per_point, n, k), generator=generator, dtype=torch.float64,
                      device="cpu" if generator is None else generator.device).to(mu.device)
    codes = (mu + torch.exp(0.5 * logvar) * eps).reshape(-1, k)
    constant = k * math.log(2 * math.pi) + logvar.sum(dim=-1)                       # (n,)
    log_own = (-0.5 * (constant + eps.pow(2).sum(dim=-1))).reshape(-1)              # log q(z | x_i)
    inverse_variance = torch.exp(-logvar)
    per_chunk = max(1, MAX_CODES_PER_CHUNK // (n * k))
    log_aggregate = []
    for z in codes.split(per_chunk):
        squared = ((z[:, None, :] - mu[None]).pow(2) * inverse_variance[None]).sum(dim=-1)  # (chunk, n)
        log_aggregate.append(torch.logsumexp(-0.5 * (constant[None] + squared), dim=1) - math.log(n))
    information = mean_with_error(log_own - torch.cat(log_aggregate))
    mean_kl = gaussian_kl(mu, logvar).mean().item()
    marginal = MeanEstimate(mean_kl - information.mean, information.standard_error, information.n)
    return KLDecomposition(mean_kl, marginal, information, math.log(n))


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


class BoundMonitor:
    """Records the mean IWAE bound of a model on named data sets each time it is called.

    Pass it as ``on_epoch_end`` to ``vaelib.fit`` (or ``vaelib.wake_sleep.fit_wake_sleep``), and
    call it once before training for the starting point: ``curves[name]`` then holds the bound on
    ``data[name]`` at the start and after every epoch, e.g. on training and held-out data as
    Kingma & Welling's Figure 2 plots them. With k = 1 (the default) the bound is the ELBO. Every
    call draws the same samples (a generator seeded with ``seed``), so the curves move only
    because the model does.
    """

    def __init__(self, model: LatentVariableModel, data: dict[str, torch.Tensor], *, k: int = 1,
                 decoder_variance: float = DEFAULT_DECODER_VARIANCE, seed: int = 0):
        if not isinstance(data, dict) or not data:
            raise TypeError(f"data must be a non-empty dict of named (n, d) tensors, got {type(data).__name__}")
        for x in data.values():
            _validated(model, x, k, decoder_variance)
        self.model, self.data, self.k = model, data, k
        self.decoder_variance, self.seed = decoder_variance, _checks.seed("seed", seed)
        self.curves: dict[str, list[float]] = {name: [] for name in data}

    def __call__(self, epoch: int | None = None, means: dict[str, float] | None = None) -> None:
        for name, x in self.data.items():
            generator = torch.Generator().manual_seed(self.seed)
            bound = iwae_bound(self.model, x, self.k, decoder_variance=self.decoder_variance, generator=generator)
            self.curves[name].append(bound.mean().item())


@limited()
def ppca_log_likelihood(ppca: PPCA, x: torch.Tensor) -> torch.Tensor:
    """The exact log-density log N(x; mean, W Wᵀ + noise_variance · I) of each row: shape (n,).

    Probabilistic PCA is the one latent-variable model in this book whose marginal likelihood has
    a closed form (Tipping & Bishop, 1999; Roweis, 1998), computed here with a Cholesky factor in
    float64 and returned in x's dtype.
    """
    if not isinstance(ppca, PPCA):
        raise TypeError(f"ppca must be a vaelib.pca.PPCA (from fit_ppca), got {type(ppca).__name__}")
    x = _checks.data_matrix("x", x, ppca.weight.shape[0])
    cov = ppca.covariance.double()
    chol = torch.linalg.cholesky(cov)
    centred = (x.double() - ppca.mean.double()).T
    whitened = torch.linalg.solve_triangular(chol, centred, upper=False)
    log_det = 2 * torch.log(torch.diagonal(chol)).sum()
    d = x.shape[1]
    log_density = -0.5 * (d * math.log(2 * math.pi) + log_det + whitened.pow(2).sum(dim=0))
    return log_density.to(x.dtype)


def ppca_as_vae(ppca: PPCA, posterior_variance_scale: float = 1.0) -> VAE:
    """pPCA written as a linear-Gaussian ``vaelib.VAE``, with its exact posterior as the encoder.

    Decoder: x_hat = W z + mean, to be evaluated with ``decoder_variance=ppca.noise_variance``.
    Encoder: the exact posterior p(z | x) = N(M⁻¹ Wᵀ (x - mean), noise_variance · M⁻¹) with
    M = Wᵀ W + noise_variance · I, which is diagonal because ``fit_ppca`` gives orthogonal columns.
    With this encoder every importance weight p(x, z) / q(z | x) equals p(x), so the ELBO and
    every IWAE bound equal log p(x) exactly. ``posterior_variance_scale`` multiplies the encoder's
    variances: any value other than 1 makes q(z | x) an imperfect posterior, and the ELBO then falls
    below log p(x) by KL(q || p(z | x)), a gap that the IWAE bound closes as k grows.
    """
    if not isinstance(ppca, PPCA):
        raise TypeError(f"ppca must be a vaelib.pca.PPCA (from fit_ppca), got {type(ppca).__name__}")
    _checks.positive_float("posterior_variance_scale", posterior_variance_scale)
    weight, mean, noise = ppca.weight.double(), ppca.mean.double(), ppca.noise_variance
    d, k = weight.shape
    m = weight.T @ weight + noise * torch.eye(k, dtype=torch.float64)
    off_diagonal = (m - torch.diag(torch.diagonal(m))).abs().max()
    if off_diagonal > 1e-8 * torch.diagonal(m).max():
        raise ValueError("the columns of ppca.weight must be orthogonal so that the exact posterior is "
                         f"diagonal (largest off-diagonal entry of WᵀW: {off_diagonal.item():.3g}); "
                         "fit the model with vaelib.pca.fit_ppca")
    m_diag = torch.diagonal(m)
    posterior_map = weight.T / m_diag[:, None]                          # M⁻¹ Wᵀ, shape (k, d)
    posterior_logvar = torch.log(noise * posterior_variance_scale / m_diag)

    vae = VAE(in_dim=d, latent_dim=k, hidden=(), activation="identity").to(ppca.weight.dtype)
    encoder, decoder = cast(nn.Linear, vae.encoder[0]), cast(nn.Linear, vae.decoder[0])
    with torch.no_grad():
        encoder.weight.copy_(torch.cat([posterior_map, torch.zeros(k, d, dtype=torch.float64)]))
        encoder.bias.copy_(torch.cat([-posterior_map @ mean, posterior_logvar]))
        decoder.weight.copy_(weight)
        decoder.bias.copy_(mean)
    return vae


def decoder_log_likelihood(model: LatentVariableModel, x: torch.Tensor, z: torch.Tensor, *,
                           decoder_variance: float = DEFAULT_DECODER_VARIANCE) -> torch.Tensor:
    """log p(x | z), summed over the features: shape z.shape[:-1], in nats.

    The one definition of the decoder's likelihood that the estimators, the wake-sleep algorithm
    and the gradient estimators share: independent Bernoulli pixels for a Bernoulli decoder, else a
    Gaussian with mean ``model.decoder(z)`` and variance ``decoder_variance`` in every coordinate.
    z may carry leading sample dimensions: codes of shape (S, n, k) are scored against x of shape (n, d).
    """
    decoded = model.decoder(z)
    if not isinstance(decoded, torch.Tensor) or decoded.shape != (*z.shape[:-1], x.shape[-1]):
        raise TypeError(f"{type(model).__name__}.decoder(z) must return shape {(*z.shape[:-1], x.shape[-1])} for codes "
                        f"of shape {tuple(z.shape)}, got {_shape(decoded)}")
    x = x.expand_as(decoded)
    if model.decoder_kind == "bernoulli":
        return -bernoulli_nll(decoded, x)
    return gaussian_log_density(x, decoded, math.log(decoder_variance))


def _validated(model, x, k, decoder_variance) -> torch.Tensor:
    """Check the arguments; return x on the model's dtype and device."""
    problem = latent_variable_problem(model)
    if problem is not None:
        raise TypeError(f"the estimators score unconditional latent-variable models (vaelib.models.base's "
                        f"protocol, as vaelib.VAE follows it): {problem}")
    _checks.positive_int("k", k)
    _checks.positive_float("decoder_variance", decoder_variance)
    param = next(model.parameters())
    x = _checks.data_matrix("x", x, model.in_dim)
    parameters = sum(p.numel() for p in model.parameters())  # about one multiply-add each, per sample and point
    limits.check_work(float(len(x)) * k * parameters, f"an IWAE bound with k = {k:,} samples for each of "
                      f"{len(x):,} points", "lower k (a few thousand samples settle the bound for the book's models)")
    return x.to(dtype=param.dtype, device=param.device)


@torch.no_grad()
def _iwae_bound_of_chunk(model: LatentVariableModel, x: torch.Tensor, k: int, decoder_variance: float,
                         generator: torch.Generator | None) -> torch.Tensor:
    """``iwae_bound`` for at most MAX_ROWS_PER_CHUNK points, drawing the k samples in chunks."""
    mu, logvar = _posterior(model, x)
    samples_per_chunk = max(1, MAX_ROWS_PER_CHUNK // len(x))
    total = torch.full((len(x),), -math.inf, dtype=mu.dtype, device=mu.device)
    for start in range(0, k, samples_per_chunk):
        count = min(samples_per_chunk, k - start)
        log_w = _log_weights(model, x, mu, logvar, count, decoder_variance, generator)
        total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
    return total - math.log(k)


def _posterior(model: LatentVariableModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's ``encode(x)``, checked to be a posterior's (mu, logvar), each (n, latent_dim)."""
    code = model.encode(x)
    expected = (len(x), model.latent_dim)
    if not (isinstance(code, tuple) and len(code) == 2 and all(isinstance(c, torch.Tensor) and
                                                                tuple(c.shape) == expected for c in code)):
        got = (tuple(_shape(c) for c in code) if isinstance(code, tuple) else _shape(code))
        raise TypeError(f"{type(model).__name__}.encode(x) must return the posterior's (mu, logvar), each of shape "
                        f"{expected}, got {got}")
    return code


@torch.no_grad()
def _log_weights(model: LatentVariableModel, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, count: int,
                 decoder_variance: float, generator: torch.Generator | None) -> torch.Tensor:
    """log p(x, z_i) - log q(z_i | x) for ``count`` samples z_i per point: shape (count, n)."""
    eps = torch.randn((count, *mu.shape), generator=generator, dtype=mu.dtype,
                      device=mu.device if generator is None else generator.device).to(mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps
    # log N(z; mu, diag(exp(logvar))) written through eps = (z - mu) / sigma: no division needed.
    log_q = -0.5 * (math.log(2 * math.pi) + logvar + eps.pow(2)).sum(dim=-1)
    log_prior = -0.5 * (math.log(2 * math.pi) + z.pow(2)).sum(dim=-1)
    log_likelihood = decoder_log_likelihood(model, x, z, decoder_variance=decoder_variance)
    return log_likelihood + log_prior - log_q

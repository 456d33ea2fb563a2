"""Two estimators of the gradient a VAE's encoder receives, to compare their noise ("The VAE").

The encoder's weights phi enter the reconstruction term E_{q_phi(z | x)}[log p(x | z)] only through
the distribution the expectation is taken over. Its gradient with respect to phi has two unbiased
single-sample estimators, both drawing z ~ q_phi(z | x):

* ``"reparameterisation"`` (Kingma & Welling): z = mu_phi(x) + sigma_phi(x) * eps, and the gradient of
  log p(x | z) flows back through z into phi;
* ``"score"`` (the score-function or REINFORCE estimator, Williams 1992): log p(x | z) times
  grad_phi log q_phi(z | x), with z held fixed; it needs no derivative of the decoder.

``encoder_gradient_samples`` draws many such estimates for one minibatch, on the VAE's own networks,
so that their means (both estimate the same gradient) and their variances can be compared.
``vaelib.probability.expectation_gradient_samples`` is the same comparison on a one-line toy.
"""
from __future__ import annotations

import torch

from vaelib import _checks, threads
from vaelib.estimators import DEFAULT_DECODER_VARIANCE, decoder_log_likelihood
from vaelib.losses import gaussian_log_density
from vaelib.models import VAE
from vaelib.probability import ESTIMATORS

# Samples decoded in one vectorised pass: bounds the memory of the decoded minibatches to some
# tens of MB, whatever the number of samples.
MAX_ELEMENTS_PER_CHUNK = 2**23


def encoder_gradient_samples(model: VAE, x: torch.Tensor, n_samples: int, estimator: str,
                             generator: torch.Generator | None = None, *,
                             decoder_variance: float = DEFAULT_DECODER_VARIANCE) -> torch.Tensor:
    """``n_samples`` single-sample estimates of the gradient of (1/M) sum_i E_q[log p(x_i | z)],
    the minibatch's reconstruction term, with respect to the encoder's weights.

    Each estimate draws one z per row of the minibatch x (L = 1, as AEVB trains) and is flattened
    into a row over all the encoder's parameters: the result has shape (n_samples, parameters).
    ``estimator`` is ``"reparameterisation"`` or ``"score"`` (see the module docstring). The decoder
    is not changed and no gradient is left on any parameter; ``generator`` makes the draws reproducible.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a vaelib.VAE (its encoder is a Gaussian q(z|x)), got {type(model).__name__}")
    param = next(model.parameters())
    x = _checks.data_matrix("x", x, model.in_dim).to(dtype=param.dtype, device=param.device)
    _checks.positive_int("n_samples", n_samples)
    _checks.one_of("estimator", estimator, ESTIMATORS)
    _checks.positive_float("decoder_variance", decoder_variance)
    weights = [p for p in model.encoder.parameters() if p.requires_grad]
    if not weights:
        raise ValueError("the model's encoder has no trainable parameters: there is no gradient to estimate")
    per_chunk = max(1, MAX_ELEMENTS_PER_CHUNK // x.numel())
    rows = []
    with threads.limited():
        encoded = model.encoder(x)  # (M, 2k): mu and logvar, with the graph back to the weights
        for start in range(0, n_samples, per_chunk):
            count = min(per_chunk, n_samples - start)
            eps = torch.randn((count, len(x), model.latent_dim), generator=generator, dtype=x.dtype).to(x.device)
            for cotangent in _gradients_at_the_encoder_output(model, x, encoded.detach(), eps, estimator,
                                                              decoder_variance):
                grads = torch.autograd.grad(encoded, weights, grad_outputs=cotangent, retain_graph=True)
                rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def _gradients_at_the_encoder_output(model: VAE, x: torch.Tensor, encoded: torch.Tensor, eps: torch.Tensor,
                                     estimator: str, decoder_variance: float) -> torch.Tensor:
    """Each sample's estimate of the gradient with respect to the encoder's output (mu, logvar), for
    all the samples in eps (S, M, k) at once: shape (S, M, 2k). The chain rule through the encoder
    (one backward pass per sample) turns each into the estimate for the weights."""
    per_sample = encoded.expand(len(eps), *encoded.shape).clone().requires_grad_()
    mu, logvar = per_sample.chunk(2, dim=-1)
    z = mu + torch.exp(0.5 * logvar) * eps
    if estimator == "reparameterisation":
        objective = decoder_log_likelihood(model, x, z, decoder_variance=decoder_variance)
    else:  # log p(x | z) as a constant weight on the gradient of log q(z | x), z held fixed
        z = z.detach()
        with torch.no_grad():
            log_likelihood = decoder_log_likelihood(model, x, z, decoder_variance=decoder_variance)
        objective = log_likelihood * gaussian_log_density(z, mu, logvar)
    (gradient,) = torch.autograd.grad(objective.sum() / len(x), per_sample)
    return gradient

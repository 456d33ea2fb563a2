"""How good is a trained model on data it did not train on? Measures the chapters share.

* ``reconstruction_errors`` and ``heldout_error``: the squared reconstruction error per point and
  its mean, on held-out data, optionally with the model shown other (e.g. noisy) inputs.
* ``linear_probe_accuracy``: how well a linear classifier reads the classes from a code.
* ``roc_auc``: how well a score separates two groups, e.g. novelty scores of unseen classes.
* ``energy_concentration``: how much of each dictionary atom lies in its few strongest pixels.
* ``jacobian_spectrum``: in how many directions, and how strongly, a code follows its input.
* ``implied_decoder_variance``: the Gaussian decoder variance a training objective stands for,
  which a log-likelihood estimate needs (see ``vaelib.estimators``).
* ``posterior_mean_variance`` and ``active_units``: how many latent dimensions a VAE uses, as
  Burda et al. (2016) count them.
* ``reconstruction_and_kl``: a trained VAE's fit to its data: the reconstruction error at a sampled
  code and at the posterior mean, and the KL from the prior, in float64.

Every function leaves the model and the global random state as it found them.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from vaelib import _checks, threads
from vaelib.losses import encoder_jacobian, gaussian_kl, squared_error


@torch.no_grad()
def reconstruction_errors(model: nn.Module, x: torch.Tensor, *, seen: torch.Tensor | None = None) -> torch.Tensor:
    """||x_i - x_hat_i||^2 for each point (shape (n,)), where x_hat reconstructs ``seen`` (x itself
    by default): the error against the clean x of a model shown corrupted inputs, say.

    The model runs in evaluation mode (a denoising model does not corrupt its input), without
    gradients, and is then put back in the mode it was in. A model that takes its sampling noise as
    an argument (``forward(x, noise)``, see ``vaelib.models.base``: the VAEs) is given zero noise,
    so its reconstruction is the decoder's mean at the posterior mean and the error deterministic;
    a Bernoulli decoder's reconstruction is its pixel probabilities. A model whose output has a
    ``target`` (a conditional model) is scored on the features it reconstructs, the first columns.
    "Deep and tied" uses the errors as novelty scores s(x).
    """
    seen = x if seen is None else seen
    if not isinstance(x, torch.Tensor) or not isinstance(seen, torch.Tensor) or x.shape != seen.shape:
        raise ValueError(f"x and seen must be tensors of the same shape (n, d), got "
                         f"{_shape_of(x)} and {_shape_of(seen)}")
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            if "noise" in inspect.signature(model.forward).parameters and hasattr(model, "latent_dim"):
                out = model(seen, noise=seen.new_zeros(len(seen), model.latent_dim))
            else:
                out = model(seen)
    finally:
        model.train(was_training)
    recon = torch.sigmoid(out.recon) if out.recon_is_logits else out.recon
    return squared_error(x if out.target is None else x[..., :out.target.shape[-1]], recon)


def heldout_error(model: nn.Module, x: torch.Tensor, *, seen: torch.Tensor | None = None) -> float:
    """(1/n)·||X - X_hat||_F^2 on held-out data: the mean of ``reconstruction_errors``.

    The test error of "Deep and tied" and "Convolutional"; with ``seen`` a noisy copy of x, the
    error against the clean images that "Denoising and sparse" measures.
    """
    return reconstruction_errors(model, x, seen=seen).mean().item()


@torch.no_grad()
def linear_probe_accuracy(encode: Callable[[torch.Tensor], torch.Tensor], x_train: torch.Tensor,
                          y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                          max_iter: int = 2000) -> float:
    """The test accuracy of a logistic regression trained on the codes ``encode(x_train)``.

    A linear probe: it asks how much of the class a code makes linearly readable, without training
    the encoder any further ("Deep and tied"). ``encode`` maps (n, d) data to (n, k) codes; an
    encoder that returns a VAE's ``(mu, logvar)`` is read through mu.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from vaelib.threads import torch_threads

    _checks.positive_int("max_iter", max_iter)
    train_codes, test_codes = _code(encode, x_train), _code(encode, x_test)
    # BLAS threads spin on these small problems: 8 s of CPU against 0.3 s on one thread, measured
    with threadpool_limits(limits=torch_threads()):
        classifier = LogisticRegression(max_iter=max_iter).fit(train_codes, _numpy(y_train))
        return float(classifier.score(test_codes, _numpy(y_test)))


def roc_auc(scores: torch.Tensor, is_positive: torch.Tensor) -> float:
    """The area under the ROC curve of ``scores`` for telling positives from negatives.

    It is the probability that a random positive scores higher than a random negative (ties count
    one half): 0.5 for a score that knows nothing, 1 for one that separates the groups. In
    "Deep and tied" the scores are reconstruction errors and the positives the unseen digits.
    """
    scores = torch.as_tensor(scores).detach().double().cpu().flatten()
    positive = torch.as_tensor(is_positive).detach().bool().cpu().flatten()
    if scores.shape != positive.shape:
        raise ValueError(f"scores and is_positive must have the same number of entries, got {len(scores)} "
                         f"and {len(positive)}")
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError(f"roc_auc needs both groups: got {n_positive} positives and {n_negative} negatives")
    if not torch.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values")
    order = scores.argsort()
    _, group, counts = torch.unique_consecutive(scores[order], return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2   # tied scores share their mean rank
    ranks = torch.empty_like(scores)
    ranks[order] = mean_rank[group]
    wins = ranks[positive].sum().item() - n_positive * (n_positive + 1) / 2   # Mann-Whitney U
    return wins / (n_positive * n_negative)


def energy_concentration(atoms: torch.Tensor, top: int = 8) -> float:
    """The share of each row's energy (sum of squares) in its ``top`` largest entries, averaged
    over the rows: near top/d for broad atoms, near 1 for atoms made of a few pixels.

    "Denoising and sparse" measures the decoder atoms of sparse autoencoders (one row per unit).
    """
    if not isinstance(atoms, torch.Tensor) or atoms.dim() != 2:
        raise ValueError(f"atoms must be a tensor of shape (units, pixels), got {_shape_of(atoms)}")
    _checks.positive_int("top", top)
    if top > atoms.shape[1]:
        raise ValueError(f"top must be at most the number of entries per atom, {atoms.shape[1]}, got {top}")
    energy = atoms.detach().pow(2)
    strongest = energy.sort(dim=1, descending=True).values[:, :top]
    return (strongest.sum(dim=1) / energy.sum(dim=1)).mean().item()


def jacobian_spectrum(encode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The singular values of the encoder's Jacobian dz/dx at every row of x, largest first:
    shape (n, min(k, d)). Their squares sum to the contractive penalty ||J(x)||_F^2.

    A few large values and many small ones: the code follows the input in a few directions and
    ignores the rest. "Denoising, sparse and contractive autoencoders" compares a contractive
    code's spectrum with an unpenalised one's. ``encode`` maps rows to rows (an encoder module);
    computed without a graph, on ``vaelib.threads.torch_threads()`` threads.
    """
    _checks.model_input("x", x)
    with torch.no_grad(), threads.limited():
        return torch.linalg.svdvals(encoder_jacobian(encode, x))


def implied_decoder_variance(objective: nn.Module) -> float | None:
    """The variance sigma^2 of the Gaussian decoder whose negative ELBO, R / (2·sigma^2) + KL plus
    a constant, is ``objective``'s loss up to a positive factor: sigma^2 = w_KL / (2·w_R), with w_R
    and w_KL the weights of the reconstruction and KL terms, the multiplier alpha included.

    ``ELBO(beta)`` gives beta/2 (1/2 for the plain ELBO), Ko & Ko's eq. 7 alpha / (2·(1 + alpha)).
    A log-likelihood estimate (``vaelib.estimators``) is consistent with the training when it uses
    this variance. Returns None where no constant variance is implied: an objective outside the
    VAE family, the sigma-VAE's calibrated likelihood, a KL summed over the batch (its weight then
    depends on the batch size), or a weight of zero.
    """
    form = getattr(objective, "form", None)
    if form is None or form.likelihood != "fixed" or form.kl_reduction != "mean":
        return None
    alpha = getattr(objective, "alpha", None)
    alpha = 0.0 if alpha is None else float(torch.as_tensor(alpha).detach())
    recon_weight = form.recon_weight + alpha * form.constraint_recon
    kl_weight = form.kl_weight + alpha * form.constraint_kl
    if recon_weight <= 0 or kl_weight <= 0:
        return None
    return kl_weight / (2 * recon_weight)


ACTIVE_THRESHOLD = 0.01  # Burda et al. (2016), section 5.2


@torch.no_grad()
def posterior_mean_variance(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The variance over the points of x of each latent dimension's posterior mean: shape (k,).

    For a VAE with encoder q(z | x) = N(mu(x), diag sigma^2(x)) this is Var_x[mu_j(x)] for each
    dimension j (divided by n, in float64). A dimension the decoder does not use has a posterior
    equal to the prior for every x, so its mean does not move with x and the variance is near 0.
    ``model.encode(x)`` must return ``(mu, logvar)``; the model's mode is left as it was.
    """
    encode = getattr(model, "encode", None)
    if not callable(encode):
        raise TypeError(f"model must have encode(x) -> (mu, logvar), as a vaelib.VAE has; got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or len(x) < 2:
        raise ValueError(f"x must be a tensor of shape (n, d) with at least 2 points, got {_shape_of(x)}")
    code = encode(x)
    if not isinstance(code, tuple) or len(code) != 2:
        raise TypeError("model.encode(x) must return (mu, logvar), a Gaussian posterior; "
                        f"{type(model).__name__}.encode returns {type(code).__name__}")
    return code[0].double().var(dim=0, correction=0)


def active_units(model: nn.Module, x: torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD) -> int:
    """The number of latent dimensions that are *active* on the data x: those whose posterior mean
    varies over x with a variance above ``threshold`` (``posterior_mean_variance``; 0.01 by
    default, Burda et al.'s threshold). "Kingma and Welling's experiments" counts them."""
    threshold = _checks.positive_float("threshold", threshold)
    return int((posterior_mean_variance(model, x) > threshold).sum())


def _code(encode, x: torch.Tensor):
    code = encode(x)
    if isinstance(code, tuple):  # a VAE's (mu, logvar)
        code = code[0]
    return _numpy(code)


def _numpy(t):
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t


def _shape_of(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


@torch.no_grad()
@threads.limited()
def reconstruction_and_kl(model, x: torch.Tensor, *, seed: int = 0) -> dict[str, float]:
    """A trained VAE's fit to the data x: the reconstruction error two ways, and the KL.

    * ``recon_sampled``: (1/n)·||X - decode(z)||_F^2 with z = mu + sigma·eps, one draw per point
      (eps from a generator seeded with ``seed``): the Monte Carlo estimate of E_q[||x - x~||^2]
      that training minimises, which includes what the posterior's spread costs;
    * ``recon_mean``: the same at z = mu, the posterior mean: the error of the encoder and
      decoder as a deterministic autoencoder, which ignores the spread;
    * ``kl``: KL(q(z|x) || N(0, I)) averaged over the points, in nats, computed in float64 from the
      encoder's mu and log-variance (a float32 KL loses percents when it is near 0).

    The two errors differ by what sampling the code costs: nearly nothing for a model whose
    posterior is tight, a lot for one whose posterior is wide. Squared errors are summed in float64.
    Used by the reproduction (Part IV) and the comparison chapter (Part III).
    """
    x = _checks.data_matrix("x", x)
    was_training = model.training
    model.eval()
    try:
        mu, logvar = model.encode(x)
        generator = torch.Generator().manual_seed(_checks.seed("seed", seed))
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        sampled = model.decode(mu + torch.exp(0.5 * logvar) * eps)
        at_mean = model.decode(mu)
    finally:
        model.train(was_training)
    kl = gaussian_kl(mu.double(), logvar.double())
    x64 = x.double()
    return {"recon_sampled": (x64 - sampled.double()).pow(2).sum(dim=1).mean().item(),
            "recon_mean": (x64 - at_mean.double()).pow(2).sum(dim=1).mean().item(),
            "kl": kl.mean().item()}

"""The wake-sleep algorithm (Hinton, Dayan, Frey & Neal, 1995), for the same model AEVB trains.

Kingma & Welling compare AEVB with it (their Figure 2; the chapter "Kingma and Welling's
experiments"): it is the other online method for directed models with continuous latent variables,
and it too trains a generative model p_theta(x | z) p(z) (a ``vaelib.VAE``'s decoder, prior N(0, I))
together with a recognition model q_phi(z | x) (its encoder). It alternates two phases:

* **wake**: encode real data, draw codes z ~ q_phi(z | x), and take a step on theta that raises
  log p_theta(x | z): the generative model learns to produce the data from the proposed codes;
* **sleep**: draw dreams from the generative model, z ~ N(0, I) and x ~ p_theta(x | z), and take a
  step on phi that raises log q_phi(z | x): the recognition model learns to invert the generative
  model on its own fantasies.

Neither phase follows the gradient of one objective: the sleep phase fits q to the posterior by the
forward KL under dreamed x, the ELBO would fit it by the reverse KL under the data, and the two
phases together optimise no bound on log p(x). No gradient passes through a sample, which is why
wake-sleep also works for discrete latent variables. A trained model is an ordinary ``VAE``, so its
ELBO is measured exactly as AEVB's (``vaelib.estimators.iwae_bound`` with k = 1).

``fit_wake_sleep`` is its training loop; ``wake_step`` and ``sleep_step`` are the two phases.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from vaelib import _checks, threads
from vaelib.estimators import DEFAULT_DECODER_VARIANCE, decoder_log_likelihood
from vaelib.losses import gaussian_log_density
from vaelib.models import VAE
from vaelib.runs import History, TrainingDiverged, check_decoder_range


def recognition_codes(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Codes z ~ q_phi(z | x), one per row of x, with no gradient: the wake phase's samples."""
    with torch.no_grad():
        mu, logvar = model.encode(x)
        return mu + torch.exp(0.5 * logvar) * _standard_normal(mu.shape, mu, generator)


def dream(model: VAE, n: int, generator: torch.Generator | None = None, *,
          decoder_variance: float = DEFAULT_DECODER_VARIANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """n dreams (z, x) from the generative model: z ~ N(0, I), then x ~ p_theta(x | z).

    A Bernoulli decoder's x are 0/1 pixels drawn with the decoded probabilities; a Gaussian decoder's
    are its mean plus noise of variance ``decoder_variance`` (0.5 is what ``vaelib.ELBO()`` implies).
    No gradient flows into either."""
    _checks.positive_int("n", n)
    param = next(model.parameters())
    with torch.no_grad():
        z = _standard_normal((n, model.latent_dim), param, generator)
        mean = model.decode(z)
        if model.decoder_kind == "bernoulli":
            uniform = torch.rand(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
            return z, (uniform < mean).to(mean.dtype)
        return z, mean + math.sqrt(decoder_variance) * _standard_normal(mean.shape, mean, generator)


def recognition_nll(model: VAE, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log q_phi(z | x) per point (shape (n,)), in nats: the sleep phase's loss, a function of phi."""
    mu, logvar = model.encode(x)
    return -gaussian_log_density(z, mu, logvar)


def wake_step(model: VAE, x: torch.Tensor, optimizer: torch.optim.Optimizer,
              generator: torch.Generator | None = None, *,
              decoder_variance: float = DEFAULT_DECODER_VARIANCE) -> float:
    """The wake phase on a minibatch x: draw z ~ q(z | x), step ``optimizer`` (on the decoder's
    parameters) down the mean of -log p(x | z) (``vaelib.estimators.decoder_log_likelihood``).
    Returns that mean before the step, in nats."""
    z = recognition_codes(model, x, generator)
    return _step(optimizer, -decoder_log_likelihood(model, x, z, decoder_variance=decoder_variance).mean())


def sleep_step(model: VAE, n: int, optimizer: torch.optim.Optimizer,
               generator: torch.Generator | None = None, *,
               decoder_variance: float = DEFAULT_DECODER_VARIANCE) -> float:
    """The sleep phase: draw n dreams (z, x), step ``optimizer`` (on the encoder's parameters) down
    the mean of -log q(z | x). Returns that mean before the step, in nats."""
    z, x = dream(model, n, generator, decoder_variance=decoder_variance)
    return _step(optimizer, recognition_nll(model, z, x).mean())


def fit_wake_sleep(model: VAE, x: torch.Tensor, *, epochs: int = 10, batch_size: int = 100, lr: float = 1e-3,
                   seed: int = 0, decoder_variance: float = DEFAULT_DECODER_VARIANCE, progress: bool = True,
                   on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Train ``model`` by wake-sleep: per minibatch of x, one wake step, then one sleep step on as
    many dreams. Each phase has its own Adam optimiser with learning rate ``lr``.

    Like ``vaelib.fit``: ``seed`` fixes the data order and every sample (the model's initial
    weights are fixed by ``vaelib.seed_everything`` before it is built), ``on_epoch_end(epoch, means)``
    is called after each epoch, PyTorch runs on ``vaelib.threads.torch_threads()`` threads, and the
    caller's random state is not touched. Returns the per-epoch ``History`` of the terms ``wake``
    (mean -log p(x | z) on the data) and ``sleep`` (mean -log q(z | x) on the dreams), in nats.
    Raises ``TrainingDiverged`` when a term is not finite, with the model put back to the end of
    the last completed epoch.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a vaelib.VAE (wake-sleep needs its encoder and decoder), "
                        f"got {type(model).__name__}")
    x = _checks.data_matrix("x", x, model.in_dim).detach()
    _checks.positive_int("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_float("lr", lr)
    _checks.seed("seed", seed)
    _checks.positive_float("decoder_variance", decoder_variance)
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError(f"on_epoch_end must be a function (epoch, means) -> None or None, got "
                        f"{type(on_epoch_end).__name__}")
    param = next(model.parameters())
    if x.dtype != param.dtype:
        raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {param.dtype}; "
                        f"convert with x.to({param.dtype})")
    x = x.to(param.device)
    check_decoder_range(model, x)
    wake_optimizer = torch.optim.Adam(model.decoder.parameters(), lr=lr)
    sleep_optimizer = torch.optim.Adam(model.encoder.parameters(), lr=lr)
    order, noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    history = History()
    model.train()
    with threads.limited():
        for epoch in tqdm(range(epochs), desc="wake-sleep", disable=not progress, leave=False):
            last_good = copy.deepcopy(model.state_dict())
            sums = {"wake": 0.0, "sleep": 0.0}
            for step, idx in enumerate(torch.randperm(len(x), generator=order).split(batch_size), start=1):
                batch = x[idx.to(x.device)]
                terms = {"wake": wake_step(model, batch, wake_optimizer, noise, decoder_variance=decoder_variance),
                         "sleep": sleep_step(model, len(batch), sleep_optimizer, noise,
                                             decoder_variance=decoder_variance)}
                bad = next((name for name, value in terms.items() if not math.isfinite(value)), None)
                if bad is not None:
                    model.load_state_dict(last_good)
                    raise TrainingDiverged(f"wake-sleep stopped at epoch {epoch + 1}, step {step}: the {bad} "
                                           f"term is not finite. The model was restored to the end of epoch "
                                           f"{epoch}; try a smaller learning rate.", history,
                                           epoch=epoch + 1, step=step, term=bad)
                for name, value in terms.items():
                    sums[name] += value * len(idx)
            means = {name: total / len(x) for name, total in sums.items()}
            history.append(means)
            if on_epoch_end is not None:
                on_epoch_end(epoch, means)
    return history


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _standard_normal(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) noise of ``shape`` in like's dtype and on its device, drawn from ``generator`` (a CPU one)."""
    return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)

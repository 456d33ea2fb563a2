"""What is minimised. An objective maps (x, model output) to named terms, one of them ``"loss"``.

The trainer minimises ``terms["loss"]`` and logs every term, so an objective shows its parts
(reconstruction, KL, ...) without the trainer knowing what they are. Objectives are modules: a
learnable multiplier (Ko & Ko's alpha) is a parameter that the trainer's optimiser updates together
with the model's, and ``before_step``/``after_step`` let an objective shape that update.
"""
from __future__ import annotations

import torch
from torch import nn

from vaelib import _checks
from vaelib.losses import bernoulli_nll, gaussian_kl, squared_error
from vaelib.models.autoencoder import ModelOutput

Terms = dict[str, torch.Tensor]


class Objective(nn.Module):
    """Base class: subclasses implement ``forward(x, out) -> Terms`` with a ``"loss"`` entry."""

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:  # pragma: no cover - abstract
        raise NotImplementedError

    def before_step(self) -> None:
        """Called after the backward pass, before the optimiser step (e.g. to flip a gradient)."""

    def after_step(self) -> None:
        """Called after the optimiser step (e.g. to keep a multiplier non-negative)."""


def reconstruction_term(x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
    """(1/n)·||X - X_hat||_F^2 for a Gaussian/MSE decoder, or the mean Bernoulli NLL for logits."""
    per_point = bernoulli_nll(out.recon, x) if out.recon_is_logits else squared_error(x, out.recon)
    return per_point.mean(dim=-1)


def _kl_term(out: ModelOutput) -> torch.Tensor:
    if out.mu is None or out.logvar is None:
        raise ValueError("this objective needs a model with a Gaussian encoder (a VAE): "
                         "the model output has no mu/logvar")
    return gaussian_kl(out.mu, out.logvar).mean(dim=-1)


class Reconstruction(Objective):
    """The plain autoencoder's loss: the reconstruction error alone (Ko & Ko, eq. 1 and 5)."""

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        recon = reconstruction_term(x, out)
        return {"loss": recon, "recon": recon}


class ELBO(Objective):
    """The negative evidence lower bound as Ko & Ko write it (eq. 6), with an optional beta.

    loss = R + beta·KL, with R the reconstruction term (squared error summed over features for a
    Gaussian decoder, Bernoulli NLL for a Bernoulli one) and KL = KL(q(z|x) || N(0, I)), both
    averaged over the minibatch. beta = 1 is the ELBO; beta != 1 is the beta-VAE of Higgins et al.
    Note: squared error without a 1/(2·sigma^2) factor is a Gaussian decoder with variance 1/2.
    """

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = _checks.non_negative_float("beta", beta)

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        recon = reconstruction_term(x, out)
        kl = _kl_term(out)
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}


ALPHA_RULES = ("reverse", "project", "ascent", "fixed")


class KoLagrangian(Objective):
    """Ko & Ko's practical objective (their eq. 7) with a learnable multiplier alpha >= 0.

    loss = (1 + alpha)·R + alpha·(KL - delta), with R the reconstruction term and KL the closed-form
    Gaussian KL, both averaged over the minibatch. alpha is a parameter: the trainer's optimiser
    updates it together with the network, by *descending* on the loss, as the paper did. How alpha is
    kept non-negative (or whether it ascends) is the ``alpha_rule``:

    * ``"reverse"`` (the paper): when the optimiser's step would take alpha below 0, the step is
      reversed: alpha <- alpha_old + (alpha_old - alpha_new), i.e. the same step size upwards.
    * ``"project"``: alpha <- max(alpha, 0) after every step (projected gradient descent).
    * ``"ascent"``: alpha's gradient is negated, so alpha *ascends* while the network descends (the
      saddle-point reading of the Lagrangian), then projected onto alpha >= 0.
    * ``"fixed"``: alpha is a constant weight, not learned.
    """

    def __init__(self, delta: float = 0.1, alpha_init: float = 1.0, alpha_rule: str = "reverse"):
        super().__init__()
        self.delta = _checks.non_negative_float("delta", delta)
        _checks.non_negative_float("alpha_init", alpha_init)
        self.alpha_rule = _checks.one_of("alpha_rule", alpha_rule, ALPHA_RULES)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)), requires_grad=alpha_rule != "fixed")
        self._alpha_before_step: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        recon = reconstruction_term(x, out)
        kl = _kl_term(out)
        alpha = self.alpha
        weighted_recon = (1 + alpha) * recon
        return {"loss": weighted_recon + alpha * (kl - self.delta), "recon": recon, "kl": kl,
                "weighted_recon": weighted_recon, "weighted_kl": alpha * kl, "alpha": alpha.detach()}

    def before_step(self) -> None:
        if self.alpha_rule == "ascent" and self.alpha.grad is not None:
            self.alpha.grad.neg_()
        self._alpha_before_step = self.alpha.detach().clone()

    @torch.no_grad()
    def after_step(self) -> None:
        if self.alpha_rule == "reverse" and self.alpha < 0:
            self.alpha.copy_(2 * self._alpha_before_step - self.alpha)
        elif self.alpha_rule in ("project", "ascent"):
            self.alpha.clamp_(min=0.0)

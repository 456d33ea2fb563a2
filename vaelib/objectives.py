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
from vaelib.losses import bernoulli_nll, gaussian_kl, kl_sparsity, l1_activity, squared_error
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
KL_REDUCTIONS = ("mean", "sum")
# What each rule does to alpha's gradient before the optimiser step: keep it, negate it (ascent),
# or zero it (fixed, for trainers that keep alpha among the optimised tensors).
ALPHA_GRADIENT_SIGN = {"reverse": 1.0, "project": 1.0, "ascent": -1.0, "fixed": 0.0}


def constrain_alpha(rule: str, alpha: torch.Tensor, alpha_before: torch.Tensor) -> torch.Tensor:
    """alpha after an optimiser step, kept non-negative as ``rule`` says (elementwise, any shape).

    One definition of the rules for every trainer: ``KoLagrangian.after_step`` applies it to its
    scalar alpha, ``vaelib.engine`` to the alphas of many runs at once. ``alpha_before`` is alpha
    before the step; ``"reverse"`` reflects a step that went below 0 about the old value.
    """
    _checks.one_of("rule", rule, ALPHA_RULES)
    if rule == "reverse":
        return torch.where(alpha < 0, 2 * alpha_before - alpha, alpha)
    if rule in ("project", "ascent"):
        return alpha.clamp(min=0.0)
    return alpha


class LagrangeMultiplierObjective(Objective):
    """Base of objectives with a constraint term alpha·(D - delta) and a learnable alpha >= 0.

    alpha is a parameter: the trainer's optimiser updates it together with the network, by
    *descending* on the loss unless the rule says otherwise. How alpha is kept non-negative (or
    whether it ascends) is the ``alpha_rule``:

    * ``"reverse"`` (Ko & Ko): when the optimiser's step would take alpha below 0, the step is
      reversed: alpha <- alpha_old + (alpha_old - alpha_new), i.e. the same step size upwards.
    * ``"project"``: alpha <- max(alpha, 0) after every step (projected gradient descent).
    * ``"ascent"``: alpha's gradient is negated, so alpha *ascends* while the network descends (the
      saddle-point reading of the Lagrangian, dual ascent), then projected onto alpha >= 0.
    * ``"fixed"``: alpha is a constant weight, not learned.
    """

    def __init__(self, delta: float = 0.1, alpha_init: float = 1.0, alpha_rule: str = "reverse"):
        super().__init__()
        self.delta = _checks.non_negative_float("delta", delta)
        _checks.non_negative_float("alpha_init", alpha_init)
        self.alpha_rule = _checks.one_of("alpha_rule", alpha_rule, ALPHA_RULES)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)), requires_grad=alpha_rule != "fixed")
        self._alpha_before_step: torch.Tensor | None = None

    def before_step(self) -> None:
        if self.alpha.grad is not None:
            self.alpha.grad.mul_(ALPHA_GRADIENT_SIGN[self.alpha_rule])
        self._alpha_before_step = self.alpha.detach().clone()

    @torch.no_grad()
    def after_step(self) -> None:
        self.alpha.copy_(constrain_alpha(self.alpha_rule, self.alpha, self._alpha_before_step))


class KoLagrangian(LagrangeMultiplierObjective):
    """Ko & Ko's practical objective (their eq. 7) with a learnable multiplier alpha >= 0.

    loss = (1 + alpha)·R + alpha·(KL - delta), with R the reconstruction term averaged over the
    minibatch and KL the closed-form Gaussian KL, averaged over it too (``kl_reduction="mean"``) or
    summed over its points (``"sum"``: the literal reading of eq. 7, where 1/n multiplies only the
    squared error and the KL is that of the whole batch's joint posterior, which weighs the KL by
    the batch size). It is the Lagrangian R + alpha·(D - delta) with the divergence D replaced by
    the ELBO loss R + KL, so the constraint it encodes is R + KL <= delta. The paper trains alpha by
    descent with the ``"reverse"`` rule (see ``LagrangeMultiplierObjective`` for the rules).
    """

    def __init__(self, delta: float = 0.1, alpha_init: float = 1.0, alpha_rule: str = "reverse",
                 kl_reduction: str = "mean"):
        super().__init__(delta, alpha_init, alpha_rule)
        self.kl_reduction = _checks.one_of("kl_reduction", kl_reduction, KL_REDUCTIONS)

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        recon = reconstruction_term(x, out)
        kl = _kl_term(out)
        if self.kl_reduction == "sum":
            kl = kl * x.shape[-2]
        alpha = self.alpha
        weighted_recon = (1 + alpha) * recon
        return {"loss": weighted_recon + alpha * (kl - self.delta), "recon": recon, "kl": kl,
                "weighted_recon": weighted_recon, "weighted_kl": alpha * kl, "alpha": alpha.detach()}


class KLConstrained(LagrangeMultiplierObjective):
    """The Lagrangian of "minimise R subject to KL(q(z|x) || N(0, I)) <= delta", per point.

    loss = R + alpha·(KL - delta), R and KL averaged over the minibatch. With ``alpha_rule="ascent"``
    this is dual ascent: alpha rises while KL > delta and falls towards 0 while KL < delta, so at a
    solution either KL = delta or alpha = 0 (complementary slackness). It is a beta-VAE whose beta
    (= alpha) is tuned to meet a KL budget; compare ``KoLagrangian``, whose constraint is R + KL <= delta.
    """

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        recon = reconstruction_term(x, out)
        kl = _kl_term(out)
        return {"loss": recon + self.alpha * (kl - self.delta), "recon": recon, "kl": kl,
                "alpha": self.alpha.detach()}


SPARSITY_PENALTIES = ("l1", "kl")


class SparseReconstruction(Objective):
    """Reconstruction error plus a sparsity penalty on the code: the sparse autoencoder's loss.

    loss = R + weight·P, with R the reconstruction term and P, on the code ``out.z`` (the hidden
    activations of a ``vaelib.models.SparseAutoencoder``):

    * ``penalty="l1"``: the mean over points of sum_j |h_j|, which pushes most activations to 0;
    * ``penalty="kl"``: sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), rho_hat_j the mean of h_j
      over the batch (Ng's sparse autoencoder notes), which pulls every unit's firing rate to the
      target ``rho``; it needs activations in [0, 1] (sigmoid units).

    The terms also log ``mean_activation``, the batch mean of h, to compare with rho.
    """

    def __init__(self, penalty: str = "kl", weight: float = 1.0, rho: float = 0.05):
        super().__init__()
        self.penalty = _checks.one_of("penalty", penalty, SPARSITY_PENALTIES)
        self.weight = _checks.non_negative_float("weight", weight)
        self.rho = _checks.positive_float("rho", rho)
        if self.rho >= 1:
            raise ValueError(f"rho must lie strictly between 0 and 1 (a target firing rate), got {rho}")

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        recon = reconstruction_term(x, out)
        h = out.z
        if self.penalty == "kl":
            low, high = h.min().item(), h.max().item()
            if low < 0 or high > 1:
                raise ValueError(f"the KL sparsity penalty needs code activations in [0, 1] (sigmoid units), "
                                 f"got values in [{low:.3g}, {high:.3g}]; use activation='sigmoid' or penalty='l1'")
            penalty = kl_sparsity(h, self.rho)
        else:
            penalty = l1_activity(h)
        return {"loss": recon + self.weight * penalty, "recon": recon, "penalty": penalty,
                "mean_activation": h.detach().mean()}

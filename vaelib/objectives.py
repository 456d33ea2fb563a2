"""What is minimised. An objective maps (x, model output) to named terms, one of them ``"loss"``.

The trainer minimises ``terms["loss"]`` and logs every term, so an objective shows its parts
(reconstruction, KL, ...) without the trainer knowing what they are. Objectives are modules: a
learnable multiplier (Ko & Ko's alpha) is a parameter that the trainer's optimiser updates together
with the model's, and ``before_step``/``after_step`` let an objective shape that update.

**The VAE family, written once.** Every VAE objective of the book is a weighted sum of the same
two terms plus, for the constrained ones, a multiplier times a constraint::

    loss = recon_weight·R + kl_weight·KL + alpha·(constraint_recon·R + constraint_kl·KL - bound)

with R the reconstruction term and KL the Gaussian KL of the posterior from N(0, I), both averaged
over the minibatch (KL may be summed instead: ``kl_reduction="sum"``). ELBO and beta-VAE, the
sigma-VAE, Ko & Ko's eq. 7, the KL-bounded problem and GECO differ only in these numbers, in how R
is scored (the sigma-VAE replaces R by its Gaussian likelihood under the best decoder variance) and
in the rule that moves alpha (``ALPHA_RULES``). ``VAEObjective.form`` hands those numbers to any
engine; ``VAEObjective.combine`` turns (R, KL, alpha) into the terms, elementwise, so the very same
function scores one minibatch in ``vaelib.fit`` and every step of many runs in ``vaelib.engine``;
``update_multiplier`` is the one definition of the alpha rules. The engine's C kernel implements
these formulas again, as an accelerator that tests/test_engine.py holds to them.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn

from vaelib import _checks
from vaelib.losses import bernoulli_nll, gaussian_kl, kl_sparsity, l1_activity, squared_error
from vaelib.models.base import ModelOutput

Terms = dict[str, torch.Tensor]


class Objective(nn.Module):
    """Base class: subclasses implement ``forward(x, out) -> Terms`` with a ``"loss"`` entry.

    The trainer calls ``before_step()`` after the backward pass and ``after_step(terms)`` after the
    optimiser's step (``terms`` are the step's terms, detached). Hooks act *elementwise* on the
    objective's tensors, so that ``vaelib.engine.fit_batched`` can call them once on the state of
    many runs stacked along a leading axis; an objective that cannot promise that (one that trains
    a network of its own, say) sets ``batchable = False`` and is trained by ``vaelib.fit`` only.
    """

    batchable = True

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:  # pragma: no cover - abstract
        raise NotImplementedError

    def before_step(self) -> None:
        """Called after the backward pass, before the optimiser step (e.g. to flip a gradient)."""

    def after_step(self, terms: Terms) -> None:
        """Called after the optimiser step with the step's terms (e.g. to keep a multiplier >= 0)."""

    def trainer_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The objective's parameters that the trainer's optimiser updates with the model's: every
        one that requires a gradient, unless an objective trains some with an optimiser of its own."""
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad]


def objective_kind(objective: Objective) -> tuple[type[Objective], tuple[tuple[str, str], ...]]:
    """What makes two objectives the same computation: the class and every setting that is not a
    tensor (an ELBO with beta = 4 and one with beta = 1 are two kinds, because beta is a Python
    number the objective's code reads). ``vaelib.fit_batched`` vectorises the runs of one kind
    together, and a run's fingerprint (``vaelib.runs.settings_fingerprint``) records the settings."""
    settings = tuple(sorted((name, repr(value)) for name, value in vars(objective).items()
                            if not name.startswith("_") and not isinstance(value, (torch.Tensor, nn.Module))))
    return type(objective), settings


def reconstruction_target(x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
    """What the reconstruction is scored against: ``out.target`` when the model sets it (a
    conditional model's input row ends with its label, which it does not reconstruct), else x."""
    return x if out.target is None else out.target


def reconstruction_term(x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
    """(1/n)·||X - X_hat||_F^2 for a Gaussian/MSE decoder, or the mean Bernoulli NLL for logits,
    with X the ``reconstruction_target``."""
    target = reconstruction_target(x, out)
    per_point = bernoulli_nll(out.recon, target) if out.recon_is_logits else squared_error(target, out.recon)
    return per_point.mean(dim=-1)


def kl_term(out: ModelOutput) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) in closed form, averaged over the batch; needs a Gaussian encoder."""
    if out.mu is None or out.logvar is None:
        raise ValueError("this objective needs a model with a Gaussian encoder (a VAE): "
                         "the model output has no mu/logvar")
    return gaussian_kl(out.mu, out.logvar).mean(dim=-1)


class Reconstruction(Objective):
    """The plain autoencoder's loss: the reconstruction error alone (Ko & Ko, eq. 1 and 5)."""

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        recon = reconstruction_term(x, out)
        return {"loss": recon, "recon": recon}


# ----------------------------------------------------------------------------------------------
# The VAE family
# ----------------------------------------------------------------------------------------------

KL_REDUCTIONS = ("mean", "sum")
LIKELIHOODS = ("fixed", "calibrated")
ALPHA_RULES = ("reverse", "project", "ascent", "fixed", "geco")
# What each rule does to alpha's gradient before the optimiser step: keep it (descent), negate it
# (ascent) or drop it (a multiplier the optimiser must not move).
ALPHA_GRADIENT_SIGN = {"reverse": 1.0, "project": 1.0, "ascent": -1.0, "fixed": 0.0, "geco": 0.0}
# GECO's multiplier is kept inside [ALPHA_FLOOR, ALPHA_CEILING] so that exp never over- or underflows it.
ALPHA_FLOOR, ALPHA_CEILING = 1e-6, 1e6


@dataclass(frozen=True)
class Form:
    """The numbers that make a VAE objective what it is (see the module's docstring):

    loss = recon_weight·R + kl_weight·KL + alpha·(constraint_recon·R + constraint_kl·KL - bound)

    ``kl_reduction``: KL averaged over the batch's points, or summed (times the batch size).
    ``likelihood``: ``"fixed"`` scores R as it is (a Gaussian decoder of fixed variance 1/2, or the
    Bernoulli NLL); ``"calibrated"`` replaces R by the Gaussian NLL under the variance that fits the
    batch best, sigma^2 = max(R / D, min_variance) (the sigma-VAE). ``rule``: how alpha moves, one
    of ``ALPHA_RULES``, or None for an objective without a multiplier; ``ema`` and ``rate`` are
    GECO's moving-average factor and step.
    """

    recon_weight: float
    kl_weight: float
    constraint_recon: float = 0.0
    constraint_kl: float = 0.0
    bound: float = 0.0
    kl_reduction: str = "mean"
    likelihood: str = "fixed"
    min_variance: float = 0.0
    rule: str | None = None
    ema: float = 0.0
    rate: float = 0.0


def calibrated_nll(recon: torch.Tensor, features: int, min_variance: float) -> torch.Tensor:
    """The Gaussian NLL per point, in nats, of a decoder whose variance sigma^2 = max(R / D,
    min_variance) is the one that fits the batch best (Rybkin et al.'s optimal sigma):
    (D/2)·log(2·pi·sigma^2) + R / (2·sigma^2). Its gradient with respect to R is 1 / (2·sigma^2)."""
    variance = torch.clamp(recon / features, min=min_variance)
    return 0.5 * features * torch.log(2 * math.pi * variance) + recon / (2 * variance)


def update_multiplier(rule: str, alpha: torch.Tensor, alpha_before: torch.Tensor, constraint: torch.Tensor,
                      average: torch.Tensor | None = None, count: torch.Tensor | None = None, *,
                      ema: float = 0.0, rate: float = 0.0) -> tuple[torch.Tensor, ...]:
    """alpha after an optimiser step (elementwise, any shape), as ``rule`` says: one definition of
    the rules for every trainer.

    ``alpha`` is the value after the optimiser's step, ``alpha_before`` the one before it,
    ``constraint`` this step's constraint value h. ``"reverse"`` reflects a step that went below 0
    about the old value (Ko & Ko); ``"project"`` and ``"ascent"`` clip at 0; ``"fixed"`` leaves
    alpha alone. ``"geco"`` (Rezende & Viola) ignores the optimiser: the moving average of h moves
    to ``ema·average + (1 - ema)·h`` (h itself at the first step, ``count`` = 0) and alpha to
    ``alpha_before·exp(rate·average)``, within [ALPHA_FLOOR, ALPHA_CEILING]. Returns
    ``(alpha,)``, or ``(alpha, average, count)`` for GECO.
    """
    if rule == "reverse":
        return (torch.where(alpha < 0, 2 * alpha_before - alpha, alpha),)
    if rule in ("project", "ascent"):
        return (alpha.clamp(min=0.0),)
    if rule == "fixed":
        return (alpha,)
    if rule == "geco":
        if average is None or count is None:
            raise ValueError("the 'geco' rule needs the moving average and the count of updates")
        count = count + 1
        average = torch.where(count == 1, constraint, ema * average + (1 - ema) * constraint)
        alpha = (alpha_before * torch.exp(rate * average)).clamp(ALPHA_FLOOR, ALPHA_CEILING)
        return alpha, average, count
    raise ValueError(f"rule must be one of {list(ALPHA_RULES)}, got {rule!r}")


class VAEObjective(Objective):
    """Base of the VAE family (see the module's docstring): a fixed weighting of R and KL.

    Subclasses choose the weights. Terms: ``loss``, ``recon`` (R), ``kl`` (as the objective weighs
    it: summed over the batch with ``kl_reduction="sum"``) and, under the calibrated likelihood,
    ``nll`` (the Gaussian NLL that replaces R in the loss) and ``sigma`` (the decoder's std).
    """

    logged: tuple[str, ...] = ("loss", "recon", "kl")

    def __init__(self, recon_weight: float = 1.0, kl_weight: float = 1.0, kl_reduction: str = "mean",
                 likelihood: str = "fixed", min_variance: float = 1e-6):
        super().__init__()
        self.recon_weight = _checks.non_negative_float("recon_weight", recon_weight)
        self.kl_weight = _checks.non_negative_float("kl_weight", kl_weight)
        self.kl_reduction = _checks.one_of("kl_reduction", kl_reduction, KL_REDUCTIONS)
        self.likelihood = _checks.one_of("likelihood", likelihood, LIKELIHOODS)
        self.min_variance = _checks.positive_float("min_variance", min_variance)

    @property
    def form(self) -> Form:
        return Form(self.recon_weight, self.kl_weight, kl_reduction=self.kl_reduction,
                    likelihood=self.likelihood, min_variance=self.min_variance)

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        if out.recon_is_logits and self.likelihood == "calibrated":
            raise ValueError("the calibrated (sigma-VAE) likelihood is Gaussian; this model has a Bernoulli "
                             "decoder (logits): use likelihood='fixed' or a Gaussian decoder")
        return self.combine(reconstruction_term(x, out), kl_term(out), batch_size=x.shape[-2],
                            features=reconstruction_target(x, out).shape[-1], alpha=self._alpha())

    def combine(self, recon: torch.Tensor, kl: torch.Tensor, *, batch_size: int | torch.Tensor, features: int,
                alpha: torch.Tensor | None = None) -> Terms:
        """The terms from R, the batch-averaged KL and alpha: tensors of any one shape (one
        minibatch in ``fit``; every step of every run in ``vaelib.engine``)."""
        form = self.form
        if form.kl_reduction == "sum":
            kl = kl * batch_size
        terms = {"recon": recon, "kl": kl}
        if form.likelihood == "calibrated":
            terms["nll"] = recon = calibrated_nll(recon, features, form.min_variance)
            terms["sigma"] = torch.clamp(terms["recon"] / features, min=form.min_variance).sqrt()
        terms["loss"] = form.recon_weight * recon + form.kl_weight * kl
        if alpha is not None:
            constraint = form.constraint_recon * recon + form.constraint_kl * kl - form.bound
            terms["weighted_recon"] = (form.recon_weight + alpha * form.constraint_recon) * recon
            terms["weighted_kl"] = (form.kl_weight + alpha * form.constraint_kl) * kl
            terms["loss"] = terms["loss"] + alpha * constraint
            terms.update(constraint=constraint, alpha=alpha.detach())
        return {name: terms[name] for name in self.logged}

    def _alpha(self) -> torch.Tensor | None:
        return None

    # The multiplier as an engine holds it (vaelib.engine's C kernel keeps every run's in flat
    # buffers): read and written through these methods, so that no engine needs to know which
    # objective keeps what. An objective without a multiplier has alpha = 0, which no rule moves.

    def multiplier_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, rule_state): alpha as a 0-d tensor and the state its rule keeps besides it, a
        (2,) tensor: the moving average of the constraint and the count of updates (GECO's rule;
        zeros for the others)."""
        return torch.zeros(()), torch.zeros(2)

    def load_multiplier_tensors(self, alpha: torch.Tensor, rule_state: torch.Tensor) -> None:
        """Set alpha and its rule's state from values in the layout of ``multiplier_tensors``."""

    def multiplier_trained(self) -> bool:
        """Whether the trainer's optimiser moves alpha (by its gradient, with the rule's sign)."""
        return False


class ELBO(VAEObjective):
    """The negative evidence lower bound as Ko & Ko write it (eq. 6), with an optional beta.

    loss = R + beta·KL, with R the reconstruction term (squared error summed over features for a
    Gaussian decoder, Bernoulli NLL for a Bernoulli one) and KL = KL(q(z|x) || N(0, I)), both
    averaged over the minibatch. beta = 1 is the ELBO; beta != 1 is the beta-VAE of Higgins et al.
    ``kl_reduction="sum"`` sums the KL over the batch's points (the literal reading of eq. 6).
    Note: squared error without a 1/(2·sigma^2) factor is a Gaussian decoder with variance 1/2.
    """

    def __init__(self, beta: float = 1.0, kl_reduction: str = "mean"):
        super().__init__(recon_weight=1.0, kl_weight=_checks.non_negative_float("beta", beta),
                         kl_reduction=kl_reduction)
        self.beta = self.kl_weight


class SigmaVAE(VAEObjective):
    """The sigma-VAE (Rybkin, Daniilidis & Levine 2021): the ELBO with a calibrated decoder.

    loss = (D/2)·log(2·pi·sigma^2) + R / (2·sigma^2) + KL, sigma^2 = max(R / D, min_variance): the
    Gaussian decoder's variance is not a hand-tuned constant but the one that maximises the batch's
    likelihood, in closed form, so no weight is tuned by hand. Its gradient is that of a beta-VAE
    whose beta = 2·sigma^2 follows the reconstruction error down as training goes.
    """

    logged = ("loss", "recon", "kl", "nll", "sigma")

    def __init__(self, min_variance: float = 1e-6, kl_reduction: str = "mean"):
        super().__init__(recon_weight=1.0, kl_weight=1.0, kl_reduction=kl_reduction, likelihood="calibrated",
                         min_variance=min_variance)


class ConstrainedObjective(VAEObjective):
    """Base of the objectives with a multiplier alpha on a constraint h = c_R·R + c_KL·KL - bound:

        loss = recon_weight·R + kl_weight·KL + alpha·h,   alpha >= 0.

    alpha is a parameter; how it moves is the ``alpha_rule``:

    * ``"reverse"`` (Ko & Ko): the trainer's optimiser *descends* on alpha; when its step would
      take alpha below 0, the step is reversed: alpha <- alpha_old + (alpha_old - alpha_new).
    * ``"project"``: descent, then alpha <- max(alpha, 0) (projected gradient descent).
    * ``"ascent"``: alpha's gradient is negated, so alpha *ascends* while the network descends (the
      saddle-point reading of the Lagrangian: dual ascent), then it is projected onto alpha >= 0.
    * ``"fixed"``: alpha is a constant weight, not learned.
    * ``"geco"`` (Rezende & Viola 2018): not the optimiser but a multiplicative rule moves alpha,
      driven by a moving average of h: alpha <- alpha·exp(rate·h_avg), h_avg <- ema·h_avg + (1-ema)·h.

    Terms add ``constraint`` (h), ``alpha`` and the effective weights ``weighted_recon`` and
    ``weighted_kl`` (each term times everything that multiplies it) where a subclass logs them.
    """

    logged: tuple[str, ...] = ("loss", "recon", "kl", "constraint", "alpha")
    alpha: nn.Parameter
    constraint_average: torch.Tensor  # buffers of the 'geco' rule only
    updates: torch.Tensor

    def __init__(self, *, recon_weight: float, kl_weight: float, constraint_recon: float, constraint_kl: float,
                 bound: float, alpha_init: float = 1.0, alpha_rule: str = "reverse", kl_reduction: str = "mean",
                 geco_ema: float = 0.99, geco_rate: float = 0.03, bound_name: str = "bound"):
        super().__init__(recon_weight, kl_weight, kl_reduction)
        self.constraint_recon, self.constraint_kl = constraint_recon, constraint_kl
        self.bound = _checks.non_negative_float(bound_name, bound)
        self.alpha_rule = _checks.one_of("alpha_rule", alpha_rule, ALPHA_RULES)
        alpha_init = _checks.non_negative_float("alpha_init", alpha_init)
        if alpha_rule == "geco":
            if not ALPHA_FLOOR <= alpha_init <= ALPHA_CEILING:
                raise ValueError(f"alpha_init must lie in [{ALPHA_FLOOR:g}, {ALPHA_CEILING:g}] for the 'geco' rule "
                                 f"(a multiplicative update cannot leave 0), got {alpha_init}")
            self.register_buffer("constraint_average", torch.tensor(0.0))
            self.register_buffer("updates", torch.tensor(0.0))
        self.geco_ema = _checks.non_negative_float("geco_ema", geco_ema)
        if self.geco_ema >= 1:
            raise ValueError(f"geco_ema must be < 1 (1 would never update the average), got {geco_ema}")
        self.geco_rate = _checks.positive_float("geco_rate", geco_rate)
        learned = ALPHA_GRADIENT_SIGN[alpha_rule] != 0
        self.alpha = nn.Parameter(torch.tensor(alpha_init), requires_grad=learned)
        self._alpha_before_step: torch.Tensor | None = None

    @property
    def form(self) -> Form:
        return Form(self.recon_weight, self.kl_weight, self.constraint_recon, self.constraint_kl, self.bound,
                    self.kl_reduction, self.likelihood, self.min_variance, self.alpha_rule, self.geco_ema,
                    self.geco_rate)

    def _alpha(self) -> torch.Tensor:
        return self.alpha

    def multiplier_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.alpha_rule == "geco":
            rule_state = torch.stack([self.constraint_average, self.updates]).detach()
        else:
            rule_state = torch.zeros(2)
        return self.alpha.detach(), rule_state

    @torch.no_grad()
    def load_multiplier_tensors(self, alpha: torch.Tensor, rule_state: torch.Tensor) -> None:
        self.alpha.copy_(alpha)
        if self.alpha_rule == "geco":
            self.constraint_average.copy_(rule_state[0])
            self.updates.copy_(rule_state[1])

    def multiplier_trained(self) -> bool:
        return self.alpha.requires_grad

    def before_step(self) -> None:
        if self.alpha.grad is not None:
            self.alpha.grad.mul_(ALPHA_GRADIENT_SIGN[self.alpha_rule])
        self._alpha_before_step = self.alpha.detach().clone()

    @torch.no_grad()
    def after_step(self, terms: Terms) -> None:
        before = self.alpha.detach().clone() if self._alpha_before_step is None else self._alpha_before_step
        if self.alpha_rule == "geco":
            alpha, average, count = update_multiplier("geco", self.alpha, before, terms["constraint"],
                                                      self.constraint_average, self.updates,
                                                      ema=self.geco_ema, rate=self.geco_rate)
            self.constraint_average.copy_(average)
            self.updates.copy_(count)
        else:
            (alpha,) = update_multiplier(self.alpha_rule, self.alpha, before, terms["constraint"])
        self.alpha.copy_(alpha)
        self._alpha_before_step = None


class KoLagrangian(ConstrainedObjective):
    """Ko & Ko's practical objective (their eq. 7) with a learnable multiplier alpha >= 0.

    loss = (1 + alpha)·R + alpha·(KL - delta), with R the reconstruction term averaged over the
    minibatch and KL the closed-form Gaussian KL, averaged over it too (``kl_reduction="mean"``) or
    summed over its points (``"sum"``: the literal reading of eq. 7, where 1/n multiplies only the
    squared error and the KL is that of the whole batch's joint posterior, which weighs the KL by
    the batch size). It is the Lagrangian R + alpha·(D - delta) with the divergence D replaced by
    the ELBO loss R + KL, so the constraint it encodes is R + KL <= delta. The paper trains alpha by
    descent with the ``"reverse"`` rule (see ``ConstrainedObjective`` for the rules).
    """

    logged = ("loss", "recon", "kl", "weighted_recon", "weighted_kl", "alpha", "constraint")

    def __init__(self, delta: float = 0.1, alpha_init: float = 1.0, alpha_rule: str = "reverse",
                 kl_reduction: str = "mean"):
        super().__init__(recon_weight=1.0, kl_weight=0.0, constraint_recon=1.0, constraint_kl=1.0, bound=delta,
                         alpha_init=alpha_init, alpha_rule=alpha_rule, kl_reduction=kl_reduction,
                         bound_name="delta")
        self.delta = self.bound


class KLConstrained(ConstrainedObjective):
    """The Lagrangian of "minimise R subject to KL(q(z|x) || N(0, I)) <= delta", per point.

    loss = R + alpha·(KL - delta), R and KL averaged over the minibatch. With ``alpha_rule="ascent"``
    this is dual ascent: alpha rises while KL > delta and falls towards 0 while KL < delta, so at a
    solution either KL = delta or alpha = 0 (complementary slackness). It is a beta-VAE whose beta
    (= alpha) is tuned to meet a KL budget; compare ``KoLagrangian``, whose constraint is R + KL <= delta.
    """

    def __init__(self, delta: float = 0.1, alpha_init: float = 1.0, alpha_rule: str = "ascent",
                 kl_reduction: str = "mean"):
        super().__init__(recon_weight=1.0, kl_weight=0.0, constraint_recon=0.0, constraint_kl=1.0, bound=delta,
                         alpha_init=alpha_init, alpha_rule=alpha_rule, kl_reduction=kl_reduction,
                         bound_name="delta")
        self.delta = self.bound


class GECO(ConstrainedObjective):
    """GECO (Rezende & Viola 2018): minimise KL subject to the reconstruction constraint R <= kappa.

    loss = KL + alpha·(R - kappa), where alpha (their lambda) is not learned by gradient but moved
    multiplicatively after every step, alpha <- alpha·exp(rate·C_avg), by a moving average C_avg of
    the constraint R - kappa (``"geco"`` rule): alpha grows while the reconstruction is worse than
    kappa and shrinks once it is better, so the model spends on the KL only what kappa allows. A
    practitioner states the reconstruction they need (kappa, in R's units) instead of tuning beta.

    Units: kappa is in the units of R, the reconstruction term per point: a squared error summed
    over the features for a Gaussian decoder (squared data units), nats for a Bernoulli one. On a
    scale of its own data a kappa is easier to choose relatively: ``relative_kappa(x, fraction)``
    gives fraction·sum_j Var(x_j), the squared error that leaves that fraction of x's variance
    unexplained (the error of always predicting the mean is sum_j Var(x_j)).

    ``rate`` times |R - kappa| is how far log alpha moves in one step: the default 0.03 suits
    reconstruction errors of order 0.01 to 1 (the book's cosine data, where a rate of 0.3 already
    makes alpha swing between its floor and hundreds); scale it down for an R in larger units (a
    Bernoulli NLL summed over 784 pixels). ``ema`` is the moving average's factor (Rezende & Viola's 0.99).
    """

    def __init__(self, kappa: float = 0.05, alpha_init: float = 1.0, alpha_rule: str = "geco",
                 ema: float = 0.99, rate: float = 0.03, kl_reduction: str = "mean"):
        super().__init__(recon_weight=0.0, kl_weight=1.0, constraint_recon=1.0, constraint_kl=0.0, bound=kappa,
                         alpha_init=alpha_init, alpha_rule=alpha_rule, kl_reduction=kl_reduction,
                         geco_ema=ema, geco_rate=rate, bound_name="kappa")
        self.kappa = self.bound


def relative_kappa(x: torch.Tensor, fraction: float) -> float:
    """GECO's kappa for a Gaussian decoder as a fraction of the data's variance: fraction times
    sum_j Var(x_j) over the columns of x (the squared error per point of predicting each column's
    mean), so ``fraction=0.1`` asks the reconstruction to explain 90% of the variance."""
    fraction = _checks.positive_float("fraction", fraction)
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or len(x) < 2:
        raise ValueError("x must be a tensor of shape (n, d) with n >= 2 to measure its variance")
    return fraction * x.detach().double().var(dim=0, correction=0).sum().item()


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
            if not _checks.inside_transform(h):  # vaelib.fit checks every step; fit_batched's vmap cannot read values
                low, high = h.min().item(), h.max().item()
                if low < 0 or high > 1:
                    raise ValueError(f"the KL sparsity penalty needs code activations in [0, 1] (sigmoid "
                                     f"units), got values in [{low:.3g}, {high:.3g}]; use "
                                     "activation='sigmoid' or penalty='l1'")
            penalty = kl_sparsity(h, self.rho)
        else:
            penalty = l1_activity(h)
        return {"loss": recon + self.weight * penalty, "recon": recon, "penalty": penalty,
                "mean_activation": h.detach().mean(dim=(-2, -1))}


class ContractiveReconstruction(Objective):
    """Reconstruction error plus the encoder's Jacobian penalty: the contractive autoencoder's loss.

    loss = R + weight·C, C = (1/n) sum_i ||J_f_e(x_i)||_F^2 (Rifai et al., 2011), with the
    per-point norms that the model hands over in ``out.contraction`` (``vaelib.ContractiveAutoencoder``
    computes them). The penalty rewards a code that moves little when the input moves; the
    reconstruction term keeps it moving along the directions the data vary in. Terms: ``loss``,
    ``recon``, ``contraction`` (C, unweighted). Taught in the book's chapter on denoising, sparse
    and contractive autoencoders (book/denoising_sparse.ipynb).
    """

    def __init__(self, weight: float = 0.1):
        super().__init__()
        self.weight = _checks.non_negative_float("weight", weight)

    def forward(self, x: torch.Tensor, out: ModelOutput) -> Terms:
        if out.contraction is None:
            raise ValueError("the contractive objective needs the encoder's Jacobian norm in the model's "
                             "output (out.contraction), which this model does not compute; use "
                             "vaelib.ContractiveAutoencoder")
        recon = reconstruction_term(x, out)
        contraction = out.contraction.mean(dim=-1)
        return {"loss": recon + self.weight * contraction, "recon": recon, "contraction": contraction}


# Objectives by the names a command line or a sweep file uses.
OBJECTIVES: dict[str, type[Objective]] = {
    "reconstruction": Reconstruction, "sparse": SparseReconstruction,
    "contractive": ContractiveReconstruction, "elbo": ELBO, "sigma-vae": SigmaVAE,
    "ko": KoLagrangian, "kl-constrained": KLConstrained, "geco": GECO,
}


def make_objective(name: str, **settings) -> Objective:
    """A new objective by its name in ``OBJECTIVES`` (``"elbo"``, ``"geco"``, ...) and its settings,
    e.g. ``make_objective("elbo", beta=4.0)``; an unknown name or setting is a ValueError that lists
    the valid ones."""
    _checks.one_of("objective", name, OBJECTIVES)
    cls = OBJECTIVES[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ValueError(f"objective {name!r} has no setting {', '.join(map(repr, unknown))}; its settings are "
                         f"{accepted or 'none'}")
    return cls(**settings)

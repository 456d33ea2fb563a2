"""What a finished run's numbers say to a practitioner: the findings that mean a quietly bad model.

``findings(model, objective, x, history, heldout_loss)`` looks at a trained model and its history
and returns each problem as a ``Finding`` (a ``vaelib.warning_types`` category and one sentence
that says what it means and what to do); ``diagnose(...)`` issues them as Python warnings, which
a user can filter by category, and ``python -m vaelib train`` prints each as one line.

* ``PosteriorCollapseWarning``: latent dimensions whose KL from the prior, averaged over the
  training rows, is below ``KL_ACTIVE_THRESHOLD`` nats per point carry no information about x:
  the count of active dimensions is given (none active: the code is unused).
* ``MultiplierAtClampWarning``: a constrained objective's multiplier alpha ended at its limit:
  GECO's at its ceiling (the reconstruction never reached kappa) or floor (the constraint never
  bound), the KL bound's at 0 (the KL stayed below delta, so delta does not constrain).
* ``HeldoutRisingWarning``: the held-out loss ended more than ``RISE_TOLERANCE`` (relative)
  above its best epoch's: the model overfits.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from vaelib.losses import gaussian_kl
from vaelib.objectives import ALPHA_CEILING, ALPHA_FLOOR, ConstrainedObjective, Objective
from vaelib.runs import History
from vaelib.warning_types import (HeldoutRisingWarning, MultiplierAtClampWarning, PosteriorCollapseWarning,
                                  VaelibWarning)

KL_ACTIVE_THRESHOLD = 0.01  # nats per point: a dimension below it carries (almost) no information
RISE_TOLERANCE = 0.01  # a held-out loss 1% above its best is noise; more is a rise


class Finding(NamedTuple):
    category: type[VaelibWarning]
    message: str


@torch.no_grad()
def kl_per_dimension(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """KL(q(z_j | x) || N(0, 1)) for each latent dimension j, averaged over the rows of x, in
    nats (float64, shape (k,)); ``model.encode(x)`` must return (mu, logvar). The model's mode is
    left as it was."""
    was_training = model.training
    model.eval()
    try:
        mu, logvar = model.encode(x)  # type: ignore[operator]
    finally:
        model.train(was_training)
    per_dim = gaussian_kl(mu.double().unsqueeze(-1), logvar.double().unsqueeze(-1))  # (n, k)
    return per_dim.mean(dim=0)


def findings(model: nn.Module, objective: Objective, x: torch.Tensor, history: History,
             heldout_loss: Sequence[float] | None = None) -> list[Finding]:
    """The problems a trained run shows (see the module's docstring), in the order listed there.
    ``x``: the training rows as the model takes them; ``heldout_loss``: the held-out loss per
    epoch, when there is a held-out split (default: the history's ``heldout_loss``, which ``fit``
    records when it is given ``heldout`` rows)."""
    if heldout_loss is None:
        heldout_loss = history.terms.get("heldout_loss")
    found = []
    collapse = _collapse(model, x)
    if collapse is not None:
        found.append(Finding(PosteriorCollapseWarning, collapse))
    clamp = _multiplier_at_clamp(objective, history)
    if clamp is not None:
        found.append(Finding(MultiplierAtClampWarning, clamp))
    rise = _heldout_rising(history, heldout_loss)
    if rise is not None:
        found.append(Finding(HeldoutRisingWarning, rise))
    return found


def diagnose(model: nn.Module, objective: Objective, x: torch.Tensor, history: History,
             heldout_loss: Sequence[float] | None = None) -> list[Finding]:
    """``findings(...)``, each issued as a warning of its category; returns them."""
    found = findings(model, objective, x, history, heldout_loss)
    for finding in found:
        warnings.warn(finding.message, finding.category, stacklevel=2)
    return found


def _collapse(model: nn.Module, x: torch.Tensor) -> str | None:
    if not callable(getattr(model, "encode", None)) or getattr(model, "latent_dim", None) is None:
        return None
    code = model.encode(x[:1])  # type: ignore[operator]
    if not isinstance(code, tuple) or len(code) != 2:
        return None  # a deterministic code has no KL
    kl = kl_per_dimension(model, x)
    active, total = int((kl >= KL_ACTIVE_THRESHOLD).sum()), len(kl)
    if active == total:
        return None
    where = (f"{total - active} of {total} latent dimensions are unused: their KL from the prior is below "
             f"{KL_ACTIVE_THRESHOLD:g} nats per point ({active} active; KL per dimension "
             f"{', '.join(f'{v:.3g}' for v in kl.tolist()[:8])}{', ...' if total > 8 else ''})")
    if active == 0:
        return (f"{where}: the code carries no information about the data (posterior collapse); standardise the "
                "data, lower beta, or train longer")
    return f"{where}; a smaller latent dimension would do as well"


def _multiplier_at_clamp(objective: Objective, history: History) -> str | None:
    if not isinstance(objective, ConstrainedObjective) or "alpha" not in history.terms or not len(history):
        return None
    alphas = history["alpha"]
    rule, bound, name = objective.alpha_rule, objective.bound, _bound_name(objective)
    if rule == "geco" and alphas[-1] >= ALPHA_CEILING * (1 - 1e-6):
        since = _run_start(alphas, lambda a: a >= ALPHA_CEILING * (1 - 1e-6))
        recon = history["recon"]
        if recon[-1] <= bound:
            reached = _run_start(recon, lambda r: r <= bound)
            return (f"the multiplier alpha is at its ceiling {ALPHA_CEILING:g} since epoch {since}, and the "
                    f"reconstruction term came down to {name} = {bound:g} only at epoch {reached} (last "
                    f"{recon[-1]:.4g}): alpha overshot while the term was above {name}, and its moving average "
                    "has not brought it down, so the KL was not minimised; lower the rate (--objective-arg "
                    "rate=...), train longer, or give kappa relative to the data (kappa_fraction=, which "
                    "measures the rate in the data's variance too)")
        return (f"the multiplier alpha is at its ceiling {ALPHA_CEILING:g} since epoch {since}: the reconstruction "
                f"term (last {history['recon'][-1]:.4g}) never came down to {name} = {bound:g}, so the loss is "
                f"alpha times the gap and the KL is not minimised; raise {name} above what the model reaches "
                "(or give it relative to the data, kappa_fraction=0.5: half the data's variance left unexplained)")
    if rule == "geco" and alphas[-1] <= ALPHA_FLOOR * (1 + 1e-6):
        since = _run_start(alphas, lambda a: a <= ALPHA_FLOOR * (1 + 1e-6))
        return (f"the multiplier alpha is at its floor {ALPHA_FLOOR:g} since epoch {since}: the reconstruction term "
                f"(last {history['recon'][-1]:.4g}) stays below {name} = {bound:g}, so the constraint does not "
                f"bind and only the KL is minimised; lower {name} to ask for a better reconstruction")
    if rule in ("project", "ascent") and alphas[-1] == 0:
        since = _run_start(alphas, lambda a: a == 0)
        return (f"the multiplier alpha is at 0 since epoch {since}: the constraint holds with room to spare "
                f"(last kl {history['kl'][-1]:.4g}, recon {history['recon'][-1]:.4g}), so {name} = {bound:g} does "
                f"not constrain the model; lower {name} if you meant it to")
    return None


def _bound_name(objective: ConstrainedObjective) -> str:
    return "kappa" if hasattr(objective, "kappa") else "delta"


def _run_start(values: Sequence[float], at_clamp) -> int:
    """The 1-based epoch from which every value to the end is ``at_clamp``."""
    start = len(values)
    while start > 0 and at_clamp(values[start - 1]):
        start -= 1
    return start + 1


def _heldout_rising(history: History, heldout_loss: Sequence[float] | None) -> str | None:
    if not heldout_loss or len(heldout_loss) < 2:
        return None
    best = min(range(len(heldout_loss)), key=heldout_loss.__getitem__)
    best_value, last = heldout_loss[best], heldout_loss[-1]
    if best == len(heldout_loss) - 1 or last <= best_value + RISE_TOLERANCE * abs(best_value):
        return None
    train = history["loss"]
    return (f"the held-out loss rose from {best_value:.4g} (epoch {best + 1}) to {last:.4g} (epoch "
            f"{len(heldout_loss)}) while the training loss went from {train[best]:.4g} to {train[-1]:.4g}: the "
            f"model overfits the training rows; stop at the best epoch ({best + 1}) or hold out more data")
